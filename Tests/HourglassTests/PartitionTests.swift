
@testable import Hourglass
import HourglassTestSupport
import HourglassTesting
import Testing

@Suite("Partitions: one engine in front of several single writers")
struct PartitionTests {
    static let start: Int64 = 1_763_791_200_000

    func open(_ storage: HourglassTestEngine.Storage = .memory, partitions: Int,
              _ configure: @escaping (inout Configuration) -> Void = { _ in }) async throws -> HourglassTestEngine {
        try await HourglassTestEngine.open(storage, startingAt: Deadline(millisecondsSinceEpoch: Self.start)) {
            $0.partitions = partitions
            configure(&$0)
        }
    }

    @Test("an id's partition is fixed by the format: the pinned values of FORMAT.md never change")
    func partitionOfAnID() {
        func index(_ id: String, _ count: Int) -> Int { Partitioning.index(of: Array(id.utf8), count: count) }
        let ids = ["order-1", "order-2", "order-42", "payment-7", "coupon-2026-12-01-0001", "x"]
        #expect(ids.map { index($0, 2) } == [0, 0, 0, 1, 1, 1])
        #expect(ids.map { index($0, 3) } == [0, 1, 0, 1, 1, 2])
        #expect(ids.map { index($0, 4) } == [0, 1, 0, 2, 2, 3])
        #expect(ids.map { index($0, 16) } == [1, 6, 2, 8, 9, 14])
        #expect(ids.allSatisfy { index($0, 1) == 0 })
        // Spread: 100,000 ids over 4 partitions, each within 2% of a quarter.
        var counts = [0, 0, 0, 0]
        for i in 0 ..< 100_000 { counts[index("order-\(i)", 4)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 25_000) < 500 }, "\(counts)")
    }

    @Test("timers spread over partitions behave as one engine: schedule, cancel, fire in order per deadline, ack, stats")
    func oneEngine() async throws {
        let timers = try await open(partitions: 4)
        let engine = timers.engine
        for i in 0 ..< 200 {
            try await engine.schedule(id: TimerID("order-\(i)"), at: Deadline(millisecondsSinceEpoch: Self.start + 1_000 + Int64(i)), payload: [UInt8(i % 256)])
        }
        var cancelled = 0
        for i in stride(from: 0, to: 200, by: 3) where try await engine.cancel(id: TimerID("order-\(i)")) { cancelled += 1 }
        #expect(cancelled == 67)
        #expect(try await engine.cancel(id: "order-0") == false, "already cancelled")
        var stats = await engine.stats()
        #expect(stats.pending == 133 && stats.nextDeadline != nil)
        await timers.advance(by: .seconds(2))
        let deliveries = await timers.takeDeliveries()
        #expect(Set(deliveries.map(\.id.description)) == Set((0 ..< 200).filter { $0 % 3 != 0 }.map { "order-\($0)" }))
        #expect(deliveries.allSatisfy { $0.payload == [UInt8(Int($0.id.description.dropFirst(6))! % 256)] })
        #expect(try await engine.ack(contentsOf: deliveries) == 133, "acknowledged across partitions in one call")
        stats = await engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0 && stats.acknowledged == 133 && stats.delivered == 133)
        try await timers.close()
    }

    @Test("ack, retry and at-most-once take find the delivery's partition; a delivery of another engine is refused")
    func routing() async throws {
        let timers = try await open(partitions: 3)
        let engine = timers.engine
        for id in ["order-1", "order-2", "payment-7", "x"] { try await engine.schedule(id: TimerID(id), after: .seconds(1)) }
        await timers.advance(by: .seconds(1))
        let fired = await timers.takeDeliveries()
        #expect(fired.count == 4)
        for delivery in fired { #expect(try await engine.retry(delivery, after: .seconds(5))) }
        await timers.advance(by: .seconds(5))
        let again = await timers.takeDeliveries()
        #expect(again.count == 4 && again.allSatisfy { $0.attempt == 2 })
        let other = try await open(partitions: 3)
        for delivery in again { #expect(try await other.engine.ack(delivery) == false, "not this engine's") }
        for delivery in again { #expect(try await engine.ack(delivery)) }
        try await other.close()
        try await timers.close()

        let once = try await open(partitions: 2) { $0.deliveryMode = .atMostOnce }
        for id in ["order-1", "payment-7"] { try await once.engine.schedule(id: TimerID(id), after: .seconds(1)) }
        await once.advance(by: .seconds(1))
        var iterator = once.engine.deliveries.makeAsyncIterator()
        var taken: Set<String> = []
        for _ in 0 ..< 2 { taken.insert(try #require(await iterator.next()).id.description) }
        #expect(taken == ["order-1", "payment-7"])
        let stats = await once.engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0, "taken counts as delivered in every partition")
        try await once.close()
    }

    @Test("a partitioned directory: its layout, recovery of every partition, recurring timers, checkpoints")
    func directory() async throws {
        let timers = try await open(.temporaryDirectory, partitions: 3)
        let path = try #require(timers.directory?.path)
        let ids = (0 ..< 60).map { "order-\($0)" }
        for id in ids { try await timers.engine.schedule(id: TimerID(id), after: .seconds(60), payload: Array(id.utf8)) }
        try await timers.engine.schedule(id: "sweep", repeating: .every(.seconds(30)))
        #expect(timers.directory!.files().filter { !$0.hasPrefix("LOCK") } == ["PARTITIONS", "partition-000", "partition-001", "partition-002"])
        #expect(readFile(path + "/PARTITIONS") == Array("hourglass partitions 3\n".utf8))
        for index in 0 ..< 3 {
            #expect(fileNames(in: path + "/partition-00\(index)").contains { $0.hasPrefix("wal-") }, "partition \(index) has its own log")
        }
        try await timers.reopen()
        #expect(timers.engine.recoveryReport.applied == 61, "\(timers.engine.recoveryReport)")
        try await timers.engine.checkpoint()
        try await timers.reopen()
        #expect(timers.engine.recoveryReport.checkpointTimers == 61, "\(timers.engine.recoveryReport)")
        await timers.advance(by: .seconds(30))
        let sweep = await timers.takeDeliveries()
        #expect(sweep.map(\.id) == ["sweep"] && sweep.first?.occurrence?.millisecondsSinceEpoch == Self.start + 30_000)
        for delivery in sweep { #expect(try await timers.engine.ack(delivery)) }
        await timers.advance(by: .seconds(30))
        let due = await timers.takeDeliveries()
        #expect(Set(due.map(\.id.description)) == Set(ids + ["sweep"]))
        #expect(due.allSatisfy { $0.id == "sweep" || $0.payload == Array($0.id.description.utf8) })
        for delivery in due where delivery.id != "sweep" { #expect(try await timers.engine.ack(delivery)) }
        // inspect and verify read every partition, as one directory.
        try await timers.engine.close()
        let inspection = try HourglassEngine.inspect(directory: path, includeTimers: true)
        #expect(inspection.pending + inspection.inFlight == 1 && inspection.timers.map(\.id) == ["sweep"], "\(inspection.timers.map(\.id))")
        #expect(try HourglassEngine.verify(directory: path).isEmpty)
        patchFile(path + "/partition-001/" + fileNames(in: path + "/partition-001").first { $0.hasPrefix("wal-") }!, at: 70, with: [0xFF, 0xFF])
        let problems = try HourglassEngine.verify(directory: path)
        #expect(problems.count == 1 && problems.first?.file.contains("/partition-001/wal-") == true, "\(problems)")
        try await timers.close()
    }

    @Test("the count is fixed when the directory is created: another count, or one partition over a partitioned directory, is refused")
    func countIsFixed() async throws {
        let directory = TemporaryDirectory("hourglass-partitions")
        defer { directory.remove() }
        func open(_ path: String, _ partitions: Int) async throws(HourglassError) -> HourglassEngine {
            var configuration = Configuration.directory(path)
            configuration.partitions = partitions
            return try await HourglassEngine.open(configuration, clock: ManualClock(now: Self.start))
        }
        let partitioned = directory.appending("p")
        try await open(partitioned, 4).close()
        await #expect(throws: HourglassError.invalidConfiguration("\(partitioned) was created with 4 partitions, not 2: open it with partitions = 4")) {
            try await open(partitioned, 2)
        }
        await #expect(throws: HourglassError.invalidConfiguration("\(partitioned) was created with 4 partitions, not 1: open it with partitions = 4")) {
            try await open(partitioned, 1)
        }
        let single = directory.appending("s")
        let engine = try await open(single, 1)
        try await engine.schedule(id: "a", after: .seconds(1))
        try await engine.close()
        await #expect(throws: HourglassError.invalidConfiguration("\(single) holds one partition (its log is in the directory itself), not 3: open it with partitions = 1")) {
            try await open(single, 3)
        }
        // A second engine on a partitioned directory: every partition is locked.
        let first = try await open(partitioned, 4)
        await #expect(throws: HourglassError.self) { try await open(partitioned, 4) }
        try await first.close()
        // A damaged count is corruption, named.
        writeFile(partitioned + "/PARTITIONS", Array("hourglass partitions four\n".utf8))
        do {
            _ = try await open(partitioned, 4)
            Issue.record("a damaged PARTITIONS file is refused")
        } catch {
            guard case let .corruption(file, _, _) = error else { Issue.record("\(error)"); return }
            #expect(file == partitioned + "/PARTITIONS")
        }
        var bad = Configuration.memory
        bad.partitions = 0
        await #expect(throws: HourglassError.invalidConfiguration("partitions must be 1 ... 256, not 0")) {
            try await HourglassEngine.open(bad)
        }
    }
}
