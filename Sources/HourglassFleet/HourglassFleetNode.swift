import Hourglass
import HourglassCore
import Logging
import PostgresNIO
import Synchronization

/// One node of a fleet on PostgreSQL: the timer API of `HourglassEngine`, with every partition's
/// log in PostgreSQL and each partition owned (its wheel held and fired) by one node at a time.
///
/// Any node takes any call: a schedule, cancel, ack or retry is appended to its partition's log
/// and returns once committed (`Configuration.Durability.replicated`), whichever node owns the
/// partition. Owners hold leases, renewed by the database's clock and fenced by an epoch, so a
/// dead node's partitions move to the live ones within the lease time; a node that lost its
/// lease cannot fire. Deliveries come out of the owning node's `deliveries`, at least once.
///
/// ```swift
/// let options = try FleetOptions(postgres: "postgres://hourglass@db:5432/timers", node: "orders-7")
/// let node = try await HourglassFleetNode.start(fleet: options)
/// try await node.schedule(id: "order-42", after: .seconds(1800), payload: Array("close".utf8))
/// for await delivery in node.deliveries {
///     try await closeOrder(delivery.payload)
///     try await node.ack(delivery)
/// }
/// ```
///
/// See `Docs/REPLICATION.md` for what is stored where and what each failure loses.
public final class HourglassFleetNode: Sendable {
    /// The timer settings (ids, payloads, redelivery); its durability is `.replicated`.
    public let configuration: Configuration
    /// The fleet's settings.
    public let options: FleetOptions
    /// The clock deadlines are read from (leases use the database's).
    public let clock: any HourglassClock
    /// The timers this node fires, as it owns their partitions.
    public let deliveries: Deliveries

    let database: FleetDatabase
    let context: FleetContext
    private let appender: NodeAppender
    private let owners = Mutex<[Int: PartitionOwner]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let closed = Atomic<Bool>(false)
    private let generations: Atomic<UInt64>
    private let payloadLimit: Int
    private let takeovers = Mutex<[FleetTakeover]>([])
    private let observer: (@Sendable (FleetTakeover) -> Void)?

    private init(
        configuration: Configuration, options: FleetOptions, clock: any HourglassClock, database: FleetDatabase, logger: Logger,
        observer: (@Sendable (FleetTakeover) -> Void)?
    ) {
        self.observer = observer
        self.configuration = configuration
        self.options = options
        self.clock = clock
        self.database = database
        let queue = DeliveryQueue()
        deliveries = Deliveries(queue: queue)
        context = FleetContext(
            database: database, configuration: configuration, options: options, clock: clock, queue: queue, logger: logger,
            tickMilliseconds: max(1, configuration.tick.wholeMilliseconds),
            redeliveryMilliseconds: min(configuration.redeliveryTimeout.wholeMilliseconds, TimerWheel.maxDeadline),
            delivered: FleetContext.Counter())
        let notifier = Notifier(database: database)
        appender = NodeAppender(partitions: options.partitions, database: database, maxRecords: options.maxFrameRecords, notifier: notifier)
        generations = Atomic(UInt64.random(in: 1 ... (UInt64.max >> 1)))
        payloadLimit = min(configuration.maxPayloadBytes, TimerWheel.maxPayloadLength - Generation.size)
    }

    /// Connects to the fleet's PostgreSQL, creating its tables when they are missing, and starts
    /// the node: it joins the fleet and claims its share of the partitions in the background
    /// (`status()` shows which it owns).
    ///
    /// - Parameters:
    ///   - options: where PostgreSQL is, the node's name, the partition count and the lease.
    ///   - configuration: the timer settings (`maxIDBytes`, `maxPayloadBytes`,
    ///     `redeliveryTimeout`, `maxAttempts`, `tick`, `logger`); its durability must be
    ///     `.replicated`, its storage `.memory` and its `partitions` 1 (the fleet's count is
    ///     `FleetOptions.partitions`). By default, all of that.
    ///   - clock: the clock deadlines are read from; `ManualClock` in tests.
    /// - Throws: `.invalidConfiguration` (a setting, or a partition count other than the
    ///   fleet's recorded one); `.database` when PostgreSQL cannot be reached or refuses.
    public static func start(
        fleet options: FleetOptions, configuration: Configuration = Configuration(storage: .memory, durability: .replicated),
        clock: any HourglassClock = SystemClock()
    ) async throws(HourglassError) -> HourglassFleetNode {
        try await start(fleet: options, configuration: configuration, clock: clock, observer: nil)
    }

    /// `start`, with `observer` told of every takeover (for the command's `owner` lines).
    package static func start(
        fleet options: FleetOptions, configuration: Configuration, clock: any HourglassClock,
        observer: (@Sendable (FleetTakeover) -> Void)?
    ) async throws(HourglassError) -> HourglassFleetNode {
        try options.validate()
        guard configuration.durability == .replicated else {
            throw .invalidConfiguration("a fleet node runs under durability .replicated, not .\(configuration.durability)")
        }
        guard configuration.storage == .memory else {
            throw .invalidConfiguration("a fleet node keeps its partitions in PostgreSQL: use storage .memory")
        }
        guard configuration.partitions == 1 else {
            throw .invalidConfiguration("a fleet's partition count is FleetOptions.partitions; leave Configuration.partitions at 1")
        }
        guard configuration.deliveryMode == .atLeastOnce else {
            throw .invalidConfiguration("a fleet node delivers at least once (deliveryMode .atLeastOnce)")
        }
        var logger = configuration.logger
        logger[metadataKey: "node"] = "\(options.node)"
        let database = FleetDatabase(
            address: options.postgres, maxConnections: options.maxConnections, callTimeout: options.effectiveCallTimeout, logger: logger)
        try await database.probe()
        database.start()
        for _ in 0 ..< 10 { await Task.yield() }  // let the client start before the first lease
        do throws(HourglassError) {
            try await database.prepare(partitions: options.partitions)
        } catch {
            await database.shutdown()
            throw error
        }
        let node = HourglassFleetNode(
            configuration: configuration, options: options, clock: clock, database: database, logger: logger, observer: observer)
        if clock.isManual {
            clock.onChange { [weak node] in node?.wakeOwners() }
        }
        node.tasks.withLock { tasks in
            tasks.append(Task { await node.runLeases() })
            tasks.append(Task { await node.listen() })
        }
        return node
    }

    // MARK: Calls

    /// Schedules a timer to fire at `deadline`, replacing any timer with the same id (pending,
    /// or in flight). Returns once the schedule is committed in PostgreSQL.
    ///
    /// - Parameters:
    ///   - id: the timer's id, unique in the fleet.
    ///   - deadline: when it fires (the past: at once).
    ///   - payload: handed back with the delivery.
    /// - Throws: `.emptyID`, `.idTooLong`, `.payloadTooLarge`, `.deadlineOutOfRange` (nothing
    ///   appended); `.closed`; `.database` (the outcome is unknown: repeat the call).
    nonisolated(nonsending)
    public func schedule(id: TimerID, at deadline: Deadline, payload: [UInt8] = []) async throws(HourglassError) {
        let timer = TimerRequest(id: id, deadline: deadline, payload: payload)
        try configuration.check(timer, payloadLimit: payloadLimit)
        let generation = nextGeneration()
        let partition = partition(of: id)
        try await appender.append(records: 1) { $0.add(to: partition) { Self.encode(timer, generation: generation, into: &$0) } }
    }

    /// Schedules a timer to fire `delay` from now, by this node's clock.
    /// - Parameters:
    ///   - id: the timer's id, unique in the fleet.
    ///   - delay: how long from now.
    ///   - payload: handed back with the delivery.
    nonisolated(nonsending)
    public func schedule(id: TimerID, after delay: Duration, payload: [UInt8] = []) async throws(HourglassError) {
        let deadline = try configuration.deadline(after: delay, now: clock.now())
        try await schedule(id: id, at: Deadline(millisecondsSinceEpoch: deadline), payload: payload)
    }

    /// Schedules many timers, in one statement (a frame for each partition they fall in) when
    /// they fit in one (`FleetOptions.maxFrameRecords` records, 8 MiB), in several otherwise.
    /// Validates all of them first: if one is invalid, none is appended. When the call throws
    /// `.database`, the timers of its statements that committed are scheduled, the others not.
    /// - Parameter timers: the timers.
    nonisolated(nonsending)
    public func schedule(_ timers: [TimerRequest]) async throws(HourglassError) {
        for timer in timers { try configuration.check(timer, payloadLimit: payloadLimit) }
        var start = timers.startIndex
        while start < timers.endIndex {
            // No more than a statement's worth in one append.
            var end = start
            var bytes = 0
            while end < timers.endIndex && end - start < options.maxFrameRecords && bytes < NodeAppender.chunkBytes {
                bytes += timers[end].id.bytes.count + timers[end].payload.count + 32
                end += 1
            }
            let slice = timers[start ..< end]
            let placed = slice.map { (timer: $0, partition: partition(of: $0.id), generation: nextGeneration()) }
            try await appender.append(records: placed.count) { batch in
                for timer in placed { batch.add(to: timer.partition) { Self.encode(timer.timer, generation: timer.generation, into: &$0) } }
            }
            start = end
        }
    }

    /// Cancels the timer with this id, wherever it is owned. Returns once the cancel is
    /// committed: from then on the timer is not delivered (a delivery already handed over may
    /// still be in a consumer's hands). Whether a timer existed is not known at the append.
    /// - Parameter id: the timer's id.
    nonisolated(nonsending)
    public func cancel(id: TimerID) async throws(HourglassError) {
        try configuration.check(id)
        let partition = partition(of: id)
        try await appender.append(records: 1) { $0.add(to: partition) { records in id.bytes.withUnsafeBytes { records.cancel(id: $0) } } }
    }

    /// Acknowledges a delivery: the timer is done, unless it was scheduled again since (the ack
    /// names the delivery's schedule). Any node may acknowledge any delivery. Returns false for
    /// a delivery that is not a fleet's.
    /// - Parameter delivery: a delivery from some node's `deliveries`.
    @discardableResult
    nonisolated(nonsending)
    public func ack(_ delivery: Delivery) async throws(HourglassError) -> Bool {
        guard delivery.isFleetDelivery else { return false }
        let generation = delivery.fleetGeneration
        let partition = partition(of: delivery.id)
        try await appender.append(records: 1) { batch in
            batch.add(to: partition) { records in delivery.id.bytes.withUnsafeBytes { records.ackOf(id: $0, generation: generation) } }
        }
        return true
    }

    /// Asks for a delivery to come again `delay` from now (by this node's clock), with the next
    /// attempt number; nothing happens if the timer was scheduled again or cancelled since.
    /// Returns false for a delivery that is not a fleet's.
    /// - Parameters:
    ///   - delivery: a delivery from some node's `deliveries`.
    ///   - delay: how long from now.
    @discardableResult
    nonisolated(nonsending)
    public func retry(_ delivery: Delivery, after delay: Duration) async throws(HourglassError) -> Bool {
        guard delivery.isFleetDelivery else { return false }
        let deadline = try configuration.deadline(after: delay, now: clock.now())
        let generation = delivery.fleetGeneration
        let attempt = UInt32(clamping: delivery.attempt + 1)
        let partition = partition(of: delivery.id)
        try await appender.append(records: 1) { batch in
            batch.add(to: partition) { records in
                delivery.id.bytes.withUnsafeBytes { records.retryOf(id: $0, generation: generation, deadline: deadline, attempt: attempt) }
            }
        }
        return true
    }

    // MARK: Calls without waiting (the command's)

    /// Appends a schedule now, in the order of the calls; `completion` runs once it committed.
    package func submit(_ timer: TimerRequest, completion: @escaping @Sendable (Result<Void, HourglassError>) -> Void) {
        do throws(HourglassError) {
            try configuration.check(timer, payloadLimit: payloadLimit)
        } catch {
            return completion(.failure(error))
        }
        let generation = nextGeneration()
        let partition = partition(of: timer.id)
        appender.enqueue(records: 1, { $0.add(to: partition) { Self.encode(timer, generation: generation, into: &$0) } }, completion: completion)
    }

    /// Appends a cancel now, in the order of the calls; `completion` runs once it committed.
    package func submitCancel(_ id: TimerID, completion: @escaping @Sendable (Result<Void, HourglassError>) -> Void) {
        do throws(HourglassError) {
            try configuration.check(id)
        } catch {
            return completion(.failure(error))
        }
        let partition = partition(of: id)
        appender.enqueue(records: 1, { $0.add(to: partition) { records in id.bytes.withUnsafeBytes { records.cancel(id: $0) } } }, completion: completion)
    }

    /// Appends an acknowledgement now; `completion` runs once it committed.
    package func submitAck(_ delivery: Delivery, completion: @escaping @Sendable (Result<Void, HourglassError>) -> Void) {
        guard delivery.isFleetDelivery else { return completion(.success(())) }
        let generation = delivery.fleetGeneration
        let partition = partition(of: delivery.id)
        appender.enqueue(records: 1, { batch in
            batch.add(to: partition) { records in delivery.id.bytes.withUnsafeBytes { records.ackOf(id: $0, generation: generation) } }
        }, completion: completion)
    }

    // MARK: Status

    /// What this node owns and has done.
    public func status() -> FleetNodeStatus {
        let owned = owners.withLock { $0 }
        var partitions: [FleetNodeStatus.OwnedPartition] = []
        for (partition, owner) in owned.sorted(by: { $0.key < $1.key }) {
            partitions.append(FleetNodeStatus.OwnedPartition(
                partition: partition, epoch: owner.epoch, ready: owner.ready.load(ordering: .acquiring),
                pendingTimers: owner.pendingTimers.load(ordering: .relaxed), appliedSequence: owner.appliedSequence.load(ordering: .relaxed),
                failure: owner.failure.withLock { $0 }))
        }
        return FleetNodeStatus(
            node: options.node, owned: partitions,
            statementsCommitted: appender.statements.load(ordering: .relaxed),
            framesAppended: appender.committed.load(ordering: .relaxed),
            recordsAppended: appender.carried.load(ordering: .relaxed),
            delivered: context.delivered.value.load(ordering: .relaxed),
            takeovers: takeovers.withLock { $0 })
    }

    /// The fleet's partitions as PostgreSQL holds them: owners, epochs, log lengths.
    public func partitionStates() async throws(HourglassError) -> [FleetPartitionState] {
        try await database.partitionStates()
    }

    // MARK: Closing

    /// Leaves the fleet: stops firing, gives the leases up at once (the other nodes take the
    /// partitions over without waiting for a lease time), ends `deliveries` and disconnects.
    /// Deliveries not yet acknowledged are delivered again by the next owner. Idempotent.
    public func close() async { await stop(releasing: true) }

    /// Stops as a crash would, as far as the fleet can tell: no more renewals, firing or
    /// deliveries, and nothing released (the leases expire by themselves). For benchmarks and
    /// tests that kill a node in process.
    package func abandon() async { await stop(releasing: false) }

    // MARK: Internals

    /// A schedule's SCHEDULE record: its payload behind the generation (FORMAT.md, fleet frames).
    private static func encode(_ timer: TimerRequest, generation: UInt64, into records: inout RecordEncoder) {
        let stored = Generation.prefixed(generation, timer.payload)
        timer.id.bytes.withUnsafeBytes { id in
            stored.withUnsafeBytes { records.schedule(id: id, deadline: timer.deadline.millisecondsSinceEpoch, attempt: 1, payload: $0) }
        }
    }

    /// Stops the node: the lease loop and the listener first (so that nothing claims while it
    /// stops), then appends, owners (giving their leases up when `releasing`), deliveries and
    /// the connections.
    private func stop(releasing: Bool) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let running = tasks.withLock { $0 }
        for task in running { task.cancel() }
        for task in running { await task.value }
        appender.close()
        let owned = owners.withLock { owners in defer { owners.removeAll() }; return owners }
        for (partition, owner) in owned {
            await owner.stop()
            if releasing { try? await database.release(partition: partition, node: options.node, epoch: owner.epoch) }
        }
        if releasing { try? await database.leave(node: options.node) }
        context.queue.finish()
        await database.shutdown()
    }

    package func partition(of id: TimerID) -> Int { Partitioning.index(of: id.bytes, count: options.partitions) }

    private func nextGeneration() -> UInt64 {
        // A random start per node process, then a counter mixed by SplitMix64: distinct within
        // a node, and across nodes with overwhelming probability.
        var x = generations.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }

    private func wakeOwners() {
        for owner in owners.withLock({ Array($0.values) }) { owner.wakeup.signal() }
    }

    /// Listens for the appenders' notifications and wakes the owner of each partition named.
    /// A LISTEN runs on one connection of the pool in use; when the pool is replaced (a call
    /// got no answer: the connection may hang too) or the LISTEN fails, it starts anew.
    private func listen() async {
        while !Task.isCancelled {
            let (client, generation) = database.current
            let ended = OneShot<(any Error)?>()
            let listening = Task {
                do {
                    try await client.withConnection { connection in
                        try await connection.listen(on: FleetDatabase.channel) { notifications in
                            // Anything appended while not listening is read now.
                            self.wakeOwners()
                            for try await notification in notifications {
                                guard let partition = Int(notification.payload) else { continue }
                                let owner = self.owners.withLock { $0[partition] }
                                owner?.wakeup.signal()
                            }
                        }
                    }
                    ended.fill(nil)
                } catch {
                    ended.fill(error)
                }
            }
            while !Task.isCancelled && !ended.isFilled && database.current.generation == generation {
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
            listening.cancel()
            if Task.isCancelled { return }
            if ended.isFilled, let error = await ended.value() {
                context.logger.warning("fleet: LISTEN failed; polling meanwhile", metadata: ["error": "\(FleetDatabase.describe(error))"])
                try? await Task.sleep(nanoseconds: 500_000_000)
            }
        }
    }

    /// Renews this node's leases, claims its share of the partitions and hands over what is
    /// above it, every quarter of a lease (at most every 250 ms).
    private func runLeases() async {
        let leaseMilliseconds = options.leaseMilliseconds
        let interval = UInt64(max(50, min(leaseMilliseconds / 4, 250))) * 1_000_000
        var lastRenewal = monotonicNanoseconds()
        while !Task.isCancelled {
            let started = monotonicNanoseconds()
            do throws(HourglassError) {
                let renewed = try await database.heartbeat(node: options.node, leaseMilliseconds: leaseMilliseconds)
                lastRenewal = started
                // The owners must be exactly the leases renewed, at their epochs. An owner whose
                // lease is gone, or another epoch's, stops; so does one whose task ended (its
                // write was fenced at the instant its lease expired, and a renewal whose
                // transaction began just before refreshed the lease: it is this node's again).
                for (partition, owner) in owners.withLock({ $0 })
                where renewed[partition] != owner.epoch || owner.ended.load(ordering: .acquiring) {
                    if renewed[partition] != owner.epoch {
                        context.logger.notice("fleet: lease lost", metadata: ["partition": "\(partition)", "epoch": "\(owner.epoch)"])
                    }
                    await stopOwning(partition)
                }
                // A lease renewed with no owner running is this node's all the same: a claim
                // that committed but whose answer was lost (the call timed out, the connection
                // dropped), or owners stopped while renewals failed, with leases that had not
                // yet expired by the database's clock. Nothing else would ever fire it (no
                // other node can claim a lease this node keeps renewing): run it.
                for (partition, epoch) in renewed.sorted(by: { $0.key < $1.key })
                where !Task.isCancelled && owners.withLock({ $0[partition] == nil }) {
                    context.logger.notice("fleet: running a lease this node holds without an owner", metadata: [
                        "partition": "\(partition)", "epoch": "\(epoch)"])
                    await startOwning(partition, epoch: epoch)
                }
                let live = max(1, try await database.liveNodes(leaseMilliseconds: leaseMilliseconds))
                let share = (options.partitions + live - 1) / live
                let count = owners.withLock { $0.count }
                if count < share {
                    let claimed = try await database.claim(node: options.node, limit: share - count, leaseMilliseconds: leaseMilliseconds)
                    for (partition, epoch) in claimed.sorted(by: { $0.key < $1.key }) where !Task.isCancelled {
                        await startOwning(partition, epoch: epoch)
                    }
                } else if count > share {
                    // A node joined: hand the highest-numbered partitions above the share over now.
                    let extra = owners.withLock { $0.keys.sorted().suffix(count - share) }
                    for partition in extra {
                        guard let epoch = owners.withLock({ $0[partition]?.epoch }) else { continue }
                        await stopOwning(partition)
                        try await database.release(partition: partition, node: options.node, epoch: epoch)
                        context.logger.info("fleet: handed a partition over", metadata: ["partition": "\(partition)", "epoch": "\(epoch)"])
                    }
                }
            } catch {
                if Task.isCancelled { return }
                context.logger.warning("fleet: lease renewal failed", metadata: ["error": "\(error)"])
                if monotonicNanoseconds() - lastRenewal > UInt64(leaseMilliseconds) * 1_000_000 {
                    // The leases may have expired by the database's clock: stop firing until claimed again.
                    for partition in owners.withLock({ Array($0.keys) }) { await stopOwning(partition) }
                }
            }
            let elapsed = monotonicNanoseconds() - started
            if elapsed < interval { try? await Task.sleep(nanoseconds: interval - elapsed) }
        }
    }

    private func startOwning(_ partition: Int, epoch: Int64) async {
        // Claimed again under a new epoch (this node's lease ran out between renewing and
        // claiming): the old owner is fenced anyway; stop it before the new one starts.
        await stopOwning(partition)
        let owner = PartitionOwner(partition: partition, epoch: epoch, context: context)
        owners.withLock { $0[partition] = owner }
        owner.start()
        let node = options.node
        Task { [weak self] in
            // Record how long the takeover took to its first delivery (or to ready, when nothing was due).
            while owner.ready.load(ordering: .acquiring) == false {
                if owner.stopped.load(ordering: .acquiring) { return }
                try? await Task.sleep(nanoseconds: 5_000_000)
            }
            let readyAt = monotonicNanoseconds()
            var firstDelivery: UInt64 = 0
            for _ in 0 ..< 200 where firstDelivery == 0 {
                firstDelivery = owner.firstDeliveryAt.load(ordering: .relaxed)
                if firstDelivery == 0 { try? await Task.sleep(nanoseconds: 5_000_000) }
            }
            let takeover = FleetTakeover(
                partition: partition, epoch: epoch, rebuildMilliseconds: Int((readyAt - owner.claimedAt) / 1_000_000),
                firstDeliveryMilliseconds: firstDelivery == 0 ? nil : Int((firstDelivery - owner.claimedAt) / 1_000_000),
                timers: owner.pendingTimers.load(ordering: .relaxed))
            self?.takeovers.withLock { $0.append(takeover) }
            self?.observer?(takeover)
            _ = node
        }
    }

    private func stopOwning(_ partition: Int) async {
        guard let owner = owners.withLock({ $0.removeValue(forKey: partition) }) else { return }
        await owner.stop()
    }
}

/// What a node owns and has done (`HourglassFleetNode.status()`).
public struct FleetNodeStatus: Sendable {
    /// One partition this node owns.
    public struct OwnedPartition: Sendable, Hashable {
        /// The partition's number.
        public var partition: Int
        /// The epoch of this node's lease.
        public var epoch: Int64
        /// Whether its wheel is rebuilt from PostgreSQL, caught up with the log and firing.
        public var ready: Bool
        /// Timers its wheel holds (pending and in flight).
        public var pendingTimers: Int
        /// The sequence number of the next record it will apply.
        public var appliedSequence: Int64
        /// Why it is not firing the partition (its log in PostgreSQL is damaged), if it is not.
        public var failure: String?
    }

    /// The node's name.
    public var node: String
    /// The partitions it owns, by number.
    public var owned: [OwnedPartition]
    /// Statements this node committed to append (its group commits: each carries the calls
    /// made while the one before was in flight).
    public var statementsCommitted: Int
    /// Frames those statements appended (one per partition a statement touched).
    public var framesAppended: Int
    /// Records this node appended.
    public var recordsAppended: Int
    /// Deliveries this node handed to its consumers.
    public var delivered: Int
    /// The partitions this node claimed since it started, with how long each took.
    public var takeovers: [FleetTakeover]
}

/// One claim of a partition by a node, timed from the claim.
public struct FleetTakeover: Sendable, Hashable {
    /// The partition's number.
    public var partition: Int
    /// The epoch of the claim.
    public var epoch: Int64
    /// From the claim to a wheel rebuilt from PostgreSQL, in milliseconds.
    public var rebuildMilliseconds: Int
    /// From the claim to the first delivery, in milliseconds; nil when nothing was due within a
    /// second of the rebuild.
    public var firstDeliveryMilliseconds: Int?
    /// Timers the wheel held when rebuilt.
    public var timers: Int
}
