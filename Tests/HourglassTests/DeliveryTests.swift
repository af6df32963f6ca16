import Hourglass
import HourglassTestSupport
import MetricsTestKit
import Synchronization
import Testing
import HourglassTesting

@Suite("Delivery: acknowledgement, retries, redelivery, at most once")
struct DeliveryTests {
    static let start: Int64 = 1_763_791_200_000

    func open(_ configure: (inout Configuration) -> Void = { _ in }) async throws -> (HourglassEngine, ManualClock) {
        let timers = try await HourglassTestEngine.open(.memory, startingAt: Deadline(millisecondsSinceEpoch: Self.start), configure: configure)
        return (timers.engine, timers.clock)
    }

    @Test("an unacknowledged timer is delivered again after the timeout, with the next attempt")
    func redeliveryAfterTimeout() async throws {
        let (engine, clock) = try await open { $0.redeliveryTimeout = .seconds(30) }
        try await engine.schedule(id: "order-7", after: .seconds(1), payload: [7])
        clock.advance(by: .seconds(1))
        let first = try #require(await engine.takeDeliveries().first)
        #expect(first.attempt == 1)
        clock.advance(by: .milliseconds(29_999))
        #expect(await engine.takeDeliveries().isEmpty, "not before the timeout")
        clock.advance(by: .milliseconds(1))
        let second = try #require(await engine.takeDeliveries().first)
        #expect(second.id == "order-7" && second.attempt == 2 && second.payload == [7])
        #expect(second.deadline == first.deadline, "the deadline stays the scheduled one")
        #expect(await engine.stats().redelivered == 1)
        #expect(try await engine.ack(first) == false, "the first delivery is no longer the one in flight")
        #expect(try await engine.ack(second))
        clock.advance(by: .seconds(3600))
        #expect(await engine.takeDeliveries().isEmpty, "acknowledged: never again")
        try await engine.close()
    }

    @Test("retry after a delay, at most maxAttempts attempts: the payment-status pattern")
    func retryWithLimit() async throws {
        let (engine, clock) = try await open { $0.maxAttempts = 3 }
        try await engine.schedule(id: "payment-1", after: .seconds(60))
        var attempts: [Int] = []
        for round in 0 ..< 3 {
            clock.advance(by: .seconds(60))
            let delivery = try #require(await engine.takeDeliveries().first, "round \(round)")
            attempts.append(delivery.attempt)
            let again = try await engine.retry(delivery, after: .seconds(60))
            #expect(again == (round < 2), "the third attempt is the last")
        }
        #expect(attempts == [1, 2, 3])
        clock.advance(by: .seconds(600))
        #expect(await engine.takeDeliveries().isEmpty)
        let stats = await engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0 && stats.retried == 2 && stats.exhausted == 1)
        try await engine.close()
    }

    @Test("a retried timer fires no earlier than its retry delay")
    func retryDelay() async throws {
        let (engine, clock) = try await open()
        try await engine.schedule(id: "p", after: .seconds(1))
        clock.advance(by: .seconds(1))
        let delivery = try #require(await engine.takeDeliveries().first)
        #expect(try await engine.retry(delivery, after: .milliseconds(1500)))
        clock.advance(by: .milliseconds(1499))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.advance(by: .milliseconds(1))
        #expect(await engine.takeDeliveries().map(\.attempt) == [2])
        try await engine.close()
    }

    @Test("at most once: handed over and acknowledged at once, never delivered again")
    func atMostOnce() async throws {
        let (engine, clock) = try await open { $0.deliveryMode = .atMostOnce }
        try await engine.schedule(id: "once", after: .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(await engine.takeDeliveries().map(\.id) == ["once"])
        let stats = await engine.stats()
        #expect(stats.inFlight == 0 && stats.pending == 0)
        clock.advance(by: .seconds(3600))
        #expect(await engine.takeDeliveries().isEmpty)
        try await engine.close()
    }

    @Test("at most once survives a restart without a second delivery")
    func atMostOnceDurable() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var configuration = Configuration.directory(directory.path, durability: .always)
        configuration.deliveryMode = .atMostOnce
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "once", after: .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(await engine.takeDeliveries().count == 1)
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        #expect(await reopened.takeDeliveries().isEmpty)
        #expect(await reopened.stats().pending == 0)
        try await reopened.close()
    }

    @Test("a timer in flight at a restart is delivered again, from the log alone")
    func redeliveryAfterReopen() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let configuration = Configuration.directory(directory.path, durability: .always)
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "a", after: .seconds(1), payload: [1])
        try await engine.schedule(id: "b", after: .seconds(1), payload: [2])
        clock.advance(by: .seconds(1))
        let fired = await engine.takeDeliveries()
        #expect(fired.count == 2)
        #expect(try await engine.ack(fired[0]))
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        let again = await reopened.takeDeliveries()
        #expect(again.map(\.id) == ["b"])
        #expect(again.first?.attempt == 2 && again.first?.payload == [2])
        try await reopened.close()
    }

    @Test("a timer in flight is not delivered again before its deadline when the clock went back across a restart")
    func redeliveryWaitsForDeadline() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let configuration = Configuration.directory(directory.path, durability: .always)
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "a", after: .seconds(1), payload: [1])
        clock.advance(by: .seconds(1))
        #expect(await engine.takeDeliveries().map(\.attempt) == [1])
        try await engine.close()
        clock.set(to: Self.start - 10_000)  // the wall clock stepped back while the process was down
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        #expect(await reopened.takeDeliveries().isEmpty, "its deadline is still 11 s ahead")
        #expect(await reopened.stats().pending == 1)
        clock.set(to: Self.start + 999)
        #expect(await reopened.takeDeliveries().isEmpty, "one millisecond before the deadline")
        clock.set(to: Self.start + 1_000)
        let again = try #require(await reopened.takeDeliveries().first)
        #expect(again.id == "a" && again.attempt == 2 && again.deadline.millisecondsSinceEpoch == Self.start + 1_000)
        try await reopened.close()
        // The wait was logged: a third opening, at the deadline, delivers attempt 3 of the same timer.
        let third = try await HourglassEngine.open(configuration, clock: clock)
        #expect(await third.takeDeliveries().map(\.attempt) == [3])
        try await third.close()
    }

    @Test("cancelling a timer in flight ends it; scheduling its id again starts a new timer")
    func cancelAndReplaceInFlight() async throws {
        let (engine, clock) = try await open()
        try await engine.schedule(id: "x", after: .seconds(1))
        try await engine.schedule(id: "y", after: .seconds(1))
        clock.advance(by: .seconds(1))
        let fired = await engine.takeDeliveries()
        #expect(try await engine.cancel(id: "x"))
        #expect(try await engine.ack(fired.first { $0.id == "x" }!) == false)
        try await engine.schedule(id: "y", after: .seconds(10), payload: [9])
        #expect(try await engine.ack(fired.first { $0.id == "y" }!) == false, "the old delivery was replaced")
        clock.advance(by: .seconds(10))
        let next = await engine.takeDeliveries()
        #expect(next.map(\.id) == ["y"] && next.first?.attempt == 1 && next.first?.payload == [9])
        try await engine.close()
    }

    @Test("a burst due in the same second is delivered in deadline order through a bounded window")
    func burst() async throws {
        let count = 8_000
        let (engine, clock) = try await open { $0.maxInFlight = 1000 }
        var batch: [TimerRequest] = []
        for i in 0 ..< count {
            batch.append(TimerRequest(id: TimerID("b\(i)"), deadline: Deadline(millisecondsSinceEpoch: Self.start + 1000 + Int64(i % 1000))))
        }
        try await engine.schedule(batch)
        clock.advance(by: .seconds(2))
        var seen: [Delivery] = []
        while seen.count < count {
            let chunk = await engine.takeDeliveries()
            #expect(chunk.count <= 1000, "never more than the window in flight")
            if chunk.isEmpty { break }
            seen += chunk
            for delivery in chunk { _ = try await engine.ack(delivery) }
        }
        #expect(seen.count == count)
        #expect(seen.map(\.deadline) == seen.map(\.deadline).sorted())
        // Ties fire in schedule order.
        let firstTie = seen.filter { $0.deadline.millisecondsSinceEpoch == Self.start + 1000 }.map(\.id)
        #expect(firstTie == stride(from: 0, to: count, by: 1000).map { TimerID("b\($0)") })
        try await engine.close()
    }

    @Test("consume: a slow handler does not hold up the others; outcomes ack, retry and leave")
    func consumeHandler() async throws {
        let (engine, clock) = try await open { $0.redeliveryTimeout = .seconds(30) }
        for i in 0 ..< 50 { try await engine.schedule(id: TimerID("t\(i)"), after: .seconds(1)) }
        try await engine.schedule(id: "slow", after: .milliseconds(500))
        try await engine.schedule(id: "again", after: .seconds(1))
        try await engine.schedule(id: "flaky", after: .seconds(1))
        let done = Recorded()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let consumer = Task {
            await engine.consume(concurrency: 4) { delivery in
                let id = delivery.id.description
                if id == "slow" {
                    for await _ in release { break }  // held until every other timer is handled
                }
                if id == "again" && delivery.attempt == 1 { return .retry(after: .seconds(5)) }
                if id == "flaky" && delivery.attempt == 1 { throw CancellationError() }
                done.append("\(id)#\(delivery.attempt)")
                return .ack
            }
        }
        clock.advance(by: .seconds(1))
        func handled() -> Int { done.values.count }
        for _ in 0 ..< 100_000 where handled() < 50 { await Task.yield() }
        #expect(handled() == 50, "the other handlers went on while one was stuck")
        clock.advance(by: .seconds(5))
        for _ in 0 ..< 100_000 where handled() < 51 { await Task.yield() }
        releaseContinuation.yield()  // the slow one finishes (before its redelivery timeout)
        await engine.waitUntilHandled()
        #expect(handled() == 52)
        clock.advance(by: .seconds(30))
        await engine.waitUntilHandled()
        #expect(handled() == 53)
        let names = done.values
        #expect(names.contains("again#2"), "retried once, then acknowledged")
        #expect(names.contains("flaky#2"), "a handler that threw gets the delivery again after the timeout")
        #expect(names.contains("slow#1"))
        try await engine.close()
        await consumer.value
    }

    @Test("metrics count what happened and record lateness")
    func metrics() async throws {
        let metrics = TestMetrics()
        let (engine, clock) = try await open {
            $0.metricsFactory = metrics
            $0.metricsDimensions = [("engine", "test")]
        }
        for i in 0 ..< 5 { try await engine.schedule(id: TimerID("m\(i)"), after: .seconds(1)) }
        #expect(try await engine.cancel(id: "m0"))
        clock.advance(by: .seconds(3))
        let fired = await engine.takeDeliveries()
        for delivery in fired { _ = try await engine.ack(delivery) }
        _ = await engine.stats()
        _ = await engine.stats()
        #expect(try metrics.expectCounter("hourglass_scheduled_total", [("engine", "test")]).totalValue == 5)
        #expect(try metrics.expectCounter("hourglass_cancelled_total", [("engine", "test")]).totalValue == 1)
        #expect(try metrics.expectCounter("hourglass_fired_total", [("engine", "test")]).totalValue == 4)
        #expect(try metrics.expectCounter("hourglass_acked_total", [("engine", "test")]).totalValue == 4)
        let lateness = try metrics.expectTimer("hourglass_lateness", [("engine", "test")])
        #expect(lateness.values.count == 4)
        #expect(lateness.values.allSatisfy { $0 == 2_000_000_000 }, "2 s late, in nanoseconds")
        #expect(try metrics.expectGauge("hourglass_pending", [("engine", "test")]).lastValue == 0)
        try await engine.close()
    }
}

/// Strings appended from several tasks.
final class Recorded: Sendable {
    private let lock = Mutex<[String]>([])
    func append(_ value: String) { lock.withLock { $0.append(value) } }
    var values: [String] { lock.withLock { $0 } }
}
