import Hourglass
import HourglassFleet
import HourglassTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A fleet on a real PostgreSQL (started by the suite), with a manual clock for deadlines.
@Suite("Fleet", .serialized)
struct FleetTests {
    @Test("A timer scheduled through one node fires once at its deadline, and an ack ends it")
    func scheduleFireAck() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        var configuration = Configuration(storage: .memory, durability: .replicated)
        configuration.redeliveryTimeout = .seconds(30)
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a"), configuration: configuration, clock: clock)
        try await FleetFixture.waitUntil("node a owns every partition") { node.ownsAll }
        try await node.schedule(id: "order-1", after: .seconds(10), payload: Array("close".utf8))
        try await FleetFixture.waitUntil("the owner applied the schedule") { node.heldTimers == 1 }
        clock.advance(by: .milliseconds(9_999))
        try await Task.sleep(for: .milliseconds(100))
        #expect(node.deliveries.buffered == 0, "nothing fires before its deadline")
        clock.advance(by: .milliseconds(1))
        let delivery = try #require(await FleetFixture.next(node.deliveries))
        #expect(delivery.id == "order-1")
        #expect(delivery.payloadString == "close")
        #expect(delivery.attempt == 1)
        #expect(delivery.deadline == Deadline(millisecondsSinceEpoch: clock.now()))
        #expect(try await node.ack(delivery))
        try await FleetFixture.waitUntil("the ack removed the timer") { node.heldTimers == 0 }
        clock.advance(by: .seconds(60))
        try await Task.sleep(for: .milliseconds(100))
        #expect(node.deliveries.buffered == 0, "an acknowledged timer is not delivered again")
        await node.close()
    }

    @Test("An unacknowledged delivery comes again after the redelivery timeout, with the next attempt")
    func redelivery() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        var configuration = Configuration(storage: .memory, durability: .replicated)
        configuration.redeliveryTimeout = .seconds(5)
        configuration.maxAttempts = 2
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a"), configuration: configuration, clock: clock)
        try await FleetFixture.waitUntil("node a owns every partition") { node.ownsAll }
        try await node.schedule(id: "poll-1", after: .seconds(1))
        try await FleetFixture.waitUntil("applied") { node.heldTimers == 1 }
        clock.advance(by: .seconds(1))
        let first = try #require(await FleetFixture.next(node.deliveries))
        #expect(first.attempt == 1)
        clock.advance(by: .seconds(5))
        let second = try #require(await FleetFixture.next(node.deliveries))
        #expect(second.id == "poll-1" && second.attempt == 2)
        // Out of attempts: dropped, with an ACK in the log.
        clock.advance(by: .seconds(5))
        try await FleetFixture.waitUntil("the timer out of attempts is dropped") { node.heldTimers == 0 }
        #expect(node.deliveries.buffered == 0)
        await node.close()
    }

    @Test("A cancel through another node reaches the owner: the timer does not fire")
    func cancelThroughAnotherNode() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let owner = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "owner"), clock: clock)
        try await FleetFixture.waitUntil("the owner owns every partition") { owner.ownsAll }
        // A second node joins late and may take a share of the partitions; cancel through it
        // either way.
        let other = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "other"), clock: clock)
        for index in 0 ..< 50 { try await owner.schedule(id: TimerID("t-\(index)"), after: .seconds(5)) }
        for index in 0 ..< 50 where index % 2 == 0 { try await other.cancel(id: TimerID("t-\(index)")) }
        clock.advance(by: .seconds(5))
        var fired: [String] = []
        try await FleetFixture.waitUntil("25 timers fired across the nodes") {
            for node in [owner, other] {
                while node.deliveries.buffered > 0, let delivery = await FleetFixture.next(node.deliveries, timeout: .seconds(1)) {
                    fired.append(delivery.id.string!)
                    try await node.ack(delivery)
                }
            }
            return fired.count >= 25
        }
        #expect(Set(fired) == Set((0 ..< 50).filter { $0 % 2 == 1 }.map { "t-\($0)" }))
        #expect(fired.count == 25, "each fired once")
        await other.close()
        await owner.close()
    }

    @Test("An ack of an earlier delivery does not end a later schedule of the same id")
    func staleAck() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a"), clock: clock)
        try await FleetFixture.waitUntil("owning") { node.ownsAll }
        try await node.schedule(id: "renewal", after: .seconds(1), payload: [1])
        try await FleetFixture.waitUntil("applied") { node.heldTimers == 1 }
        clock.advance(by: .seconds(1))
        let old = try #require(await FleetFixture.next(node.deliveries))
        try await node.schedule(id: "renewal", after: .seconds(10), payload: [2])
        try await node.ack(old)
        clock.advance(by: .seconds(10))
        let renewed = try #require(await FleetFixture.next(node.deliveries))
        #expect(renewed.payload == [2], "the new schedule fired despite the stale ack")
        await node.close()
    }

    @Test("Retry through any node: the delivery comes again at the new time with the next attempt")
    func retry() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a"), clock: clock)
        try await FleetFixture.waitUntil("owning") { node.ownsAll }
        try await node.schedule(id: "pay-9", after: .seconds(1))
        try await FleetFixture.waitUntil("applied") { node.heldTimers == 1 }
        clock.advance(by: .seconds(1))
        let first = try #require(await FleetFixture.next(node.deliveries))
        #expect(try await node.retry(first, after: .seconds(60)))
        try await Task.sleep(for: .milliseconds(200))
        clock.advance(by: .seconds(59))
        try await Task.sleep(for: .milliseconds(100))
        #expect(node.deliveries.buffered == 0)
        clock.advance(by: .seconds(1))
        let second = try #require(await FleetFixture.next(node.deliveries))
        #expect(second.attempt == 2)
        await node.close()
    }

    @Test("A node that leaves hands its partitions over; the next owner rebuilds from checkpoint and log and fires everything")
    func handoverAndCheckpoint() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        var options = try FleetFixture.options(url, node: "first")
        options.checkpointRecords = 100
        let first = try await HourglassFleetNode.start(fleet: options, clock: clock)
        try await FleetFixture.waitUntil("owning") { first.ownsAll }
        let timers = (0 ..< 1000).map { TimerRequest(id: TimerID("k-\($0)"), deadline: Deadline(millisecondsSinceEpoch: clock.now() + 1000 + Int64($0))) }
        try await first.schedule(timers)
        try await FleetFixture.waitUntil("applied") { first.heldTimers == 1000 }
        // The checkpoints delete the frames they cover.
        try await FleetFixture.waitUntil("checkpoints trimmed the log") {
            try await first.partitionStates().allSatisfy { $0.frames == 0 }
        }
        for index in 0 ..< 10 { try await first.cancel(id: TimerID("k-\(index)")) }
        await first.close()
        options.node = "second"
        let second = try await HourglassFleetNode.start(fleet: options, clock: clock)
        try await FleetFixture.waitUntil("the second node took every partition over") { second.ownsAll }
        #expect(second.heldTimers == 990)
        clock.advance(by: .seconds(3))
        let fired = Set(try await FleetFixture.takeAndAck(from: [second], until: "990 fired", poll: .milliseconds(200)) { Set($0).count == 990 })
        #expect(!fired.contains("k-0"))
        #expect(second.status().takeovers.count == options.partitions)
        await second.close()
    }

    @Test("Concurrent appenders through three nodes: sequence numbers without gaps, every live timer fired exactly once")
    func concurrentAppenders() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let nodes = try await withThrowingTaskGroup(of: HourglassFleetNode.self) { group in
            for name in ["n1", "n2", "n3"] {
                group.addTask { try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: name, partitions: 2), clock: clock) }
            }
            var nodes: [HourglassFleetNode] = []
            for try await node in group { nodes.append(node) }
            return nodes
        }
        try await FleetFixture.waitUntil("both partitions owned and ready") {
            nodes.reduce(0) { $0 + $1.status().owned.filter(\.ready).count } == 2
        }
        // 3 nodes × 8 callers × 25 schedules, all due at the same time; plus cancels of every
        // fifth id through another node than the one that scheduled it.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (n, node) in nodes.enumerated() {
                for caller in 0 ..< 8 {
                    group.addTask {
                        for index in 0 ..< 25 {
                            let id = TimerID("c-\(n)-\(caller)-\(index)")
                            try await node.schedule(id: id, after: .seconds(1))
                            if index % 5 == 0 { try await nodes[(n + 1) % 3].cancel(id: id) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let expected = 3 * 8 * 25 * 4 / 5
        try await FleetFixture.waitUntil("every schedule applied") { nodes.reduce(0) { $0 + $1.heldTimers } == expected }
        let states = try await nodes[0].partitionStates()
        let appended = nodes.reduce(0) { $0 + $1.status().recordsAppended }
        #expect(appended == 3 * 8 * 25 + 3 * 8 * 5)
        #expect(states.reduce(0) { $0 + Int($1.nextSequence - 1) } == appended, "sequence numbers without gaps")
        clock.advance(by: .seconds(1))
        let fired = try await FleetFixture.takeAndAck(from: nodes, until: "every live timer fired", poll: .milliseconds(50)) { $0.count >= expected }
        #expect(fired.count == expected && Set(fired).count == expected, "each exactly once")
        #expect(!fired.contains { Int($0.split(separator: "-").last!)! % 5 == 0 }, "no cancelled timer fired")
        for node in nodes { await node.close() }
    }

    @Test("A lease the database gives a node that runs no owner for it (a claim whose answer was lost) is run: its timers fire")
    func leaseWithoutOwner() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a", partitions: 2), clock: clock)
        try await FleetFixture.waitUntil("both partitions owned") { node.ownsAll }
        let ids = (0 ..< 100).map { TimerID("w-\($0)") }.filter { node.partition(of: $0) == 0 }.prefix(2)
        try await node.schedule(id: ids.first!, after: .seconds(1))
        let epoch = try #require(node.status().owned.first { $0.partition == 0 }?.epoch)
        // What PostgreSQL holds after a claim by this node that committed but whose answer never
        // came back: the lease is the node's, unexpired, at an epoch it runs no owner for. Its
        // owner at the old epoch is fenced; nothing but this node may claim the partition now.
        try await FleetFixture.execute("UPDATE hourglass_partitions SET epoch = epoch + 1 WHERE partition = 0", on: url)
        try await FleetFixture.waitUntil("the node runs partition 0 at the new epoch") {
            node.status().owned.contains { $0.partition == 0 && $0.epoch == epoch + 1 && $0.ready }
        }
        try await node.schedule(id: ids.last!, after: .seconds(1))
        clock.advance(by: .seconds(1))
        let fired = try await FleetFixture.takeAndAck(from: [node], until: "both timers of partition 0 fired", poll: .milliseconds(50)) {
            Set($0) == Set(ids.map { $0.string! })
        }
        #expect(fired.count == 2)
        await node.close()
    }

    @Test("A batch over every partition is one commit: a frame per partition, sequence numbers in order")
    func batchIsOneCommit() async throws {
        let url = try await FleetFixture.freshDatabase()
        let clock = ManualClock()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a", partitions: 4), clock: clock)
        try await FleetFixture.waitUntil("every partition owned") { node.ownsAll }
        let timers = (0 ..< 200).map { TimerRequest(id: TimerID("b-\($0)"), deadline: Deadline(millisecondsSinceEpoch: clock.now() + 1000)) }
        let before = node.status()
        try await node.schedule(timers)
        let after = node.status()
        #expect(after.statementsCommitted - before.statementsCommitted == 1, "one statement for the whole call")
        #expect(after.framesAppended - before.framesAppended == 4, "one frame per partition")
        #expect(after.recordsAppended - before.recordsAppended == 200)
        let states = try await node.partitionStates()
        var expected = [Int](repeating: 0, count: 4)
        for timer in timers { expected[node.partition(of: timer.id)] += 1 }
        #expect(states.map { Int($0.nextSequence - 1) } == expected)
        try await FleetFixture.waitUntil("every schedule applied") { node.heldTimers == 200 }
        clock.advance(by: .seconds(1))
        _ = try await FleetFixture.takeAndAck(from: [node], until: "200 fired", poll: .milliseconds(100)) { Set($0).count == 200 }
        await node.close()
    }

    @Test("A server that accepts connections and never answers: start fails with a typed error within its time limit")
    func silentServer() async throws {
        // A listening socket nobody accepts on: the kernel completes the TCP handshake, and
        // the PostgreSQL startup message waits for an answer that never comes.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        var options = try FleetOptions(postgres: "postgres://u@127.0.0.1:\(port)/x", node: "a")
        options.callTimeout = .milliseconds(200)  // start's calls get ten times that: 2 s
        let began = ContinuousClock.now
        await #expect {
            _ = try await HourglassFleetNode.start(fleet: options)
        } throws: { error in
            guard case let .database(_, message) = error as? HourglassError else { return false }
            return message.contains("no answer from PostgreSQL within")
        }
        #expect(ContinuousClock.now - began < .seconds(4), "the start's limit (2 s), not the 5 s connect timeout or forever")
    }

    @Test("A node configured with another partition count than the fleet's is refused")
    func partitionCountMismatch() async throws {
        let url = try await FleetFixture.freshDatabase()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a", partitions: 4))
        await #expect(throws: HourglassError.invalidConfiguration(
            "the fleet was created with 4 partitions (hourglass_fleet), not 8: configure partitions = 4")) {
            _ = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "b", partitions: 8))
        }
        await node.close()
    }

    @Test("Bad input: URLs, options, ids and payloads get typed errors; a local engine refuses .replicated")
    func badInput() async throws {
        #expect(throws: HourglassError.self) { try FleetOptions(postgres: "mysql://x@y", node: "a") }
        #expect(throws: HourglassError.self) { try FleetOptions(postgres: "postgres://y:5432/db", node: "a") }
        #expect(throws: HourglassError.self) { try FleetOptions(postgres: "postgres://u@h:99999/db", node: "a") }
        let address = try PostgresAddress(url: "postgres://user:p%40ss@db.internal:6543/timers")
        #expect(address == PostgresAddress(host: "db.internal", port: 6543, username: "user", password: "p@ss", database: "timers"))
        #expect(address.description == "postgres://user@db.internal:6543/timers")
        var options = try FleetOptions(postgres: "postgres://u@127.0.0.1:1/x", node: "")
        await #expect(throws: HourglassError.self) { _ = try await HourglassFleetNode.start(fleet: options) }
        options.node = "a"
        options.lease = .milliseconds(10)
        await #expect(throws: HourglassError.self) { _ = try await HourglassFleetNode.start(fleet: options) }
        options.lease = .seconds(1)
        options.callTimeout = .milliseconds(5)
        await #expect(throws: HourglassError.invalidConfiguration("callTimeout must be 100 ms ... 1 hour, not 0.005 seconds")) {
            _ = try await HourglassFleetNode.start(fleet: options)
        }
        options.callTimeout = nil
        await #expect(throws: HourglassError.invalidConfiguration(
            "durability .replicated is a fleet's: start an HourglassFleetNode (the HourglassFleet library) with a PostgreSQL URL")) {
            _ = try await HourglassEngine.open(Configuration(storage: .memory, durability: .replicated))
        }
        // Nothing listens on port 1: a typed database error, not a hang.
        options.lease = .seconds(1)
        await #expect {
            _ = try await HourglassFleetNode.start(fleet: options)
        } throws: { error in
            guard case .database = error as? HourglassError else { return false }
            return true
        }
        let url = try await FleetFixture.freshDatabase()
        let node = try await HourglassFleetNode.start(fleet: try FleetFixture.options(url, node: "a"))
        await #expect(throws: HourglassError.emptyID) { try await node.schedule(id: TimerID(""), after: .seconds(1)) }
        await #expect(throws: HourglassError.idTooLong(length: 1025, limit: 1024)) {
            try await node.schedule(id: TimerID(String(repeating: "x", count: 1025)), after: .seconds(1))
        }
        await #expect(throws: HourglassError.payloadTooLarge(length: 2 << 20, limit: 1 << 20)) {
            try await node.schedule(id: "big", after: .seconds(1), payload: [UInt8](repeating: 0, count: 2 << 20))
        }
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: -1)) {
            try await node.schedule(id: "past", at: Deadline(millisecondsSinceEpoch: -1))
        }
        await node.close()
        await #expect(throws: HourglassError.closed) { try await node.schedule(id: "late", after: .seconds(1)) }
    }
}
