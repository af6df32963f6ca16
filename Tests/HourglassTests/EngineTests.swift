import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting

func ids(_ deliveries: [Delivery]) -> [String] { deliveries.map { $0.id.description } }

@Suite("Engine: scheduling, cancelling, firing")
struct EngineTests {
    static let start: Int64 = 1_763_791_200_000

    func makeEngine(_ configure: (inout Configuration) -> Void = { _ in }) async throws -> (HourglassEngine, ManualClock) {
        let timers = try await HourglassTestEngine.open(.memory, startingAt: Deadline(millisecondsSinceEpoch: Self.start), configure: configure)
        return (timers.engine, timers.clock)
    }

    @Test("a timer fires at its exact millisecond, with its payload")
    func firesOnTime() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "order-1", after: .seconds(1800), payload: Array("close".utf8))
        clock.advance(by: .milliseconds(1_799_999))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.advance(by: .milliseconds(1))
        let fired = await engine.takeDeliveries()
        #expect(ids(fired) == ["order-1"])
        #expect(fired.first?.payloadString == "close")
        #expect(fired.first?.deadline.millisecondsSinceEpoch == Self.start + 1_800_000)
        #expect(fired.first?.firedAt.millisecondsSinceEpoch == Self.start + 1_800_000)
        #expect(fired.first?.attempt == 1)
        try await engine.close()
    }

    @Test("cancel says whether a timer was pending; a cancelled timer never fires")
    func cancel() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "paid", after: .seconds(60))
        try await engine.schedule(id: "unpaid", after: .seconds(60))
        #expect(try await engine.cancel(id: "paid"))
        #expect(try await engine.cancel(id: "paid") == false)
        #expect(try await engine.cancel(id: "never-scheduled") == false)
        clock.advance(by: .seconds(61))
        #expect(ids(await engine.takeDeliveries()) == ["unpaid"])
        try await engine.close()
    }

    @Test("scheduling a pending id again replaces it: one timer, the new deadline and payload")
    func upsert() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "x", after: .seconds(10), payload: [1])
        try await engine.schedule(id: "x", after: .seconds(20), payload: [2])
        #expect(await engine.stats().pending == 1)
        clock.advance(by: .seconds(10))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.advance(by: .seconds(10))
        let fired = await engine.takeDeliveries()
        #expect(fired.map(\.payload) == [[2]])
        try await engine.close()
    }

    @Test("a batch schedules every timer; timers fire in deadline order, ties in schedule order")
    func batchAndOrder() async throws {
        let (engine, clock) = try await makeEngine()
        let base = Deadline(millisecondsSinceEpoch: Self.start)
        try await engine.schedule([
            TimerRequest(id: "c", deadline: base + .seconds(3)),
            TimerRequest(id: "a", deadline: base + .seconds(1)),
            TimerRequest(id: "b1", deadline: base + .seconds(2)),
            TimerRequest(id: "b2", deadline: base + .seconds(2)),
        ])
        try await engine.schedule(id: "past", at: Deadline(millisecondsSinceEpoch: Self.start - 5000))
        #expect(ids(await engine.takeDeliveries()) == ["past"])
        clock.advance(by: .seconds(5))
        #expect(ids(await engine.takeDeliveries()) == ["a", "b1", "b2", "c"])
        try await engine.close()
    }

    @Test("a wall clock stepping back never fires early; stepping forward fires what became due")
    func clockSteps() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "t", after: .seconds(60))
        clock.advance(by: .seconds(-3600))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.advance(by: .seconds(3600 + 59))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.advance(by: .seconds(86_400))
        let fired = await engine.takeDeliveries()
        #expect(ids(fired) == ["t"])
        #expect(fired.first!.latenessMilliseconds == 86_399_000)
        try await engine.close()
    }

    @Test("bad input gets a typed error naming the limit, and changes nothing")
    func badInput() async throws {
        let (engine, _) = try await makeEngine { $0.maxPayloadBytes = 100 }
        await #expect(throws: HourglassError.emptyID) { try await engine.schedule(id: TimerID(bytes: []), after: .seconds(1)) }
        await #expect(throws: HourglassError.idTooLong(length: 1025, limit: 1024)) {
            try await engine.schedule(id: TimerID(String(repeating: "x", count: 1025)), after: .seconds(1))
        }
        await #expect(throws: HourglassError.payloadTooLarge(length: 101, limit: 100)) {
            try await engine.schedule(id: "p", after: .seconds(1), payload: Array(repeating: 0, count: 101))
        }
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: -1)) {
            try await engine.schedule(id: "d", at: Deadline(millisecondsSinceEpoch: -1))
        }
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: Deadline.latest.millisecondsSinceEpoch + 1)) {
            try await engine.schedule(id: "d", at: Deadline(millisecondsSinceEpoch: Deadline.latest.millisecondsSinceEpoch + 1))
        }
        await #expect(throws: HourglassError.self) { try await engine.schedule(id: "d", after: .seconds(-1)) }
        // A batch with one bad timer schedules none of them.
        await #expect(throws: HourglassError.emptyID) {
            try await engine.schedule([TimerRequest(id: "ok", deadline: .earliest), TimerRequest(id: TimerID(bytes: []), deadline: .earliest)])
        }
        await #expect(throws: HourglassError.emptyID) { _ = try await engine.cancel(id: TimerID(bytes: [])) }
        #expect(await engine.stats().pending == 0)
        try await engine.close()
    }

    @Test("invalid configurations are refused with what is wrong")
    func badConfiguration() async throws {
        var configuration = Configuration.memory
        configuration.maxIDBytes = 5000
        await #expect(throws: HourglassError.self) { _ = try await HourglassEngine.open(configuration, clock: ManualClock()) }
        configuration = .memory
        configuration.tick = .zero
        await #expect(throws: HourglassError.self) { _ = try await HourglassEngine.open(configuration, clock: ManualClock()) }
    }

    @Test("after close every operation fails with .closed and the deliveries end")
    func afterClose() async throws {
        let (engine, _) = try await makeEngine()
        try await engine.schedule(id: "a", after: .seconds(1))
        try await engine.close()
        try await engine.close()  // closing twice is harmless
        await #expect(throws: HourglassError.closed) { try await engine.schedule(id: "b", after: .seconds(1)) }
        await #expect(throws: HourglassError.closed) { _ = try await engine.cancel(id: "a") }
        var iterator = engine.deliveries.makeAsyncIterator()
        #expect(await iterator.next() == nil)
    }

    @Test("ack removes a delivered timer; a second ack says false")
    func ack() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "a", after: .seconds(1))
        clock.advance(by: .seconds(1))
        let delivery = try #require(await engine.takeDeliveries().first)
        #expect(await engine.stats().inFlight == 1)
        #expect(try await engine.ack(delivery))
        #expect(try await engine.ack(delivery) == false)
        let stats = await engine.stats()
        #expect(stats.inFlight == 0 && stats.pending == 0 && stats.acknowledged == 1)
        try await engine.close()
    }

    @Test("a consumer waiting on the sequence receives timers as they fire")
    func consumerWaits() async throws {
        let (engine, clock) = try await makeEngine()
        try await engine.schedule(id: "first", after: .seconds(1))
        try await engine.schedule(id: "second", after: .seconds(2))
        let consumer = Task {
            var seen: [String] = []
            for await delivery in engine.deliveries {
                seen.append(delivery.id.description)
                _ = try await engine.ack(delivery)
                if seen.count == 2 { break }
            }
            return seen
        }
        clock.advance(by: .seconds(2))
        #expect(try await consumer.value == ["first", "second"])
        try await engine.close()
    }
}
