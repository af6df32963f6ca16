import HourglassStorage
import Synchronization

/// Group commit: makes written frames durable and only then answers the callers waiting on them.
///
/// One sync runs at a time (so that the durable mark only moves forward over synced bytes). The
/// leader that writes a frame under `always` claims the sync while still leading, so claims come
/// in log order: if no sync is running, it becomes the syncer and, once it has let go of the
/// engine, runs the `msync` on its own thread and answers its group (a lone caller never waits
/// for another thread); if one is running, its group waits in `pending`, and the next sync covers
/// every group that arrived meanwhile. Whoever finishes a sync and finds groups pending hands
/// them to the sync thread, which keeps syncing while groups keep coming, so under load no
/// thread sleeps or wakes per call. Interval syncs go to the sync thread directly.
final class Syncer: @unchecked Sendable {
    private enum Owner { case none, caller, thread }

    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var owner = Owner.none
    private var pending: [(LogWriter.SyncBatch, Replies)] = []
    private var stopping = false
    private var failure: HourglassError? = nil
    private var performed = 0
    private let onSync: @Sendable (UInt64) -> Void

    /// `onSync` gets each msync's duration in nanoseconds (for metrics).
    init(onSync: @escaping @Sendable (UInt64) -> Void) {
        self.onSync = onSync
        startThread(name: "hourglass-sync") { [self] in run() }
    }

    /// Called by the leader, in log order. True: the caller is now the syncer and must call
    /// `perform` once it has stopped leading. False: the group waits for a sync already running
    /// (or was failed at once after an earlier sync failure).
    func claim(_ batch: LogWriter.SyncBatch, _ replies: Replies) -> Bool {
        let outcome = lock.withLock { () -> Bool? in
            if failure != nil { return nil }
            if owner == .none {
                owner = .caller
                return true
            }
            pending.append((batch, replies))
            return false
        }
        guard let outcome else {
            fail(replies)
            return false
        }
        return outcome
    }

    /// Hands a group to the sync thread (interval syncs, and groups from the clock thread).
    func handToThread(_ batch: LogWriter.SyncBatch, _ replies: Replies) {
        let failed = lock.withLock { () -> Bool in
            if failure != nil { return true }
            pending.append((batch, replies))
            if owner == .none {
                owner = .thread
                lock.signal()
            }
            return false
        }
        if failed { fail(replies) }
    }

    /// Runs the sync claimed with `claim`, answers the group, then passes on the syncer's role.
    func perform(_ batch: LogWriter.SyncBatch, _ replies: Replies) {
        sync(batch, replies)
        lock.withLock {
            if pending.isEmpty {
                owner = .none
                lock.broadcast()
            } else {
                owner = .thread
                lock.signal()
            }
        }
    }

    private func fail(_ replies: Replies) {
        var replies = replies
        replies.failAll(with: failed ?? .closed)
        replies.resumeAll()
    }

    /// msyncs `batch`, then answers `replies` (with the failure, if it failed or one came before).
    private func sync(_ batch: LogWriter.SyncBatch, _ replies: Replies) {
        var outcome = lock.withLock { failure }
        if outcome == nil && !batch.isEmpty {
            let started = monotonicNanoseconds()
            do throws(StorageError) {
                try batch.perform()
            } catch {
                outcome = HourglassError(error)
            }
            onSync(monotonicNanoseconds() - started)
        }
        lock.withLock {
            if !batch.isEmpty { performed += 1 }
            if failure == nil { failure = outcome }
        }
        var replies = replies
        if let outcome { replies.failAll(with: outcome) }
        replies.resumeAll()
    }

    /// The error of a failed sync, once there was one: the engine stops.
    var failed: HourglassError? { lock.withLock { failure } }

    var syncs: Int { lock.withLock { performed } }

    /// Waits until no sync runs and nothing waits for one.
    func waitIdle() {
        lock.withLock {
            while owner != .none || !pending.isEmpty { lock.wait(nanoseconds: 1_000_000) }
        }
    }

    /// Ends the thread once idle.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
    }

    private func run() {
        while true {
            lock.lock()
            while !(owner == .thread && !pending.isEmpty) {
                if owner == .thread {
                    owner = .none
                    lock.broadcast()
                }
                if stopping {
                    lock.unlock()
                    return
                }
                lock.wait(nanoseconds: nil)
            }
            let work = pending
            pending.removeAll()
            lock.unlock()
            var batch = LogWriter.SyncBatch()
            var replies = Replies()
            for (part, group) in work {
                batch.append(part)
                replies.append(contentsOf: group)
            }
            sync(batch, replies)
        }
    }
}
