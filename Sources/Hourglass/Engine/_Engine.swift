import HourglassCore
import Logging

/// The single owner of the wheel (and, for a directory, of the log): a dedicated thread that
/// takes whatever requests are waiting, applies them, writes them as one frame, syncs per
/// policy, answers every caller in the batch, then fires what is due.
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
    private var journal: (any _Journal)?
    private var stoppedReason: String?
    private var fired: [TimerHandle] = []
    private var outgoing: [Delivery] = []
    private var lastSyncNanoseconds: UInt64 = monotonicNanoseconds()
    private var unsynced = false
    private var counters = EngineStats(
        pending: 0, inFlight: 0, delivered: 0, redelivered: 0, acknowledged: 0, retried: 0, buffered: 0,
        nextDeadline: nil, memoryBytes: 0, logBytesWritten: 0, framesWritten: 0, syncs: 0)
    let identity: ObjectIdentifier
    private let redeliveryMilliseconds: Int64
    private let logger: Logger

    init(wheel: consuming TimerWheel, journal: (any _Journal)?, clock: any HourglassClock,
         configuration: Configuration, deliveries: _DeliveryQueue, identity: ObjectIdentifier) {
        self.wheel = wheel
        self.journal = journal
        self.clock = clock
        self.configuration = configuration
        self.deliveries = deliveries
        self.identity = identity
        self.redeliveryMilliseconds = max(1, configuration.redeliveryTimeout.wholeMillisecondsRoundedUp)
        self.logger = configuration.logger
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

    /// Asks the engine thread to look at the clock again (a manual clock moved).
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

            var replies = _Replies()
            var barriers: [UnsafeContinuation<EngineStats, Never>] = []
            for request in batch {
                switch request {
                case let .schedule(item, reply):
                    replies.void.append((reply, schedule(item)))
                case let .scheduleBatch(items, reply):
                    replies.void.append((reply, schedule(items)))
                case let .cancel(id, reply):
                    replies.bool.append((reply, cancel(id)))
                case let .ack(ref, reply):
                    replies.bool.append((reply, ack(ref)))
                case let .retry(ref, delay, reply):
                    replies.bool.append((reply, retry(ref, delayMilliseconds: delay)))
                case let .stats(reply):
                    barriers.append(reply)
                case let .checkpoint(reply):
                    replies.void.append((reply, checkpoint()))
                case let .close(reply):
                    // Everything queued before `close` is applied; nothing after it.
                    closeReply = reply
                }
            }
            batch.removeAll(keepingCapacity: true)
            if closeReply == nil { fireDue() }
            commit(&replies, force: closeReply != nil)
            replies.resumeAll()
            if !outgoing.isEmpty {
                deliveries.push(outgoing)
                outgoing.removeAll(keepingCapacity: true)
            }
            if !barriers.isEmpty {
                let snapshot = stats()
                for barrier in barriers { barrier.resume(returning: snapshot) }
            }
        }
        finish(closeReply!)
    }

    /// How long the thread may sleep: 0 when there is work now, `.max` for no limit.
    private func waitNanoseconds() -> UInt64? {
        var wait = UInt64.max
        if unsynced, case let .interval(ms) = configuration.durability {
            let due = lastSyncNanoseconds &+ UInt64(ms) * 1_000_000
            let now = monotonicNanoseconds()
            if due <= now { return 0 }
            wait = due - now
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

    private func schedule(_ item: _ScheduleItem) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        return apply(item)
    }

    private func schedule(_ items: [_ScheduleItem]) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        // A software pipeline: start loading the index slots of ids a few items ahead, so the
        // cache misses of a large batch overlap.
        let lookahead = 8
        for i in 0 ..< items.count {
            if i + lookahead < items.count {
                items[i + lookahead].id.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
            }
            if case let .failure(error) = apply(items[i]) { return .failure(error) }
        }
        return .success(())
    }

    private func apply(_ item: _ScheduleItem) -> Result<Void, HourglassError> {
        let result = item.id.withUnsafeBytes { id in
            item.payload.withUnsafeBytes { payload in
                Result { () throws(TimerWheel.CapacityError) in
                    _ = try wheel.schedule(id: id, deadline: item.deadline, payload: payload, attempt: 1)
                    journal?.schedule(id: id, deadline: item.deadline, attempt: 1, payload: payload)
                }
            }
        }
        switch result {
        case .success: return .success(())
        case .failure(.tooManyTimers): return .failure(.capacityExceeded("the engine holds 2^32 - 1 timers"))
        case .failure(.arenaFull): return .failure(.capacityExceeded("ids and payloads held in memory would pass 32 GiB"))
        }
    }

    private func cancel(_ id: [UInt8]) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        let found = id.withUnsafeBytes { id -> Bool in
            let found = wheel.cancel(id: id)
            if found { journal?.cancel(id: id) }
            return found
        }
        return .success(found)
    }

    /// The timer a delivery refers to, if it is still that delivery in flight.
    private func inFlightTimer(_ ref: _DeliveryRef) -> TimerHandle? {
        let handle = TimerHandle(rawValue: ref.handle)
        guard ref.handle < wheel.handleLimit, wheel.isHeld(handle), wheel.isInFlight(handle),
              wheel.generation(of: handle) == ref.generation,
              Int(wheel.attempt(of: handle)) == ref.attempt
        else { return nil }
        return handle
    }

    private func ack(_ ref: _DeliveryRef) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        ref.id.withUnsafeBytes { journal?.ack(id: $0) }
        wheel.remove(handle)
        counters.acknowledged += 1
        return .success(true)
    }

    private func retry(_ ref: _DeliveryRef, delayMilliseconds: Int64) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        let attempt = Int(wheel.attempt(of: handle)) + 1
        if let maxAttempts = configuration.maxAttempts, attempt > maxAttempts {
            // Out of attempts: the timer is done.
            ref.id.withUnsafeBytes { journal?.ack(id: $0) }
            wheel.remove(handle)
            return .success(false)
        }
        let deadline = min(clock.now().addingReportingOverflow(delayMilliseconds).partialValue, TimerWheel.maxDeadline)
        wheel.rearm(handle, deadline: max(deadline, 0), attempt: UInt32(attempt))
        ref.id.withUnsafeBytes { journal?.retry(id: $0, deadline: deadline, attempt: UInt32(attempt)) }
        counters.retried += 1
        return .success(true)
    }

    private func checkpoint() -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        return .success(())
    }

    // MARK: Firing

    private func roomToFire() -> Int {
        switch configuration.deliveryMode {
        case .atLeastOnce: return configuration.maxInFlight - wheel.inFlightCount
        case .atMostOnce: return configuration.maxInFlight - deliveries.buffered
        }
    }

    /// Fires what is due at the clock's time: redeliveries first (they are older), then due
    /// timers in deadline order while the in-flight window has room.
    private func fireDue() {
        guard stoppedReason == nil else { return }
        let now = clock.now()
        if configuration.deliveryMode == .atLeastOnce {
            fired.removeAll(keepingCapacity: true)
            _ = wheel.takeRedeliveries(through: now, limit: .max, into: &fired)
            for handle in fired { deliver(handle, now: now, redelivery: true) }
        }
        while true {
            let room = roomToFire()
            guard room > 0 else { break }
            let limit = min(room, 4096)
            fired.removeAll(keepingCapacity: true)
            let count = wheel.advance(to: now, limit: limit, into: &fired)
            for handle in fired { deliver(handle, now: now, redelivery: false) }
            if count < limit { break }
        }
    }

    private func deliver(_ handle: TimerHandle, now: Int64, redelivery: Bool) {
        var attempt = wheel.attempt(of: handle)
        if redelivery {
            attempt += 1
            if let maxAttempts = configuration.maxAttempts, Int(attempt) > maxAttempts {
                wheel.withID(of: handle) { journal?.ack(id: $0) }
                wheel.remove(handle)
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
        switch configuration.deliveryMode {
        case .atLeastOnce:
            let redeliverAt = min(now.addingReportingOverflow(redeliveryMilliseconds).partialValue, TimerWheel.maxDeadline)
            wheel.markInFlight(handle, redeliverAt: redeliverAt)
            id.withUnsafeBytes { journal?.fire(id: $0, attempt: attempt) }
        case .atMostOnce:
            id.withUnsafeBytes { journal?.ack(id: $0) }
            wheel.remove(handle)
        }
    }

    // MARK: Durability

    /// Writes the batch's records as one frame and syncs as the policy asks. A failure stops the
    /// engine: every reply of the batch becomes the error.
    private func commit(_ replies: inout _Replies, force: Bool) {
        guard let journal = self.journal, stoppedReason == nil else { return }
        do throws(HourglassError) {
            if try journal.commit() { unsynced = true }
            let syncNow: Bool
            switch configuration.durability {
            case .always: syncNow = unsynced
            case let .interval(ms):
                syncNow = unsynced && (force || monotonicNanoseconds() - lastSyncNanoseconds >= UInt64(ms) * 1_000_000)
            case .none: syncNow = unsynced && force
            }
            if syncNow {
                try journal.sync()
                unsynced = false
                lastSyncNanoseconds = monotonicNanoseconds()
            }
        } catch {
            stop(because: error)
            replies.failAll(with: .stopped(reason: error.description))
        }
    }

    private func stop(because error: HourglassError) {
        stoppedReason = error.description
        logger.error("hourglass stopped accepting changes", metadata: ["error": "\(error)"])
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
        if let journal {
            do throws(HourglassError) {
                try journal.close()
            } catch {
                result = .failure(error)
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
            reply.resume(returning: EngineStats(
                pending: 0, inFlight: 0, delivered: 0, redelivered: 0, acknowledged: 0, retried: 0, buffered: 0,
                nextDeadline: nil, memoryBytes: 0, logBytesWritten: 0, framesWritten: 0, syncs: 0))
        }
    }

    private func stats() -> EngineStats {
        var snapshot = counters
        snapshot.inFlight = wheel.inFlightCount
        snapshot.pending = wheel.count - wheel.inFlightCount
        snapshot.buffered = deliveries.buffered
        snapshot.nextDeadline = wheel.nextDeadline().map { Deadline(millisecondsSinceEpoch: $0) }
        snapshot.memoryBytes = wheel.allocatedBytes
        if let journal {
            snapshot.logBytesWritten = journal.bytesWritten
            snapshot.framesWritten = journal.framesWritten
            snapshot.syncs = journal.syncs
        }
        return snapshot
    }
}

/// Replies held back until the batch is durable.
struct _Replies {
    var void: [(_Reply<Void>, Result<Void, HourglassError>)] = []
    var bool: [(_Reply<Bool>, Result<Bool, HourglassError>)] = []

    mutating func failAll(with error: HourglassError) {
        for i in void.indices { void[i].1 = .failure(error) }
        for i in bool.indices { bool[i].1 = .failure(error) }
    }

    func resumeAll() {
        for (reply, result) in void { reply.resume(returning: result) }
        for (reply, result) in bool { reply.resume(returning: result) }
    }
}

/// Where the engine writes what changes: the write-ahead log of a directory.
protocol _Journal: AnyObject {
    func schedule(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer)
    func cancel(id: UnsafeRawBufferPointer)
    func fire(id: UnsafeRawBufferPointer, attempt: UInt32)
    func ack(id: UnsafeRawBufferPointer)
    func retry(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32)
    /// Writes the records appended since the last commit as one frame; false when there were none.
    func commit() throws(HourglassError) -> Bool
    func sync() throws(HourglassError)
    func close() throws(HourglassError)
    var bytesWritten: Int { get }
    var framesWritten: Int { get }
    var syncs: Int { get }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
