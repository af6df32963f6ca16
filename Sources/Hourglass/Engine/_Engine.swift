import CoreMetrics
import HourglassCore
import HourglassStorage
import Logging
import Synchronization

/// What a thread arriving at the door becomes.
enum _DoorRole { case refused, queued, leader }

/// What the door guards: who leads, and what waits for the leader.
struct _DoorState {
    /// Someone holds the engine: a caller, or the clock thread.
    var leading = false
    /// False once the engine has closed: every request is refused.
    var accepting = true
    /// Requests left by callers that found the engine held, in arrival order.
    var queue: [_Request] = []
    /// The clock thread found the engine held: its leader does the housekeeping before leaving.
    var housekeepingRequested = false
    /// A caller that led its own group found others queued: it handed the engine, still held,
    /// to the clock thread, which leads them.
    var handedToClock = false
}

/// The single writer of the wheel and the log, without a thread of its own on the hot path.
///
/// At most one thread at a time *leads*: it alone touches the wheel and the journal. A caller
/// that finds the engine free takes it, does its own work, writes its frame and returns, on its
/// own thread, without waiting for anyone (under `interval` and `none`: its record is in the
/// log's mapping, which a process crash cannot lose). A caller that finds it held leaves its
/// request in the door's queue and waits; the leader, before it lets go, applies everything
/// queued as one group (one frame) and answers it. So callers that arrive together form write
/// groups whose cost is shared (RocksDB's `WriteThread`, LevelDB's writer queue), and a lone
/// caller pays for nothing but its own work. Under `always` every caller waits for a sync, and
/// one sync covers every group written before it (see `_Syncer`).
///
/// The clock thread (`_Ticker`) leads only when the engine has work of its own: firing at a
/// deadline while nobody calls, the interval sync, loading or writing a checkpoint.
final class _Engine: @unchecked Sendable {
    private let door = _Door()

    // MARK: Leader only (whoever holds the door)

    var wheel: TimerWheel
    let clock: any HourglassClock
    let configuration: Configuration
    let deliveries: _DeliveryQueue
    var journal: _WALJournal?
    var stoppedReason: String?
    /// The failure that stopped the engine: `close` reports it.
    var stoppedBy: HourglassError?
    var fired: [TimerHandle] = []
    var outgoing: [Delivery] = []
    var barriers: [UnsafeContinuation<EngineStats, Never>] = []
    var lastSyncNanoseconds: UInt64 = monotonicNanoseconds()
    var unsynced = false
    /// A sync this leader claimed (under `always`), run once it lets go of the door.
    var claimedSync: (batch: LogWriter.SyncBatch, replies: _Replies)?
    var counters = EngineStats()
    /// Distinguishes this engine from every other opened in the process (deliveries carry it).
    let serial: UInt64
    let redeliveryMilliseconds: Int64
    let logger: Logger
    /// Whether a call returns once its record is written (`interval`, `none`), not synced.
    let returnsOnWrite: Bool

    /// The rest of the checkpoint still loading after a restart.
    var loader: _CheckpointLoader?
    /// Cancels of ids not held while the checkpoint loads: answered when it is known whether
    /// the timer existed.
    var deferredCancels: [([UInt8], _Reply<Bool>)] = []
    /// The checkpoint being written.
    var checkpointJob: _CheckpointJob?
    /// Callers of `checkpoint()`, with the sequence number the checkpoint must reach.
    var checkpointWaiters: [(_Reply<Void>, UInt64)] = []
    /// `journal.bytesWritten` when the last checkpoint began; negative at first, by the log
    /// bytes recovery replayed (they are part of the log since the last checkpoint).
    var logBytesAtLastCheckpoint = 0
    /// When the last checkpoint began (or the engine opened), by the engine's clock.
    var lastCheckpointAt: Int64
    let checkpointIntervalMilliseconds: Int64?
    var checkpointRequested = false
    var metrics: _EngineMetrics
    var turnsSinceMetrics = 0
    /// When `open` began (for `fullyLoadedMilliseconds`).
    let openedNanoseconds: UInt64
    /// Syncs the log and answers the callers waiting on it (directory engines only).
    let syncer: _Syncer?
    let ticker = _Ticker()
    /// The wall-clock time up to which the clock thread's plan holds: a deadline before it
    /// moves the plan forward.
    var plannedUntil: Int64 = .min
    var planNeeded = true
    /// The `close` request, once applied: nothing after it is.
    var closeReply: _Reply<Void>?
    var scheduledTotal = 0
    var cancelledTotal = 0

    init(wheel: consuming TimerWheel, journal: _WALJournal?, loader: _CheckpointLoader?, clock: any HourglassClock,
         configuration: Configuration, deliveries: _DeliveryQueue, serial: UInt64, checkpointNow: Bool,
         openedNanoseconds: UInt64, logReplayMilliseconds: Double = 0, replayedLogBytes: Int = 0) {
        self.openedNanoseconds = openedNanoseconds
        self.logBytesAtLastCheckpoint = -replayedLogBytes
        self.lastCheckpointAt = clock.now()
        self.checkpointIntervalMilliseconds = configuration.checkpointInterval.map { max(1, $0.wholeMillisecondsRoundedUp) }
        self.wheel = wheel
        self.journal = journal
        self.loader = loader
        self.clock = clock
        self.configuration = configuration
        self.deliveries = deliveries
        self.serial = serial
        self.redeliveryMilliseconds = max(1, configuration.redeliveryTimeout.wholeMillisecondsRoundedUp)
        self.logger = configuration.logger
        self.checkpointRequested = checkpointNow
        if case .always = configuration.durability { returnsOnWrite = false } else { returnsOnWrite = true }
        let metrics = _EngineMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory, dimensions: configuration.metricsDimensions)
        self.metrics = metrics
        if journal != nil {
            let syncDuration = metrics.syncDuration
            self.syncer = _Syncer { syncDuration.recordNanoseconds(Int64($0)) }
        } else {
            self.syncer = nil
        }
        if let loader, loader.isDone { self.loader = nil }
        counters.logReplayMilliseconds = logReplayMilliseconds
    }

    func start() {
        ticker.start { [self] in clockTurn() }
        ticker.wake()
    }

    /// Asks for a turn of the clock thread (the clock moved, the checkpoint thread progressed).
    func wake() { ticker.wake() }

    // MARK: Entering

    /// Runs `body` as leader when the engine is free and the policy lets a call return once
    /// written; otherwise leaves `request(reply)` for the leader (or leads it, if the engine
    /// was freed meanwhile) and waits for the answer.
    @inline(__always)
    nonisolated(nonsending)
    func perform<T: Sendable>(
        _ body: (_Engine) -> Result<T, HourglassError>, orQueue request: (_Reply<T>) -> _Request
    ) async -> Result<T, HourglassError> {
        if returnsOnWrite && tryLead() {
            noteSyncFailure()
            let result = body(self)
            if let failure = leave() { return .failure(failure) }
            return result
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<T, HourglassError>, Never>) in
            enter(request(_Reply(continuation)))
        }
    }

    /// `cancel` through the door. While a checkpoint loads after a restart, a cancel of an id
    /// not loaded yet is answered once the load tells whether the timer existed.
    nonisolated(nonsending)
    func cancelThroughDoor(_ id: [UInt8]) async -> Result<Bool, HourglassError> {
        if returnsOnWrite && tryLead() {
            noteSyncFailure()
            if let result = cancel(id) {
                if let failure = leave() { return .failure(failure) }
                return result
            }
            return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
                deferredCancels.append((id, _Reply(continuation)))
                leave()
            }
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
            enter(.cancel(id, _Reply(continuation)))
        }
    }

    /// Takes the door if it is free.
    @inline(__always)
    func tryLead() -> Bool {
        door.withLock { state in
            guard !state.leading && state.accepting else { return false }
            state.leading = true
            return true
        }
    }

    /// Leaves `request` for the leader, or leads it when the engine is free. Refused once closed.
    func enter(_ request: _Request) {
        enter(contentsOf: CollectionOfOne(request))
    }

    /// Leaves several requests at once, in order: they are applied in one group, before anything
    /// fires (so a cancel right after the schedule of a timer already due still wins).
    func enter(contentsOf requests: some Collection<_Request>) {
        let role = door.withLock { state -> _DoorRole in
            guard state.accepting else { return .refused }
            if state.leading {
                state.queue.append(contentsOf: requests)
                return .queued
            }
            state.leading = true
            return .leader
        }
        switch role {
        case .refused:
            for request in requests { Self.refuse(request) }
        case .queued:
            break
        case .leader:
            var replies = _Replies()
            apply(Array(requests), into: &replies)
            _ = leave(replies)
        }
    }

    // MARK: Leading

    /// Ends a turn of leadership: fires what is due, writes the group's frame and answers it.
    /// What callers queued meanwhile is the next group: the clock thread leads it (a caller that
    /// leads returns after its own group; the door passes, still held, to the clock thread, which
    /// leads group after group while callers keep queuing, and lets go when none is left).
    /// Returns the failure that stopped the engine while writing the first group (the leader's
    /// own work is not durable then).
    @discardableResult
    func leave(_ replies: consuming _Replies = _Replies(), isClockThread: Bool = false) -> HourglassError? {
        var replies = replies
        var firstFailure: HourglassError? = nil
        var isFirstGroup = true
        while true {
            let started = monotonicNanoseconds()
            let failure = endGroup(&replies)
            if isFirstGroup { firstFailure = failure }
            isFirstGroup = false
            if closeReply != nil {
                finish()
                return firstFailure
            }
            let sync = claimedSync
            claimedSync = nil
            // A caller leads its own group; what others queued meanwhile goes to the clock
            // thread, which leads for as long as callers keep queuing: callers keep their
            // threads to themselves, and nobody sleeps or wakes per call while the load lasts.
            let mayHandOver = !isClockThread
            enum Next { case group([_Request]), housekeeping, done, handedOver }
            let next = door.withLock { state -> Next in
                if state.housekeepingRequested {
                    state.housekeepingRequested = false
                    return .housekeeping
                }
                if state.queue.isEmpty {
                    state.leading = false
                    return .done
                }
                if mayHandOver {
                    state.handedToClock = true
                    return .handedOver
                }
                var batch: [_Request] = []
                swap(&batch, &state.queue)
                return .group(batch)
            }
            // The sync this group claimed runs outside the door, so the next group forms meanwhile.
            if let sync { syncer?.perform(sync.batch, sync.replies) }
            switch next {
            case .done:
                return firstFailure
            case .handedOver:
                ticker.wake()
                return firstFailure
            case .housekeeping:
                housekeeping(budgetNanoseconds: max(20_000, monotonicNanoseconds() - started))
            case let .group(batch):
                apply(batch, into: &replies)
            }
        }
    }

    /// The end of a group: fire what is due, write and answer the group, hand over deliveries,
    /// answer `stats()` barriers, replan the clock thread if needed. Returns the commit's failure.
    private func endGroup(_ replies: inout _Replies) -> HourglassError? {
        if closeReply == nil { fireDue() }
        let failure = commit(&replies)
        replies.resumeAll()
        replies = _Replies()
        if !outgoing.isEmpty {
            deliveries.push(outgoing)
            outgoing.removeAll(keepingCapacity: true)
        }
        turnsSinceMetrics += 1
        if turnsSinceMetrics >= 256 || !barriers.isEmpty { publishMetrics() }
        if !barriers.isEmpty {
            let snapshot = stats()
            for barrier in barriers { barrier.resume(returning: snapshot) }
            barriers.removeAll()
        }
        if planNeeded && closeReply == nil { planClock() }
        return failure
    }

    /// A turn of the clock thread: lead if the engine is free (or was handed over), else ask
    /// its leader to do the housekeeping before it leaves.
    private func clockTurn() {
        enum Turn { case none, handedOver, own }
        let turn = door.withLock { state -> Turn in
            if state.handedToClock {
                state.handedToClock = false
                return .handedOver
            }
            guard state.accepting else { return .none }
            if state.leading {
                state.housekeepingRequested = true
                return .none
            }
            state.leading = true
            return .own
        }
        switch turn {
        case .none:
            return
        case .handedOver:
            // Callers are waiting in the queue: `leave` takes it as its next group (background
            // work gets its slices between groups).
            leave(isClockThread: true)
        case .own:
            housekeeping(budgetNanoseconds: 5_000_000)
            leave(isClockThread: true)
        }
    }

    /// The engine's own work, done by whoever leads when it is asked for: background slices
    /// (checkpoint loading and writing), then a new plan for the clock thread. Firing and the
    /// interval sync follow in `endGroup`.
    func housekeeping(budgetNanoseconds: UInt64) {
        noteSyncFailure()
        if closeReply == nil { backgroundWork(budgetNanoseconds: budgetNanoseconds) }
        planNeeded = true
    }

    /// A sync that failed since the last group stops the engine before the next one applies.
    @inline(__always)
    func noteSyncFailure() {
        if stoppedReason == nil, let failure = syncer?.failed { stop(because: failure) }
    }

    func publishMetrics() {
        turnsSinceMetrics = 0
        var light = counters
        light.pending = wheel.count - wheel.inFlightCount
        light.inFlight = wheel.inFlightCount
        light.logBytesWritten = journal?.bytesWritten ?? 0
        metrics.update(light, scheduled: scheduledTotal, cancelled: cancelledTotal)
    }

    // MARK: Applying a group

    func apply(_ batch: [_Request], into replies: inout _Replies) {
        noteSyncFailure()
        for (position, request) in batch.enumerated() {
            if closeReply != nil {
                Self.refuse(request)  // nothing after `close` is applied
                continue
            }
            // Start loading what a request a few places ahead will touch, so the cache misses
            // of a large group overlap.
            if position + 8 < batch.count { prefetch(for: batch[position + 8]) }
            apply(request, into: &replies)
        }
    }

    private func apply(_ request: _Request, into replies: inout _Replies) {
        switch request {
        case let .schedule(item, reply):
            replies.append(reply, schedule(item))
        case let .scheduleBatch(items, reply):
            replies.append(reply, schedule(items))
        case let .cancel(id, reply):
            if let result = cancel(id) {
                replies.append(reply, result)
            } else {
                deferredCancels.append((id, reply))
            }
        case let .ack(ref, reply):
            replies.append(reply, ack(ref))
        case let .ackBatch(refs, reply):
            replies.append(reply, ack(refs))
        case let .take(ref, reply):
            replies.append(reply, take(ref))
        case let .retry(ref, delay, reply):
            replies.append(reply, retry(ref, delayMilliseconds: delay))
        case let .stats(reply):
            barriers.append(reply)
        case let .checkpoint(reply):
            if let error = refuseIfStopped() {
                replies.append(reply, .failure(error))
            } else if let journal {
                checkpointWaiters.append((reply, journal.nextSequence))
                checkpointRequested = true
                planNeeded = true
            } else {
                replies.append(reply, .success(()))  // in memory: nothing to write
            }
        case let .close(reply):
            closeReply = reply
        }
    }

    @inline(__always)
    private func prefetch(for request: _Request) {
        switch request {
        case let .schedule(item, _): item.id.bytes.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .cancel(id, _): id.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .ack(ref, _), let .retry(ref, _, _), let .take(ref, _): wheel.prefetch(TimerHandle(rawValue: ref.handle))
        default: break
        }
    }

    // MARK: Durability

    /// Writes the group's records as one frame, then answers or syncs as the policy asks: under
    /// `always` the group waits for a sync that covers it (claimed here, in log order); otherwise
    /// it is answered at once and the log is synced every interval by the sync thread (or, with
    /// `none`, only at close). A failure stops the engine: every reply of the group gets it.
    private func commit(_ replies: inout _Replies) -> HourglassError? {
        guard let journal, let syncer, stoppedReason == nil else { return refuseIfStopped() }
        let grownBefore = journal.bytesWritten - logBytesAtLastCheckpoint
        do throws(HourglassError) {
            if try journal.commit() {
                if !unsynced { planNeeded = true }  // the clock thread syncs an interval from now
                unsynced = true
                let grown = journal.bytesWritten - logBytesAtLastCheckpoint
                if checkpointJob == nil && (grown >= configuration.checkpointLogBytes || (grownBefore <= 0 && checkpointIntervalMilliseconds != nil)) {
                    planNeeded = true  // a checkpoint is due, or the interval now runs: the clock thread knows when
                }
            }
        } catch {
            stop(because: error)
            replies.failAll(with: error)
            return error
        }
        switch configuration.durability {
        case .always:
            guard unsynced || !replies.isEmpty else { break }
            let batch = unsynced ? journal.takeSyncBatch() : LogWriter.SyncBatch()
            unsynced = false
            if var claimed = claimedSync {
                claimed.batch.append(batch)
                claimed.replies.append(contentsOf: replies)
                claimedSync = claimed
            } else if syncer.claim(batch, replies) {
                claimedSync = (batch, replies)
            }
            replies = _Replies()
        case .interval:
            if unsynced && monotonicNanoseconds() - lastSyncNanoseconds >= configuration.syncIntervalNanoseconds ?? 0 {
                syncer.handToThread(journal.takeSyncBatch(), _Replies())
                unsynced = false
                lastSyncNanoseconds = monotonicNanoseconds()
            }
        case .none:
            break
        }
        return nil
    }

    func stop(because error: HourglassError) {
        stoppedReason = error.description
        stoppedBy = error
        logger.error("hourglass stopped accepting changes", metadata: ["error": "\(error)"])
        checkpointJob?.writer.cancel()
        checkpointJob = nil
        for (reply, _) in checkpointWaiters { reply.resume(returning: .failure(error)) }
        checkpointWaiters.removeAll()
    }

    func refuseIfStopped() -> HourglassError? {
        stoppedReason.map { HourglassError.stopped(reason: $0) }
    }

    // MARK: Closing

    /// Applies `close`: refuses what came after, finishes loading (deferred cancels need their
    /// answer), waits for the syncs, closes the journal and releases the directory. The door
    /// stays held: nobody leads a closed engine.
    private func finish() {
        let leftovers = door.withLock { state -> [_Request] in
            state.accepting = false
            defer { state.queue.removeAll() }
            return state.queue
        }
        for request in leftovers { Self.refuse(request) }
        var result: Result<Void, HourglassError> = .success(())
        if let loader, stoppedReason == nil {
            do throws(HourglassError) {
                try loader.loadAll(into: &wheel)
            } catch {
                result = .failure(error)
            }
            finishLoading()
        }
        for (_, reply) in deferredCancels { reply.resume(returning: .failure(.closed)) }
        deferredCancels.removeAll()
        checkpointJob?.writer.cancel()
        checkpointJob = nil
        for (waiter, _) in checkpointWaiters { waiter.resume(returning: .failure(.closed)) }
        checkpointWaiters.removeAll()
        for barrier in barriers { barrier.resume(returning: stats()) }
        barriers.removeAll()
        if let claimed = claimedSync {
            claimedSync = nil
            syncer?.perform(claimed.batch, claimed.replies)
        }
        syncer?.waitIdle()
        syncer?.stop()
        if let failure = stoppedBy ?? syncer?.failed, case .success = result { result = .failure(failure) }
        if let journal {
            if stoppedReason != nil || syncer?.failed != nil {
                journal.abandon()  // after a failure nothing more is written
            } else {
                do throws(HourglassError) {
                    try journal.close()
                } catch {
                    result = .failure(error)
                }
            }
        }
        journal = nil
        ticker.stop(fromTurn: true)
        deliveries.finish()
        closeReply?.resume(returning: result)
        closeReply = nil
    }

    /// Closes an engine nobody holds any more (`HourglassEngine.deinit`): as `close()`, waiting
    /// here until the directory is released.
    func closeAbandoned() {
        let done = _Latch()
        enter(.close(_Reply(callback: { _ in done.open() })))
        done.wait()
        ticker.stop()
    }

    static func refuse(_ request: _Request) {
        switch request {
        case let .schedule(_, reply), let .scheduleBatch(_, reply), let .checkpoint(reply), let .close(reply):
            reply.resume(returning: .failure(.closed))
        case let .cancel(_, reply), let .ack(_, reply), let .retry(_, _, reply), let .take(_, reply):
            reply.resume(returning: .failure(.closed))
        case let .ackBatch(_, reply):
            reply.resume(returning: .failure(.closed))
        case let .stats(reply):
            reply.resume(returning: EngineStats())
        }
    }

    func stats() -> EngineStats {
        var snapshot = counters
        snapshot.inFlight = wheel.inFlightCount
        snapshot.pending = wheel.count - wheel.inFlightCount
        snapshot.buffered = deliveries.buffered
        snapshot.nextDeadline = wheel.nextDeadline().map { Deadline(millisecondsSinceEpoch: $0) }
        snapshot.memoryBytes = wheel.allocatedBytes
        snapshot.loading = loader != nil
        snapshot.checkpointInProgress = checkpointJob != nil
        if let journal {
            snapshot.logBytesWritten = journal.bytesWritten
            snapshot.logRawBytesWritten = journal.rawBytesWritten
            snapshot.framesWritten = journal.framesWritten
            snapshot.syncs = syncer?.syncs ?? journal.syncs
            snapshot.logBytesSinceCheckpoint = journal.bytesWritten - logBytesAtLastCheckpoint
        }
        return snapshot
    }
}

/// The door's lock and state: a pthread mutex (held for nanoseconds, never across work), which
/// ThreadSanitizer understands, so that a run under `-sanitize=thread` checks every access to
/// leader-only state against the hand-overs of the door.
final class _Door: @unchecked Sendable {
    private let lock = _ConditionLock()
    private var state = _DoorState()

    @inline(__always)
    func withLock<R>(_ body: (inout _DoorState) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }
}

/// A one-shot gate a thread can wait on.
final class _Latch: @unchecked Sendable {
    private let lock = _ConditionLock()
    private var isOpen = false

    func open() {
        lock.withLock {
            isOpen = true
            lock.broadcast()
        }
    }

    func wait() {
        lock.withLock {
            while !isOpen { lock.wait(nanoseconds: nil) }
        }
    }
}
