import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting

/// Engines opened, dropped and reopened in one process; deliveries that outlive their engine;
/// batch acknowledgement; at-most-once delivery across a clean close.
@Suite("Engine lifecycle: identity, drop without close, batches, at most once")
struct EngineLifecycleTests {
    static let start: Int64 = 1_763_791_200_000

    @Test("a delivery acknowledges only the timer it came from, in the engine it came from")
    func deliveriesStayWithTheirEngine() async throws {
        let clock = ManualClock(now: Self.start)
        var stale: [Delivery] = []
        // Many engines, opened and freed in turn: a freed engine's memory is reused by the next,
        // and every fresh engine puts its first timer in the same slot.
        for i in 0 ..< 100 {
            let engine = try await HourglassEngine.open(.memory, clock: clock)
            try await engine.schedule(id: TimerID("old-\(i)"), at: Deadline(millisecondsSinceEpoch: clock.now()))
            stale.append(contentsOf: await engine.takeDeliveries())
            try await engine.close()
        }
        #expect(stale.count == 100)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        try await engine.schedule(id: "new", at: Deadline(millisecondsSinceEpoch: clock.now()))
        let fired = await engine.takeDeliveries()
        #expect(fired.map(\.id) == ["new"])
        for delivery in stale {
            #expect(try await engine.ack(delivery) == false)
            #expect(try await engine.retry(delivery, after: .seconds(1)) == false)
        }
        #expect(try await engine.ack(contentsOf: stale) == 0)
        #expect(await engine.stats().inFlight == 1, "the new engine's timer is still in flight")
        #expect(try await engine.ack(fired[0]))
        try await engine.close()
    }

    @Test("an engine dropped without close releases its directory; every acknowledged timer is still there")
    func droppedEnginesClose() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        for durability in [Configuration.Durability.always, .interval(.milliseconds(10)), .none] {
            for i in 0 ..< 34 {
                let engine = try await HourglassEngine.open(.directory(directory.path, durability: durability), clock: clock)
                try await engine.schedule(id: TimerID("\(durability)-\(i)"), after: .seconds(60), payload: Array("p\(i)".utf8))
                // No close: the last reference goes here.
            }
        }
        let engine = try await HourglassEngine.open(.directory(directory.path), clock: clock)
        #expect(await engine.stats().pending == 102)
        clock.advance(by: .seconds(60))
        #expect(await engine.takeDeliveries().count == 102)
        try await engine.close()
    }

    @Test("at most once: what no consumer took before a clean close is still pending at the next open")
    func atMostOnceKeepsWhatNobodyTook() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var configuration = Configuration.directory(directory.path, durability: .interval(.milliseconds(10)))
        configuration.deliveryMode = .atMostOnce
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        for i in 0 ..< 10 { try await engine.schedule(id: TimerID("t\(i)"), after: .seconds(1)) }
        clock.advance(by: .seconds(1))
        #expect(await engine.stats().buffered == 10, "fired and handed to the delivery buffer")
        var iterator = engine.deliveries.makeAsyncIterator()
        let taken = await iterator.next()
        #expect(taken?.id == "t0")
        try await engine.close()

        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        let held = await reopened.stats()
        #expect(held.pending + held.inFlight == 9, "overdue at the open: fired again, into the buffer")
        let again = await reopened.takeDeliveries()
        #expect(again.map(\.id.description) == (1 ..< 10).map { "t\($0)" }, "every timer no consumer took, once; not t0")
        #expect(await reopened.stats().pending == 0)
        try await reopened.close()
    }

    @Test("at most once: a timer cancelled after it fired but before a consumer took it is not delivered")
    func atMostOnceCancelBeforeTake() async throws {
        let clock = ManualClock(now: Self.start)
        var configuration = Configuration.memory
        configuration.deliveryMode = .atMostOnce
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "a", after: .seconds(1))
        try await engine.schedule(id: "b", after: .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(await engine.stats().buffered == 2)
        #expect(try await engine.cancel(id: "a"))
        var iterator = engine.deliveries.makeAsyncIterator()
        #expect(await iterator.next()?.id == "b", "a was cancelled before any consumer took it")
        #expect(await engine.stats().buffered == 0)
        try await engine.close()
    }

    @Test("ack(contentsOf:) acknowledges a batch in one call and counts what took effect")
    func batchAcknowledgement() async throws {
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        try await engine.schedule((0 ..< 500).map { TimerRequest(id: TimerID("t\($0)"), deadline: Deadline(millisecondsSinceEpoch: Self.start + 10)) })
        clock.advance(by: .milliseconds(10))
        _ = await engine.stats()
        var batches = engine.deliveries.batches(maxCount: 200).makeAsyncIterator()
        var all: [Delivery] = []
        while all.count < 500, let batch = await batches.next() {
            #expect(batch.count <= 200 && !batch.isEmpty)
            all.append(contentsOf: batch)
        }
        #expect(Set(all.map(\.id)).count == 500)
        #expect(try await engine.ack(contentsOf: all) == 500)
        #expect(try await engine.ack(contentsOf: all) == 0, "a second acknowledgement takes no effect")
        let stats = await engine.stats()
        #expect(stats.inFlight == 0 && stats.acknowledged == 500)
        try await engine.close()
    }

    @Test("retry with a delay past the end of time is refused, as schedule is, and changes nothing")
    func retryOverflowIsRefused() async throws {
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        try await engine.schedule(id: "a", after: .zero)
        let delivery = try #require(await engine.takeDeliveries().first)
        for delay in [Duration.seconds(Int64.max), .seconds(400_000_000_000), .milliseconds(-1)] {
            await #expect(throws: HourglassError.self) { _ = try await engine.retry(delivery, after: delay) }
        }
        #expect(await engine.stats().inFlight == 1, "still in flight")
        #expect(try await engine.ack(delivery))
        try await engine.close()
    }
}
