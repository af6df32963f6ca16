import HourglassCore
import HourglassStorage
import Synchronization

/// What recovery read, cut and dropped when the engine opened.
public typealias RecoveryReport = HourglassStorage.RecoveryReport

/// A durable timer service embedded in your process: schedule timers by id, cancel them, and
/// consume them when they fire.
///
/// ```swift
/// let engine = try await HourglassEngine.open(.directory("/var/lib/orders-timers"))
/// try await engine.schedule(id: "order-42", after: .seconds(1800), payload: Array("close".utf8))
/// // ... the order is paid:
/// _ = try await engine.cancel(id: "order-42")
///
/// for await delivery in engine.deliveries {
///     closeOrder(delivery.id)
///     _ = try await engine.ack(delivery)
/// }
/// ```
///
/// One engine owns its directory (a second opener gets `HourglassError.directoryLocked`). All
/// methods are safe to call from any task; the engine applies them in the order they arrive,
/// on its own thread.
public final class HourglassEngine: Sendable {
    let engine: _Engine
    public let configuration: Configuration
    public let clock: any HourglassClock
    /// The fired timers. Iterate it from one or more tasks; it ends when the engine closes.
    public let deliveries: Deliveries
    /// What recovery found when the engine opened a directory (empty in memory).
    public let recoveryReport: RecoveryReport
    private let closed = Atomic<Bool>(false)

    private init(engine: _Engine, configuration: Configuration, clock: any HourglassClock, deliveries: _DeliveryQueue, report: RecoveryReport) {
        self.engine = engine
        self.configuration = configuration
        self.clock = clock
        self.deliveries = Deliveries(queue: deliveries)
        self.recoveryReport = report
    }

    /// Opens an engine: in memory, or over a directory (created if missing), recovering every
    /// timer it holds. Timers that fell due while the process was down fire at once, oldest first.
    ///
    /// - Throws: `HourglassError.invalidConfiguration`, `.directoryLocked`, `.corruption` (with
    ///   the file and offset), `.io`, `.diskFull`.
    public static func open(
        _ configuration: Configuration = .memory, clock: any HourglassClock = SystemClock()
    ) async throws(HourglassError) -> HourglassEngine {
        let opened = monotonicNanoseconds()
        try configuration.validate()
        let queue = _DeliveryQueue()
        let now = clock.now()
        guard Deadline.validRange.contains(now) else {
            throw .invalidConfiguration("the clock reads \(now) ms, outside the representable range")
        }
        var wheel = TimerWheel(tickMilliseconds: configuration.tickMilliseconds, now: now)
        var journal: _WALJournal? = nil
        var loader: _CheckpointLoader? = nil
        var report = RecoveryReport()
        var replayNanoseconds: UInt64 = 0
        if case let .directory(path) = configuration.storage {
            (journal, loader) = try _recover(path: path, configuration: configuration, clock: clock, into: &wheel, report: &report,
                                             replayNanoseconds: &replayNanoseconds)
        }
        let box = _IdentityBox()
        let engine = _Engine(
            wheel: wheel, journal: journal, loader: loader, clock: clock, configuration: configuration, deliveries: queue,
            identity: ObjectIdentifier(box), checkpointNow: !report.dropped.isEmpty, openedNanoseconds: opened,
            logReplayMilliseconds: Double(replayNanoseconds) / 1e6, replayedLogBytes: report.logBytes)
        let result = HourglassEngine(engine: engine, configuration: configuration, clock: clock, deliveries: queue, report: report)
        box.owner = result
        engine.start()
        if clock.isManual {
            clock.onChange { [weak engine] in engine?.wake() }
        }
        return result
    }

    // MARK: Scheduling

    /// Schedules a timer to fire at `deadline`, replacing any timer with the same id (pending,
    /// or in flight). A deadline in the past fires at once.
    ///
    /// Returns once the schedule is durable under the configured policy.
    /// - Throws: `.emptyID`, `.idTooLong`, `.payloadTooLarge`, `.deadlineOutOfRange` (nothing
    ///   changed); `.closed`; `.stopped` after a storage failure.
    public func schedule(id: TimerID, at deadline: Deadline, payload: [UInt8] = []) async throws(HourglassError) {
        let item = TimerRequest(id: id, deadline: deadline, payload: payload)
        try validate(item)
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.schedule(item, reply)) { reply.resume(returning: .failure(.closed)) }
        }
        try result.get()
    }

    /// Schedules a timer to fire `delay` from now (by the engine's clock).
    public func schedule(id: TimerID, after delay: Duration, payload: [UInt8] = []) async throws(HourglassError) {
        let ms = delay.wholeMillisecondsRoundedUp
        let (deadline, overflow) = clock.now().addingReportingOverflow(ms)
        if overflow || delay < .zero { throw .deadlineOutOfRange(milliseconds: overflow ? .max : deadline) }
        try await schedule(id: id, at: Deadline(millisecondsSinceEpoch: deadline), payload: payload)
    }

    /// Schedules many timers as one request: one hand-off to the engine, one frame in the log.
    /// Validates all of them first: if one is invalid, none is scheduled.
    public func schedule(_ timers: [TimerRequest]) async throws(HourglassError) {
        for timer in timers { try validate(timer) }
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.scheduleBatch(timers, reply)) { reply.resume(returning: .failure(.closed)) }
        }
        try result.get()
    }

    /// Cancels the timer with this id; returns whether there was one (pending or in flight).
    public func cancel(id: TimerID) async throws(HourglassError) -> Bool {
        try checkID(id)
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.cancel(id.bytes, reply)) { reply.resume(returning: .failure(.closed)) }
        }
        return try result.get()
    }

    // MARK: Consuming

    /// Acknowledges a delivery: the timer is done and will not be delivered again. Returns false
    /// when the delivery is no longer in flight (acknowledged already, redelivered with a higher
    /// attempt, replaced by a new schedule of its id, or cancelled).
    public func ack(_ delivery: Delivery) async throws(HourglassError) -> Bool {
        guard delivery.engine == identity else { return false }
        let ref = _DeliveryRef(id: delivery.id.bytes, handle: delivery.handle, generation: delivery.generation, attempt: delivery.attempt)
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.ack(ref, reply)) { reply.resume(returning: .failure(.closed)) }
        }
        return try result.get()
    }

    /// Asks for the timer to be delivered again after `delay`, with the next attempt number (the
    /// "ask again in a minute, at most three times" pattern). Returns false when the delivery is
    /// no longer in flight, or when `Configuration.maxAttempts` is reached: then the timer is
    /// dropped.
    public func retry(_ delivery: Delivery, after delay: Duration) async throws(HourglassError) -> Bool {
        guard delivery.engine == identity else { return false }
        guard delay >= .zero else { throw .deadlineOutOfRange(milliseconds: delay.wholeMillisecondsRoundedUp) }
        let ref = _DeliveryRef(id: delivery.id.bytes, handle: delivery.handle, generation: delivery.generation, attempt: delivery.attempt)
        let ms = delay.wholeMillisecondsRoundedUp
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.retry(ref, delayMilliseconds: ms, reply)) { reply.resume(returning: .failure(.closed)) }
        }
        return try result.get()
    }

    // MARK: Housekeeping

    /// Writes a checkpoint covering every change made before the call, then deletes the log
    /// segments and older checkpoints it makes unnecessary. Requests keep flowing meanwhile.
    /// In memory it does nothing.
    public func checkpoint() async throws(HourglassError) {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.checkpoint(reply)) { reply.resume(returning: .failure(.closed)) }
        }
        try result.get()
    }

    /// Counters, answered after the engine has fired everything due at the clock's current time
    /// (so a test that moves a manual clock and then reads `stats()` sees the result).
    public func stats() async -> EngineStats {
        await withUnsafeContinuation { (reply: UnsafeContinuation<EngineStats, Never>) in
            if !engine.submit(.stats(reply)) { _Engine.refuse(.stats(reply)) }
        }
    }

    /// Closes the engine: applies everything queued before, syncs the log, releases the
    /// directory. Later calls fail with `.closed`; `deliveries` ends. In-flight timers stay in
    /// flight and are delivered again when the directory is reopened.
    ///
    /// If a storage failure stopped the engine earlier, `close` releases the directory without
    /// writing anything more and throws that failure: what the failed batch held may not be
    /// durable (its callers were told), and the next open recovers everything acknowledged.
    public func close() async throws(HourglassError) {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            let reply = _Reply(continuation)
            if !engine.submit(.close(reply)) { reply.resume(returning: .success(())) }
        }
        try result.get()
    }

    // MARK: Submitting without waiting

    /// An operation for `submit(_:)`.
    package enum Submission: Sendable {
        case schedule(TimerRequest, @Sendable (Result<Void, HourglassError>) -> Void)
        case cancel(TimerID, @Sendable (Result<Bool, HourglassError>) -> Void)
    }

    /// Queues several schedules and cancels at once, in order: the engine applies them in one
    /// batch, before it fires anything (so a cancel right after the schedule of a timer that is
    /// already due still wins). Invalid ones get their error at once and are left out.
    package func submit(_ submissions: [Submission]) {
        var requests: [_Request] = []
        requests.reserveCapacity(submissions.count)
        for submission in submissions {
            switch submission {
            case let .schedule(timer, completion):
                do throws(HourglassError) {
                    try validate(timer)
                    requests.append(.schedule(timer, _Reply(callback: completion)))
                } catch {
                    completion(.failure(error))
                }
            case let .cancel(id, completion):
                do throws(HourglassError) {
                    try checkID(id)
                    requests.append(.cancel(id.bytes, _Reply(callback: completion)))
                } catch {
                    completion(.failure(error))
                }
            }
        }
        if !engine.submit(contentsOf: requests) {
            for request in requests { _Engine.refuse(request) }
        }
    }

    /// Queues an acknowledgement now; `completion` gets whether it took effect.
    package func submitAck(_ delivery: Delivery, completion: @escaping @Sendable (Result<Bool, HourglassError>) -> Void) {
        guard delivery.engine == identity else {
            completion(.success(false))
            return
        }
        let ref = _DeliveryRef(id: delivery.id.bytes, handle: delivery.handle, generation: delivery.generation, attempt: delivery.attempt)
        let reply = _Reply<Bool>(callback: completion)
        if !engine.submit(.ack(ref, reply)) { reply.resume(returning: .failure(.closed)) }
    }

    // MARK: Validation

    private var identity: ObjectIdentifier { engine.identity }

    private func checkID(_ id: TimerID) throws(HourglassError) {
        if id.bytes.isEmpty { throw .emptyID }
        if id.bytes.count > configuration.maxIDBytes { throw .idTooLong(length: id.bytes.count, limit: configuration.maxIDBytes) }
    }

    @inline(__always)
    private func validate(_ timer: TimerRequest) throws(HourglassError) {
        try checkID(timer.id)
        if timer.payload.count > configuration.maxPayloadBytes {
            throw .payloadTooLarge(length: timer.payload.count, limit: configuration.maxPayloadBytes)
        }
        let deadline = timer.deadline.millisecondsSinceEpoch
        guard Deadline.validRange.contains(deadline) else { throw .deadlineOutOfRange(milliseconds: deadline) }
    }
}

/// One timer of a batch.
public struct TimerRequest: Sendable {
    public var id: TimerID
    public var deadline: Deadline
    public var payload: [UInt8]

    public init(id: TimerID, deadline: Deadline, payload: [UInt8] = []) {
        self.id = id
        self.deadline = deadline
        self.payload = payload
    }
}

/// Gives each engine an identity that deliveries carry, so that an ack cannot reach another engine.
final class _IdentityBox: @unchecked Sendable {
    weak var owner: HourglassEngine?
}
