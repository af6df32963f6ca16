import HourglassStorage
import Synchronization

/// The group-commit half of the engine: a thread that makes written frames durable and only
/// then answers the callers waiting on them.
///
/// The engine thread writes a batch's frame into the mapping, takes the ranges to sync, and
/// hands them over with the batch's replies; it goes straight on with the next batch. The sync
/// thread takes everything handed over since its last msync, syncs it all at once and resumes
/// every reply, in order. So while one msync is under way the next batches accumulate, and each
/// msync covers as many callers as arrived meanwhile: with `always`, concurrent callers share
/// fsyncs without the engine thread ever waiting for the disk.
final class _Syncer: @unchecked Sendable {
    private let lock = _ConditionLock()
    // Guarded by `lock`.
    private var pending: [(LogWriter.SyncBatch, _Replies)] = []
    private var busy = false
    private var stopping = false
    private var failure: HourglassError? = nil
    private var performed = 0
    private var nanoseconds: UInt64 = 0
    private let onSync: @Sendable (UInt64) -> Void

    /// `onSync` gets each msync's duration in nanoseconds (for metrics).
    init(onSync: @escaping @Sendable (UInt64) -> Void) {
        self.onSync = onSync
        _startThread(name: "hourglass-sync") { [self] in run() }
    }

    /// Hands over ranges to sync and the replies that wait for them. After a failure, the
    /// replies get the failure at once.
    func submit(_ batch: LogWriter.SyncBatch, _ replies: _Replies) {
        let failed = lock.withLock { () -> HourglassError? in
            if let failure { return failure }
            pending.append((batch, replies))
            lock.signal()
            return nil
        }
        if let failed {
            var replies = replies
            replies.failAll(with: failed)
            replies.resumeAll()
        }
    }

    /// The error of a failed sync, once there was one: the engine stops.
    var failed: HourglassError? { lock.withLock { failure } }

    var syncs: Int { lock.withLock { performed } }

    /// Waits until everything handed over is synced and answered.
    func waitIdle() {
        lock.withLock {
            while busy || !pending.isEmpty { lock.wait(nanoseconds: 1_000_000) }
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
            while pending.isEmpty && !stopping { lock.wait(nanoseconds: nil) }
            if pending.isEmpty && stopping {
                lock.unlock()
                return
            }
            let work = pending
            pending.removeAll()
            busy = true
            let previous = failure
            lock.unlock()

            var batch = LogWriter.SyncBatch()
            for (part, _) in work { batch.append(part) }
            var outcome = previous
            if outcome == nil && !batch.isEmpty {
                let started = monotonicNanoseconds()
                do throws(StorageError) {
                    try batch.perform()
                } catch {
                    outcome = HourglassError(error)
                }
                onSync(monotonicNanoseconds() - started)
            }
            for (_, replies) in work {
                var replies = replies
                if let outcome { replies.failAll(with: outcome) }
                replies.resumeAll()
            }
            lock.withLock {
                if !batch.isEmpty { performed += 1 }
                if failure == nil { failure = outcome }
                busy = false
                lock.broadcast()
            }
        }
    }
}
