import CoreMetrics
import HourglassCore
import HourglassStorage
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The single owner of the wheel (and, for a directory, of the log): a dedicated thread that
/// takes whatever requests are waiting, applies them, writes them as one frame, syncs per
/// policy, answers every caller in the batch, then fires what is due. Between batches it
/// gives slices of time to background work: loading the rest of a checkpoint after a restart,
/// and writing a new checkpoint.
///
/// Only the engine thread touches the wheel and the journal. Callers touch `inbox`,
/// `wakeRequested` and `accepting`, under `lock`.
final class _Engine: @unchecked Sendable {
    // MARK: Shared with callers (under `lock`)

    let lock = _ConditionLock()
    private var inbox: [_Request] = []
    private var wakeRequested = false
    private var accepting = true

    // MARK: Engine thread only

    private var wheel: TimerWheel
    let clock: any HourglassClock
    let configuration: Configuration
    let deliveries: _DeliveryQueue
    private var journal: _WALJournal?
    private var stoppedReason: String?
    /// The failure that stopped the engine: `close` reports it.
    private var stoppedBy: HourglassError?
    private var fired: [TimerHandle] = []
    private var outgoing: [Delivery] = []
    private var lastSyncNanoseconds: UInt64 = monotonicNanoseconds()
    private var unsynced = false
    private var counters = EngineStats()
    let identity: ObjectIdentifier
    private let redeliveryMilliseconds: Int64
    private let logger: Logger

    /// The rest of the checkpoint still loading after a restart.
    private var loader: _CheckpointLoader?
    /// Cancels of ids not held while the checkpoint loads: answered when it is known whether
    /// the timer existed.
    private var deferredCancels: [([UInt8], _Reply<Bool>)] = []
    /// The checkpoint being written.
    private var checkpointJob: _CheckpointJob?
    /// Callers of `checkpoint()`, with the sequence number the checkpoint must reach.
    private var checkpointWaiters: [(_Reply<Void>, UInt64)] = []
    /// `journal.bytesWritten` when the last checkpoint began; negative at first, by the log
    /// bytes recovery replayed (they are part of the log since the last checkpoint).
    private var logBytesAtLastCheckpoint = 0
    /// When the last checkpoint began (or the engine opened), by the engine's clock.
    private var lastCheckpointAt: Int64
    private let checkpointIntervalMilliseconds: Int64?
    private var checkpointRequested = false
    private var metrics: _EngineMetrics
    /// When `open` began (for `fullyLoadedMilliseconds`).
    private let openedNanoseconds: UInt64
    /// Syncs the log and answers the callers waiting on it (directory engines only).
    private let syncer: _Syncer?
    private var scheduledTotal = 0
    private var cancelledTotal = 0

    init(wheel: consuming TimerWheel, journal: _WALJournal?, loader: _CheckpointLoader?, clock: any HourglassClock,
         configuration: Configuration, deliveries: _DeliveryQueue, identity: ObjectIdentifier, checkpointNow: Bool,
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
        self.identity = identity
        self.redeliveryMilliseconds = max(1, configuration.redeliveryTimeout.wholeMillisecondsRoundedUp)
        self.logger = configuration.logger
        self.checkpointRequested = checkpointNow
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

    // MARK: Callers' side

    /// Queues a request; false when the engine no longer accepts any (closed).
    func submit(_ request: _Request) -> Bool {
        lock.lock()
        guard accepting else {
            lock.unlock()
            return false
        }
        inbox.append(request)
        lock.signal()
        lock.unlock()
        return true
    }

    /// Queues several requests at once: the engine takes them in the same batch, so they are
    /// all applied before it fires anything. False when the engine no longer accepts any.
    func submit(contentsOf requests: [_Request]) -> Bool {
        lock.lock()
        guard accepting else {
            lock.unlock()
            return false
        }
        inbox.append(contentsOf: requests)
        lock.signal()
        lock.unlock()
        return true
    }

    /// Asks the engine thread to look again (the clock moved, the checkpoint thread progressed).
    func wake() {
        lock.withLock {
            wakeRequested = true
            lock.signal()
        }
    }

    func start() {
        _startThread(name: "hourglass") { [self] in run() }
    }

    // MARK: The loop

    private func run() {
        var batch: [_Request] = []
        var closeReply: _Reply<Void>? = nil
        while closeReply == nil {
            lock.lock()
            while inbox.isEmpty && !wakeRequested {
                guard let wait = waitNanoseconds(), wait > 0 else { break }
                lock.wait(nanoseconds: wait == .max ? nil : wait)
            }
            wakeRequested = false
            swap(&batch, &inbox)
            lock.unlock()

            let batchStarted = monotonicNanoseconds()
            if stoppedReason == nil, let failure = syncer?.failed { stop(because: failure) }
            var replies = _Replies()
            var barriers: [UnsafeContinuation<EngineStats, Never>] = []
            for (position, request) in batch.enumerated() {
                // Start loading what a request a few places ahead will touch, so the cache
                // misses of a large batch overlap.
                if position + 8 < batch.count { prefetch(for: batch[position + 8]) }
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
                    } else {
                        replies.append(reply, .success(()))  // in memory: nothing to write
                    }
                case let .close(reply):
                    // Everything queued before `close` is applied; nothing after it.
                    closeReply = reply
                }
            }
            let hadRequests = !batch.isEmpty
            batch.removeAll(keepingCapacity: true)
            if closeReply == nil { fireDue() }
            commit(&replies, force: closeReply != nil)
            replies.resumeAll()
            if !outgoing.isEmpty {
                deliveries.push(outgoing)
                outgoing.removeAll(keepingCapacity: true)
            }
            if closeReply == nil {
                // Background work gets at most as much time as requests just had (so requests
                // keep at least half the thread), and 5 ms slices when there are none.
                let spent = monotonicNanoseconds() - batchStarted
                backgroundWork(budgetNanoseconds: hadRequests ? max(20_000, spent) : 5_000_000)
            }
            var light = counters
            light.pending = wheel.count - wheel.inFlightCount
            light.inFlight = wheel.inFlightCount
            light.logBytesWritten = journal?.bytesWritten ?? 0
            metrics.update(light, scheduled: scheduledTotal, cancelled: cancelledTotal)
            if !barriers.isEmpty {
                let snapshot = stats()
                for barrier in barriers { barrier.resume(returning: snapshot) }
            }
        }
        finish(closeReply!)
    }

    @inline(__always)
    private func prefetch(for request: _Request) {
        switch request {
        case let .schedule(item, _): item.id.bytes.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .cancel(id, _): id.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .ack(ref, _), let .retry(ref, _, _): wheel.prefetch(TimerHandle(rawValue: ref.handle))
        default: break
        }
    }

    /// How long the thread may sleep: 0 when there is work now, `.max` for no limit.
    private func waitNanoseconds() -> UInt64? {
        if stoppedReason == nil && (loader != nil || checkpointJob?.isRunnable == true || checkpointDue) { return 0 }
        var wait = UInt64.max
        if unsynced, case let .interval(ms) = configuration.durability {
            let due = lastSyncNanoseconds &+ UInt64(ms) * 1_000_000
            let now = monotonicNanoseconds()
            if due <= now { return 0 }
            wait = due - now
        }
        if checkpointJob != nil { wait = min(wait, 50_000_000) }  // poll the checkpoint thread too
        if stoppedReason == nil, !clock.isManual, let due = checkpointIntervalDueTime() {
            wait = min(wait, nanosecondsUntil(due))
        }
        guard stoppedReason == nil, let next = nextWorkTime() else { return wait }
        if clock.isManual {
            return next <= clock.now() ? 0 : wait
        }
        let untilNext = nanosecondsUntil(next)
        if untilNext == 0 { return 0 }
        // Look at the wall clock at least every 100 ms, so that a step forward fires what became
        // due without waiting for the old deadline.
        return min(wait, untilNext, 100_000_000)
    }

    /// The earliest time at which firing has work: the next deadline (when the in-flight window
    /// has room) or the next redelivery.
    private func nextWorkTime() -> Int64? {
        guard configuration.deliversTimers else { return nil }
        var next = wheel.nextRedelivery()
        if roomToFire() > 0, let deadline = wheel.nextDeadline() {
            next = min(next ?? deadline, deadline)
        }
        return next
    }

    private func nanosecondsUntil(_ milliseconds: Int64) -> UInt64 {
        if clock is SystemClock {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
            let target = milliseconds.multipliedReportingOverflow(by: 1_000_000)
            if target.overflow { return .max }
            return target.partialValue <= now ? 0 : UInt64(target.partialValue - now)
        }
        let now = clock.now()
        return milliseconds <= now ? 0 : UInt64(min(milliseconds - now, Int64.max / 1_000_000)) * 1_000_000
    }

    // MARK: Requests

    private func refuseIfStopped() -> HourglassError? {
        stoppedReason.map { HourglassError.stopped(reason: $0) }
    }

    private func schedule(_ item: TimerRequest) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        return apply(item)
    }

    private func schedule(_ items: [TimerRequest]) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        // A software pipeline: start loading the index slots of ids a few items ahead, so the
        // cache misses of a large batch overlap.
        let lookahead = 8
        for i in 0 ..< items.count {
            if i + lookahead < items.count {
                items[i + lookahead].id.bytes.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
            }
            if case let .failure(error) = apply(items[i]) { return .failure(error) }
        }
        return .success(())
    }

    private func apply(_ item: TimerRequest) -> Result<Void, HourglassError> {
        let deadline = item.deadline.millisecondsSinceEpoch
        let result = item.id.bytes.withUnsafeBytes { id in
            item.payload.withUnsafeBytes { payload in
                Result { () throws(TimerWheel.CapacityError) in
                    _ = try wheel.schedule(id: id, deadline: deadline, payload: payload, attempt: 1)
                    journal?.schedule(id: id, deadline: deadline, attempt: 1, payload: payload)
                    scheduledTotal += 1
                }
            }
        }
        switch result {
        case .success: return .success(())
        case .failure(.tooManyTimers): return .failure(.capacityExceeded("the engine holds 2^32 - 1 timers"))
        case .failure(.arenaFull): return .failure(.capacityExceeded("ids and payloads held in memory would pass 32 GiB"))
        }
    }

    /// nil: the answer waits until the checkpoint has loaded (the timer may be in the rest).
    private func cancel(_ id: [UInt8]) -> Result<Bool, HourglassError>? {
        if let error = refuseIfStopped() { return .failure(error) }
        return id.withUnsafeBytes { id -> Result<Bool, HourglassError>? in
            let found = wheel.cancel(id: id)
            if found { cancelledTotal += 1 }
            guard let loader else {
                if found { journal?.cancel(id: id) }
                return .success(found)
            }
            // While the checkpoint loads, the cancel must win over a copy not loaded yet.
            loader.tombstones.insert(id)
            journal?.cancel(id: id)
            return found ? .success(true) : nil
        }
    }

    /// Removes a held timer for good (ack, last attempt, at-most-once delivery), logging it.
    private func removeForGood(_ handle: TimerHandle) {
        wheel.withID(of: handle) { id in
            journal?.ack(id: id)
            loader?.tombstones.insert(id)
        }
        wheel.remove(handle)
    }

    /// The timer a delivery refers to, if it is still that delivery in flight.
    private func inFlightTimer(_ ref: _DeliveryRef) -> TimerHandle? {
        let handle = TimerHandle(rawValue: ref.handle)
        guard wheel.isHeld(handle), wheel.isInFlight(handle),
              wheel.generation(of: handle) == ref.generation,
              Int(wheel.attempt(of: handle)) == ref.attempt
        else { return nil }
        return handle
    }

    private func ack(_ ref: _DeliveryRef) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        removeForGood(handle)
        counters.acknowledged += 1
        return .success(true)
    }

    private func retry(_ ref: _DeliveryRef, delayMilliseconds: Int64) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        let attempt = Int(wheel.attempt(of: handle)) + 1
        if let maxAttempts = configuration.maxAttempts, attempt > maxAttempts {
            removeForGood(handle)  // out of attempts: the timer is done
            counters.exhausted += 1
            return .success(false)
        }
        let deadline = min(max(clock.now().addingReportingOverflow(delayMilliseconds).partialValue, 0), TimerWheel.maxDeadline)
        wheel.rearm(handle, deadline: deadline, attempt: UInt32(attempt))
        ref.id.withUnsafeBytes { journal?.retry(id: $0, deadline: deadline, attempt: UInt32(attempt)) }
        counters.retried += 1
        return .success(true)
    }

    // MARK: Firing

    private func roomToFire() -> Int {
        switch configuration.deliveryMode {
        case .atLeastOnce: return configuration.maxInFlight - wheel.inFlightCount
        case .atMostOnce: return configuration.maxInFlight - deliveries.buffered
        }
    }

    /// Fires what is due at the clock's time: redeliveries first (they are older), then due
    /// timers in deadline order while the in-flight window has room. While a checkpoint is still
    /// loading, only timers due before the first one not yet loaded fire.
    private func fireDue() {
        guard stoppedReason == nil, configuration.deliversTimers else { return }
        let now = clock.now()
        if configuration.deliveryMode == .atLeastOnce {
            fired.removeAll(keepingCapacity: true)
            _ = wheel.takeRedeliveries(through: now, limit: .max, into: &fired)
            for handle in fired { deliver(handle, now: now, redelivery: true) }
        }
        let horizon = loader.map { min(now, $0.loadedDeadline - 1) } ?? now
        while true {
            let room = roomToFire()
            guard room > 0 else { break }
            let limit = min(room, 4096)
            fired.removeAll(keepingCapacity: true)
            let count = wheel.advance(to: horizon, limit: limit, into: &fired)
            for handle in fired { deliver(handle, now: now, redelivery: false) }
            if count < limit { break }
        }
    }

    private func deliver(_ handle: TimerHandle, now: Int64, redelivery: Bool) {
        var attempt = wheel.attempt(of: handle)
        if redelivery {
            attempt += 1
            if let maxAttempts = configuration.maxAttempts, Int(attempt) > maxAttempts {
                removeForGood(handle)
                counters.exhausted += 1
                return
            }
            let deadline = wheel.deadline(of: handle)
            if deadline > now {
                // Nothing is delivered before its deadline. An in-flight timer whose deadline is
                // still ahead (the wall clock went back across a restart, or a salvage dropped
                // the reschedule that came before its FIRE) waits for it: a retry at its deadline.
                wheel.rearm(handle, deadline: deadline, attempt: attempt)
                wheel.id(of: handle).withUnsafeBytes { journal?.retry(id: $0, deadline: deadline, attempt: attempt) }
                return
            }
            wheel.setAttempt(attempt, of: handle)
            counters.redelivered += 1
        }
        let id = wheel.id(of: handle)
        outgoing.append(Delivery(
            id: TimerID(bytes: id),
            deadline: Deadline(millisecondsSinceEpoch: wheel.deadline(of: handle)),
            payload: wheel.payload(of: handle),
            attempt: Int(attempt),
            firedAt: Deadline(millisecondsSinceEpoch: now),
            handle: handle.rawValue,
            generation: wheel.generation(of: handle),
            engine: identity))
        counters.delivered += 1
        metrics.lateness.recordMilliseconds(max(0, now - wheel.deadline(of: handle)))
        switch configuration.deliveryMode {
        case .atLeastOnce:
            let redeliverAt = min(now.addingReportingOverflow(redeliveryMilliseconds).partialValue, TimerWheel.maxDeadline)
            wheel.markInFlight(handle, redeliverAt: redeliverAt)
            id.withUnsafeBytes { journal?.fire(id: $0, attempt: attempt) }
        case .atMostOnce:
            removeForGood(handle)
        }
    }

    // MARK: Durability

    /// Writes the batch's records as one frame, then hands the sync to the sync thread as the
    /// policy asks: with `always`, together with the batch's replies, which are answered once
    /// the sync covering them is done (group commit); otherwise the replies are answered at
    /// once and the log is synced every interval (or, with `none`, only at close). A failure
    /// stops the engine: every reply of the batch becomes the error.
    private func commit(_ replies: inout _Replies, force: Bool) {
        guard let journal, let syncer, stoppedReason == nil else { return }
        do throws(HourglassError) {
            if try journal.commit() { unsynced = true }
        } catch {
            stop(because: error)
            replies.failAll(with: error)
            return
        }
        let syncNow: Bool
        switch configuration.durability {
        case .always:
            if unsynced || !replies.isEmpty {
                syncer.submit(unsynced ? journal.takeSyncBatch() : LogWriter.SyncBatch(), replies)
                replies = _Replies()
            }
            syncNow = false
            unsynced = false
        case let .interval(ms):
            syncNow = unsynced && (force || monotonicNanoseconds() - lastSyncNanoseconds >= UInt64(ms) * 1_000_000)
        case .none:
            syncNow = unsynced && force
        }
        if syncNow {
            syncer.submit(journal.takeSyncBatch(), _Replies())
            unsynced = false
            lastSyncNanoseconds = monotonicNanoseconds()
        }
    }

    private func stop(because error: HourglassError) {
        stoppedReason = error.description
        stoppedBy = error
        logger.error("hourglass stopped accepting changes", metadata: ["error": "\(error)"])
        checkpointJob?.writer.cancel()
        checkpointJob = nil
        for (reply, _) in checkpointWaiters { reply.resume(returning: .failure(error)) }
        checkpointWaiters.removeAll()
    }

    // MARK: Background work: loading and writing checkpoints

    private var checkpointDue: Bool {
        guard let journal, checkpointJob == nil, stoppedReason == nil, loader == nil else { return false }
        if checkpointRequested || journal.bytesWritten - logBytesAtLastCheckpoint >= configuration.checkpointLogBytes { return true }
        guard let due = checkpointIntervalDueTime() else { return false }
        return clock.now() >= due
    }

    /// When `checkpointInterval` asks for the next checkpoint, if it does: only once the log
    /// has grown since the last one. A wall clock stepped back restarts the interval.
    private func checkpointIntervalDueTime() -> Int64? {
        guard let interval = checkpointIntervalMilliseconds, let journal,
              journal.bytesWritten - logBytesAtLastCheckpoint > 0 else { return nil }
        let now = clock.now()
        if now < lastCheckpointAt { lastCheckpointAt = now }
        let due = lastCheckpointAt.addingReportingOverflow(interval)
        return due.overflow ? .max : due.partialValue
    }

    private func backgroundWork(budgetNanoseconds: UInt64) {
        guard stoppedReason == nil else { return }
        let deadline = monotonicNanoseconds() + budgetNanoseconds
        if let loader {
            do throws(HourglassError) {
                try loader.loadSlice(into: &wheel, until: deadline)
            } catch {
                stop(because: error)
                return
            }
            if loader.isDone { finishLoading() }
            return
        }
        if checkpointDue { beginCheckpoint() }
        if let job = checkpointJob, let outcome = job.advance(wheel: &wheel, until: deadline) {
            endCheckpoint(job, outcome)
        }
    }

    private func finishLoading() {
        guard let loader else { return }
        self.loader = nil
        counters.fullyLoadedMilliseconds = Double(monotonicNanoseconds() - openedNanoseconds) / 1e6
        for (id, reply) in deferredCancels {
            let existed = id.withUnsafeBytes { loader.tombstones.isMarked($0) }
            reply.resume(returning: .success(existed))
        }
        deferredCancels.removeAll()
        logger.info("hourglass finished loading the checkpoint", metadata: ["timers": "\(loader.timersLoaded)"])
    }

    private func beginCheckpoint() {
        guard let journal else { return }
        checkpointRequested = false
        do throws(HourglassError) {
            checkpointJob = try journal.beginCheckpoint(handleLimit: wheel.handleLimit, clock: clock) { [weak self] in self?.wake() }
            logBytesAtLastCheckpoint = journal.bytesWritten
            lastCheckpointAt = clock.now()
        } catch {
            logger.error("hourglass could not start a checkpoint", metadata: ["error": "\(error)"])
            for (reply, _) in checkpointWaiters { reply.resume(returning: .failure(error)) }
            checkpointWaiters.removeAll()
        }
    }

    private func endCheckpoint(_ job: _CheckpointJob, _ outcome: CheckpointWriter.Outcome) {
        checkpointJob = nil
        guard let journal else { return }
        var result: Result<Void, HourglassError> = .success(())
        switch outcome {
        case let .done(trailer, bytes):
            do throws(HourglassError) {
                try journal.completeCheckpoint(job)
                counters.checkpoints += 1
                counters.checkpointSequence = trailer.startSequence
                counters.lastCheckpointMilliseconds = Double(monotonicNanoseconds() - job.startedNanoseconds) / 1e6
                metrics.checkpointDuration.recordNanoseconds(Int64(monotonicNanoseconds() - job.startedNanoseconds))
                logger.info("hourglass wrote a checkpoint", metadata: [
                    "sequence": "\(trailer.startSequence)", "timers": "\(trailer.timers)", "bytes": "\(bytes)",
                    "milliseconds": "\(counters.lastCheckpointMilliseconds ?? 0)",
                ])
            } catch {
                result = .failure(error)
            }
        case let .failed(error):
            result = .failure(HourglassError(error))
            logger.error("hourglass checkpoint failed", metadata: ["error": "\(error)"])
        }
        // Answer the callers whose changes this checkpoint covers; start another for the rest.
        var remaining: [(_Reply<Void>, UInt64)] = []
        for (reply, sequence) in checkpointWaiters {
            if case .failure = result {
                reply.resume(returning: result)
            } else if sequence <= job.startSequence {
                reply.resume(returning: result)
            } else {
                remaining.append((reply, sequence))
            }
        }
        checkpointWaiters = remaining
        if !remaining.isEmpty { checkpointRequested = true }
    }

    // MARK: Closing

    private func finish(_ reply: _Reply<Void>) {
        let leftovers = lock.withLock { () -> [_Request] in
            accepting = false
            defer { inbox.removeAll() }
            return inbox
        }
        for request in leftovers { Self.refuse(request) }
        var result: Result<Void, HourglassError> = .success(())
        if let loader, stoppedReason == nil {
            // Deferred cancels need an answer: finish loading first.
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
        deliveries.finish()
        reply.resume(returning: result)
    }

    static func refuse(_ request: _Request) {
        switch request {
        case let .schedule(_, reply), let .scheduleBatch(_, reply), let .checkpoint(reply), let .close(reply):
            reply.resume(returning: .failure(.closed))
        case let .cancel(_, reply), let .ack(_, reply), let .retry(_, _, reply):
            reply.resume(returning: .failure(.closed))
        case let .stats(reply):
            reply.resume(returning: EngineStats())
        }
    }

    private func stats() -> EngineStats {
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

/// Replies held back until the batch is durable, answered in the order the requests came.
struct _Replies {
    private enum Entry {
        case void(_Reply<Void>, Result<Void, HourglassError>)
        case bool(_Reply<Bool>, Result<Bool, HourglassError>)
    }

    private var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }

    mutating func append(_ reply: _Reply<Void>, _ result: Result<Void, HourglassError>) { entries.append(.void(reply, result)) }
    mutating func append(_ reply: _Reply<Bool>, _ result: Result<Bool, HourglassError>) { entries.append(.bool(reply, result)) }

    mutating func failAll(with error: HourglassError) {
        entries = entries.map { entry in
            switch entry {
            case let .void(reply, _): return .void(reply, .failure(error))
            case let .bool(reply, _): return .bool(reply, .failure(error))
            }
        }
    }

    func resumeAll() {
        for entry in entries {
            switch entry {
            case let .void(reply, result): reply.resume(returning: result)
            case let .bool(reply, result): reply.resume(returning: result)
            }
        }
    }
}
