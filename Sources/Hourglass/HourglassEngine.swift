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
/// methods are safe to call from any task, and run on the caller's executor
/// (`nonisolated(nonsending)`): a call that finds the engine free does its work on the calling
/// thread and returns without suspending (under `interval` and `none`); calls that arrive
/// together are applied as one group, in the order they arrive. Dropping the last reference
/// to an engine closes it, as `close()` would.
public final class HourglassEngine: Sendable {
    /// The partitions' engines (one unless `Configuration.partitions` says more): an id's
    /// timer lives in `partitions[Partitioning.index(of: id)]`.
    let partitions: [Engine]
    /// The configuration the engine was opened with.
    public let configuration: Configuration
    /// Where the engine reads the time.
    public let clock: any HourglassClock
    /// The fired timers. Iterate it from one or more tasks; it ends when the engine closes.
    public let deliveries: Deliveries
    /// What recovery found when the engine opened a directory (empty in memory).
    public let recoveryReport: RecoveryReport
    private let closed = Atomic<Bool>(false)

    private init(partitions: [Engine], configuration: Configuration, clock: any HourglassClock, deliveries: DeliveryQueue, report: RecoveryReport) {
        self.partitions = partitions
        self.configuration = configuration
        self.clock = clock
        self.deliveries = Deliveries(queue: deliveries, taker: configuration.deliveryMode == .atMostOnce ? Taker(partitions) : nil)
        self.recoveryReport = report
    }

    /// An engine dropped without `close()` closes here: everything applied is written and
    /// synced, and the directory is released, so that it can be opened again in this process.
    deinit {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            for partition in partitions { partition.closeAbandoned() }
        }
    }

    /// The partition that holds `id`'s timer.
    @inline(__always)
    func partition(for id: TimerID) -> Engine {
        partitions[Partitioning.index(of: id.bytes, count: partitions.count)]
    }

    /// The partition that made `delivery`, if it came from this engine.
    @inline(__always)
    func partition(of delivery: Delivery) -> Engine? {
        let partition = partition(for: delivery.id)
        return delivery.engine == partition.serial ? partition : nil
    }

    /// Opens an engine: in memory, or over a directory (created if missing), recovering every
    /// timer it holds. Timers that fell due while the process was down fire at once, oldest first.
    ///
    /// - Parameters:
    ///   - configuration: where the timers live and how; `.memory` by default.
    ///   - clock: where the engine reads the time; the system's wall clock by default (tests
    ///     pass HourglassTesting's `ManualClock`).
    ///   - progress: called while recovery reads a directory (the head of the newest checkpoint,
    ///     then the log after it; see `DirectoryProgress`), for a progress display when a large
    ///     directory opens. The rest of the checkpoint loads after `open` returns.
    /// - Throws: `HourglassError.invalidConfiguration`, `.directoryLocked`, `.corruption` (with
    ///   the file and offset), `.io`, `.diskFull`.
    nonisolated(nonsending)
    public static func open(
        _ configuration: Configuration = .memory, clock: any HourglassClock = SystemClock(),
        progress: (@Sendable (DirectoryProgress) -> Void)? = nil
    ) async throws(HourglassError) -> HourglassEngine {
        let opened = monotonicNanoseconds()
        try configuration.validateForLocalEngine()
        let queue = DeliveryQueue()
        let now = clock.now()
        guard Deadline.validRange.contains(now) else {
            throw .invalidConfiguration("the clock reads \(now) ms, outside the representable range")
        }
        // The partitions' directories (nil in memory), then one engine for each, all handing
        // their deliveries to one queue.
        let paths: [String?]
        if case let .directory(path) = configuration.storage {
            paths = try Partitioning.directories(at: path, count: configuration.partitions, fileSystem: configuration.fileSystem)
        } else {
            paths = Array(repeating: nil, count: configuration.partitions)
        }
        var engines: [Engine] = []
        var merged = RecoveryReport()
        do throws(HourglassError) {
            for (index, path) in paths.enumerated() {
                var partitionConfiguration = configuration
                if paths.count > 1 { partitionConfiguration.metricsDimensions.append(("partition", String(index))) }
                let (engine, report) = try openPartition(path: path, configuration: partitionConfiguration, clock: clock, now: now,
                                                         queue: queue, opened: opened, progress: progress)
                engines.append(engine)
                merged.merge(report)
            }
        } catch {
            for engine in engines { engine.closeAbandoned() }
            throw error
        }
        let result = HourglassEngine(partitions: engines, configuration: configuration, clock: clock, deliveries: queue, report: merged)
        if clock.isManual {
            for engine in engines { clock.onChange { [weak engine] in engine?.wake() } }
        }
        return result
    }

    /// Opens one partition (the whole engine unless there are several): recovers its directory
    /// and starts its engine.
    private static func openPartition(
        path: String?, configuration: Configuration, clock: any HourglassClock, now: Int64, queue: DeliveryQueue, opened: UInt64,
        progress: (@Sendable (DirectoryProgress) -> Void)?
    ) throws(HourglassError) -> (Engine, RecoveryReport) {
        var wheel = TimerWheel(tickMilliseconds: configuration.tickMilliseconds, now: now)
        var journal: WALJournal? = nil
        var loader: CheckpointLoader? = nil
        var report = RecoveryReport()
        var replayNanoseconds: UInt64 = 0
        let rules = SeriesRules()
        if let path {
            (journal, loader) = try recoverDirectory(path: path, configuration: configuration, clock: clock, into: &wheel, rules: rules, report: &report,
                                                     replayNanoseconds: &replayNanoseconds, progress: progress)
        }
        let engine = Engine(
            wheel: wheel, journal: journal, loader: loader, seriesRules: rules, clock: clock, configuration: configuration, deliveries: queue,
            serial: EngineSerial.next(), checkpointNow: !report.dropped.isEmpty, openedNanoseconds: opened,
            logReplayMilliseconds: Double(replayNanoseconds) / 1e6, replayedLogBytes: report.logBytes)
        engine.start()
        return (engine, report)
    }

    // MARK: Scheduling

    /// Schedules a timer to fire at `deadline`, replacing any timer with the same id (pending,
    /// or in flight). A deadline in the past fires at once.
    ///
    /// Returns once the schedule is durable under the configured policy.
    /// - Throws: `.emptyID`, `.idTooLong`, `.payloadTooLarge`, `.deadlineOutOfRange` (nothing
    ///   changed); `.closed`; `.stopped` after a storage failure.
    /// - Complexity: O(1) on the wheel, plus one frame in the log (shared by calls made at once).
    nonisolated(nonsending)
    public func schedule(id: TimerID, at deadline: Deadline, payload: [UInt8] = []) async throws(HourglassError) {
        let item = TimerRequest(id: id, deadline: deadline, payload: payload)
        try validate(item)
        try await partition(for: id).perform({ $0.schedule(item) }, orQueue: { .schedule(item, $0) }).get()
    }

    /// Schedules a timer to fire `delay` from now (by the engine's clock).
    nonisolated(nonsending)
    public func schedule(id: TimerID, after delay: Duration, payload: [UInt8] = []) async throws(HourglassError) {
        try await schedule(id: id, at: Deadline(millisecondsSinceEpoch: try deadline(after: delay)), payload: payload)
    }

    /// Schedules many timers as one request: one frame in the log. Validates all of them first:
    /// if one is invalid, none is scheduled.
    nonisolated(nonsending)
    public func schedule(_ timers: [TimerRequest]) async throws(HourglassError) {
        for timer in timers { try validate(timer) }
        if partitions.count == 1 {
            return try await partitions[0].perform({ $0.schedule(timers) }, orQueue: { .scheduleBatch(timers, $0) }).get()
        }
        // One request (one frame) per partition, in the order of the batch within each.
        var groups = Array(repeating: [TimerRequest](), count: partitions.count)
        for timer in timers { groups[Partitioning.index(of: timer.id.bytes, count: partitions.count)].append(timer) }
        for (index, group) in groups.enumerated() where !group.isEmpty {
            try await partitions[index].perform({ $0.schedule(group) }, orQueue: { .scheduleBatch(group, $0) }).get()
        }
    }

    /// Schedules a recurring timer under `id`, replacing any timer with that id (one-shot or
    /// recurring). Its occurrences are delivered one at a time: the next is armed when the
    /// current one is acknowledged (or taken, or out of attempts). `cancel(id:)` ends the series.
    ///
    /// ```swift
    /// try await engine.schedule(id: "payment-7", repeating: .every(.seconds(60), count: 3))
    /// try await engine.schedule(id: "sweep", repeating: .cron("0/30 * * * * ?"))
    /// ```
    ///
    /// - Parameters:
    ///   - id: the series' id: scheduling it again replaces the series, `cancel(id:)` ends it.
    ///   - recurrence: every N, or a cron expression in a time zone; a count; a misfire policy.
    ///   - first: the first occurrence. For `.every`, exactly this time (one period from now by
    ///     default); for `.cron`, the first time the expression names at or after it (after now
    ///     by default). A time in the past is due at once, and the misfire policy applies.
    ///   - payload: handed back with every occurrence.
    /// - Throws: `.invalidCronExpression` (the field and position), `.unknownTimeZone`,
    ///   `.invalidRecurrence` (a period, count or first occurrence out of range), and what
    ///   `schedule(id:at:payload:)` throws; nothing changed.
    nonisolated(nonsending)
    public func schedule(id: TimerID, repeating recurrence: Recurrence, startingAt first: Deadline? = nil, payload: [UInt8] = [])
        async throws(HourglassError)
    {
        let item = try seriesRequest(id: id, recurrence: recurrence, first: first, payload: payload)
        try await partition(for: id).perform({ $0.scheduleSeries(item) }, orQueue: { .scheduleSeries(item, $0) }).get()
    }

    /// Validates and compiles a recurring timer, on the caller's thread.
    private func seriesRequest(id: TimerID, recurrence: Recurrence, first: Deadline?, payload: [UInt8]) throws(HourglassError) -> SeriesRequest {
        try checkID(id)
        let limit = min(configuration.maxPayloadBytes, TimerWheel.maxPayloadLength - SeriesTrailer.size)
        if payload.count > limit { throw .payloadTooLarge(length: payload.count, limit: limit) }
        var remaining: UInt32 = 0
        if let count = recurrence.count {
            guard count >= 1 && count <= Int(UInt32.max) else {
                throw .invalidRecurrence("the count of a recurring timer must be 1 ... \(UInt32.max), not \(count)")
            }
            remaining = UInt32(count)
        }
        let rule = try SeriesRule.compiled(recurrence)
        if let first, !Deadline.validRange.contains(first.millisecondsSinceEpoch) {
            throw .deadlineOutOfRange(milliseconds: first.millisecondsSinceEpoch)
        }
        let start: Int64?
        switch rule.kind {
        case .every:
            start = first?.millisecondsSinceEpoch ?? rule.occurrence(after: clock.now())
        case .cron:
            start = rule.occurrence(after: (first?.millisecondsSinceEpoch).map { $0 - 1 } ?? clock.now())
        }
        guard let start else {
            throw .invalidRecurrence("\(recurrence) has no occurrence before the end of year 9999")
        }
        return SeriesRequest(id: id, first: start, payload: payload, rule: rule, remaining: remaining)
    }

    /// Cancels the timer with this id; returns whether there was one (pending or in flight).
    nonisolated(nonsending)
    public func cancel(id: TimerID) async throws(HourglassError) -> Bool {
        try checkID(id)
        return try await partition(for: id).cancelThroughDoor(id.bytes).get()
    }

    // MARK: Consuming

    /// Acknowledges a delivery: the timer is done and will not be delivered again. Returns false
    /// when the delivery is no longer in flight (acknowledged already, redelivered with a higher
    /// attempt, replaced by a new schedule of its id, or cancelled), or came from another engine.
    nonisolated(nonsending)
    public func ack(_ delivery: Delivery) async throws(HourglassError) -> Bool {
        guard let partition = partition(of: delivery) else { return false }
        let ref = delivery.ref
        return try await partition.perform({ $0.ack(ref) }, orQueue: { .ack(ref, $0) }).get()
    }

    /// Acknowledges many deliveries at once (one frame in the log); returns how many took
    /// effect (the others were no longer in flight, or came from another engine).
    nonisolated(nonsending)
    public func ack(contentsOf deliveries: some Sequence<Delivery>) async throws(HourglassError) -> Int {
        var groups = Array(repeating: [DeliveryRef](), count: partitions.count)
        for delivery in deliveries {
            let index = Partitioning.index(of: delivery.id.bytes, count: partitions.count)
            if delivery.engine == partitions[index].serial { groups[index].append(delivery.ref) }
        }
        var done = 0
        for (index, refs) in groups.enumerated() where !refs.isEmpty {
            done += try await partitions[index].perform({ $0.ack(refs) }, orQueue: { .ackBatch(refs, $0) }).get()
        }
        return done
    }

    /// Asks for the timer to be delivered again after `delay`, with the next attempt number (the
    /// "ask again in a minute, at most three times" pattern). Returns false when the delivery is
    /// no longer in flight, or when `Configuration.maxAttempts` is reached: then the timer is
    /// dropped.
    /// - Throws: `.deadlineOutOfRange` when `delay` is negative or ends after
    ///   `Deadline.latest` (nothing changed), as `schedule(id:after:)` does.
    nonisolated(nonsending)
    public func retry(_ delivery: Delivery, after delay: Duration) async throws(HourglassError) -> Bool {
        let ms = try deadline(after: delay) - clock.now()
        guard let partition = partition(of: delivery) else { return false }
        let ref = delivery.ref
        return try await partition.perform({ $0.retry(ref, delayMilliseconds: ms) }, orQueue: { .retry(ref, delayMilliseconds: ms, $0) }).get()
    }

    // MARK: Housekeeping

    /// Writes a checkpoint covering every change made before the call, then deletes the log
    /// segments and older checkpoints it makes unnecessary. Requests keep flowing meanwhile.
    /// In memory it does nothing.
    nonisolated(nonsending)
    public func checkpoint() async throws(HourglassError) {
        for partition in partitions {
            let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
                partition.enter(.checkpoint(Reply(continuation)))
            }
            try result.get()
        }
    }

    /// Counters, answered after the engine has fired everything due at the clock's current time
    /// (so a test that moves a manual clock and then reads `stats()` sees the result).
    nonisolated(nonsending)
    public func stats() async -> EngineStats {
        var merged: EngineStats? = nil
        for partition in partitions {
            let stats = await withUnsafeContinuation { (reply: UnsafeContinuation<EngineStats, Never>) in
                partition.enter(.stats(reply))
            }
            merged = merged.map { $0.adding(stats) } ?? stats
        }
        return merged!
    }

    /// Closes the engine: applies everything queued before, syncs the log, releases the
    /// directory. Later calls fail with `.closed`; `deliveries` ends. In-flight timers stay in
    /// flight and are delivered again when the directory is reopened.
    ///
    /// If a storage failure stopped the engine earlier, `close` releases the directory without
    /// writing anything more and throws that failure: what the failed batch held may not be
    /// durable (its callers were told), and the next open recovers everything acknowledged.
    nonisolated(nonsending)
    public func close() async throws(HourglassError) {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Every partition is closed, whatever one of them reports; the first failure is thrown.
        var failure: HourglassError? = nil
        for partition in partitions {
            let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
                partition.enter(.close(Reply(continuation)))
            }
            if case let .failure(error) = result, error != .closed, failure == nil { failure = error }
        }
        if let failure { throw failure }
    }

    // MARK: Submitting without waiting

    /// An operation for `submit(_:)`.
    package enum Submission: Sendable {
        case schedule(TimerRequest, @Sendable (Result<Void, HourglassError>) -> Void)
        case scheduleRecurring(id: TimerID, Recurrence, startingAt: Deadline?, payload: [UInt8], @Sendable (Result<Void, HourglassError>) -> Void)
        case cancel(TimerID, @Sendable (Result<Bool, HourglassError>) -> Void)
    }

    /// Queues several schedules and cancels at once, in order: the engine applies them in one
    /// batch, before it fires anything (so a cancel right after the schedule of a timer that is
    /// already due still wins). Invalid ones get their error at once and are left out.
    package func submit(_ submissions: [Submission]) {
        var requests = Array(repeating: [Request](), count: partitions.count)
        func index(_ id: TimerID) -> Int { Partitioning.index(of: id.bytes, count: partitions.count) }
        for submission in submissions {
            switch submission {
            case let .schedule(timer, completion):
                do throws(HourglassError) {
                    try validate(timer)
                    requests[index(timer.id)].append(.schedule(timer, Reply(callback: completion)))
                } catch {
                    completion(.failure(error))
                }
            case let .scheduleRecurring(id, recurrence, first, payload, completion):
                do throws(HourglassError) {
                    let item = try seriesRequest(id: id, recurrence: recurrence, first: first, payload: payload)
                    requests[index(id)].append(.scheduleSeries(item, Reply(callback: completion)))
                } catch {
                    completion(.failure(error))
                }
            case let .cancel(id, completion):
                do throws(HourglassError) {
                    try checkID(id)
                    requests[index(id)].append(.cancel(id.bytes, Reply(callback: completion)))
                } catch {
                    completion(.failure(error))
                }
            }
        }
        for (partition, requests) in zip(partitions, requests) where !requests.isEmpty { partition.enter(contentsOf: requests) }
    }

    /// Queues an acknowledgement now; `completion` gets whether it took effect.
    package func submitAck(_ delivery: Delivery, completion: @escaping @Sendable (Result<Bool, HourglassError>) -> Void) {
        guard let partition = partition(of: delivery) else {
            completion(.success(false))
            return
        }
        partition.enter(.ack(delivery.ref, Reply<Bool>(callback: completion)))
    }

    // MARK: Validation

    /// The deadline `delay` from now by the engine's clock.
    private func deadline(after delay: Duration) throws(HourglassError) -> Int64 {
        try configuration.deadline(after: delay, now: clock.now())
    }

    private func checkID(_ id: TimerID) throws(HourglassError) { try configuration.check(id) }

    @inline(__always)
    private func validate(_ timer: TimerRequest) throws(HourglassError) { try configuration.check(timer) }
}

/// One timer of a batch.
public struct TimerRequest: Sendable {
    /// The timer's id: scheduling an id that is pending replaces that timer.
    public var id: TimerID
    /// When it fires.
    public var deadline: Deadline
    /// Opaque bytes handed back with the delivery.
    public var payload: [UInt8]

    /// A timer for `HourglassEngine.schedule(_:)`.
    public init(id: TimerID, deadline: Deadline, payload: [UInt8] = []) {
        self.id = id
        self.deadline = deadline
        self.payload = payload
    }
}

/// Numbers the engines opened in this process: a delivery names its engine by this serial,
/// which is never reused (an address would be, once the engine is freed).
enum EngineSerial {
    private static let counter = Atomic<UInt64>(0)
    static func next() -> UInt64 { counter.add(1, ordering: .relaxed).newValue }
}

/// At-most-once delivery: a consumer's take of a delivery is what counts as delivered.
final class Taker: Sendable {
    let partitions: [Engine]
    init(_ partitions: [Engine]) { self.partitions = partitions }

    /// Whether the delivery is the consumer's (logged as done); false when it was cancelled or
    /// replaced meanwhile, or the engine closed (then it is delivered again after a reopen).
    nonisolated(nonsending)
    func take(_ delivery: Delivery) async -> Bool {
        let ref = delivery.ref
        let index = Partitioning.index(of: delivery.id.bytes, count: partitions.count)
        let result = await partitions[index].perform({ $0.take(ref) }, orQueue: { .take(ref, $0) })
        return (try? result.get()) ?? false
    }
}
