import Hourglass
import HourglassTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a consumer's handler saw, in order.
final class Seen: Sendable {
    private let values = Mutex<[String]>([])
    func append(_ value: String) { values.withLock { $0.append(value) } }
    var all: [String] { values.withLock { $0 } }
}

func exists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

/// The test kit, through its public API only: what a user's tests can rely on.
@Suite("HourglassTesting: an engine under test, a manual clock, waiting without sleeping")
struct HourglassTestingTests {
    @Test("advance(by:) then takeDeliveries(): exactly what became due, at its millisecond, in order")
    func advanceAndTake() async throws {
        let timers = try await HourglassTestEngine.open(.memory)
        let start = HourglassTestEngine.defaultStart
        #expect(timers.clock.deadline == start)
        try await timers.engine.schedule(id: "b", after: .seconds(1800))
        try await timers.engine.schedule(id: "a", after: .seconds(60))
        await timers.advance(by: .milliseconds(59_999))
        #expect(await timers.takeDeliveries().isEmpty)
        await timers.advance(by: .milliseconds(1))
        let first = await timers.takeDeliveries()
        #expect(first.map(\.id) == ["a"])
        #expect(first.first?.firedAt == start + .seconds(60))
        #expect(try await timers.engine.ack(first[0]), "acknowledged: not delivered again after the redelivery timeout")
        await timers.advance(to: start + .seconds(3600))
        #expect(await timers.takeDeliveries().map(\.id) == ["b"])
        #expect(await timers.takeDeliveries().isEmpty, "taken once")
        try await timers.close()
    }

    @Test("over a temporary directory, reopen() is a restart: pending timers come back, in-flight ones are delivered again")
    func reopenIsARestart() async throws {
        let timers = try await HourglassTestEngine.open { $0.durability = .always }
        let path = try #require(timers.directory?.path)
        #expect(timers.directory?.files().contains("LOCK") == true)
        try await timers.engine.schedule(id: "in-flight", after: .seconds(1), payload: [1])
        try await timers.engine.schedule(id: "pending", after: .seconds(60))
        try await timers.engine.schedule(id: "done", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        let fired = await timers.takeDeliveries()
        #expect(Set(fired.map(\.id)) == ["in-flight", "done"])
        for delivery in fired where delivery.id == "done" { #expect(try await timers.engine.ack(delivery)) }

        let old = timers.engine
        let reopened = try await timers.reopen()
        #expect(reopened !== old && timers.engine === reopened)
        let again = await timers.takeDeliveries()
        #expect(again.map(\.id) == ["in-flight"], "delivered again at once after the restart; the acknowledged one never")
        #expect(again.first?.attempt == 2 && again.first?.payload == [1])
        #expect(try await timers.engine.ack(again[0]))
        await timers.advance(by: .seconds(59))
        #expect(await timers.takeDeliveries().map(\.id) == ["pending"])
        try await timers.close()
        #expect(!exists(path), "close() removes the directory")
        try await timers.close()  // again: nothing happens
    }

    @Test("reopen(_:) can change the configuration; in memory it starts from nothing")
    func reopenInMemory() async throws {
        let timers = try await HourglassTestEngine.open(.memory)
        try await timers.engine.schedule(id: "gone", after: .seconds(1))
        try await timers.reopen { $0.maxAttempts = 3 }
        #expect(timers.configuration.maxAttempts == 3)
        await timers.advance(by: .seconds(1))
        #expect(await timers.takeDeliveries().isEmpty, "memory does not survive a restart")
        try await timers.close()
    }

    @Test("open refuses an invalid configuration with the engine's typed error")
    func invalidConfiguration() async throws {
        await #expect(throws: HourglassError.self) {
            _ = try await HourglassTestEngine.open { $0.maxInFlight = 0 }
        }
        do {
            _ = try await HourglassTestEngine.open(.memory) { $0.tick = .microseconds(10) }
            Issue.record("a 10 µs tick was accepted")
        } catch {
            guard case let .invalidConfiguration(message) = error else { Issue.record("\(error)"); return }
            #expect(message.hasPrefix("tick"))
        }
    }

    @Test("waitUntilHandled(): a handler's acks, retries and a retry's next attempt, with no sleep and no polling")
    func waitUntilHandledFollowsOutcomes() async throws {
        let timers = try await HourglassTestEngine.open(.memory)
        let engine = timers.engine
        let seen = Seen()
        let consumer = Task {
            await engine.consume(concurrency: 3) { delivery in
                seen.append("\(delivery.id)#\(delivery.attempt)")
                if delivery.id == "check" && delivery.attempt < 3 { return .retry(after: .seconds(60)) }
                if delivery.id == "soon" && delivery.attempt == 1 { return .retry(after: .zero) }
                return .ack
            }
        }
        for i in 0 ..< 20 { try await engine.schedule(id: TimerID("order-\(i)"), after: .seconds(1)) }
        try await engine.schedule(id: "check", after: .seconds(1))
        try await engine.schedule(id: "soon", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        await timers.waitUntilHandled()
        #expect(seen.all.count == 23, "20 orders, check#1, soon#1 and soon#2 (a retry already due)")
        #expect(seen.all.contains("soon#2"))
        var stats = await engine.stats()
        #expect(stats.acknowledged == 21 && stats.inFlight == 0 && stats.pending == 1, "\(stats)")
        await timers.advance(by: .seconds(60))
        await timers.waitUntilHandled()
        await timers.advance(by: .seconds(60))
        await timers.waitUntilHandled()
        #expect(seen.all.filter { $0.hasPrefix("check#") } == ["check#1", "check#2", "check#3"])
        stats = await engine.stats()
        #expect(stats.acknowledged == 22 && stats.pending == 0 && stats.inFlight == 0)
        try await timers.close()
        await consumer.value
    }

    @Test("waitUntilHandled() waits through the in-flight window: due timers beyond it fire as handlers acknowledge")
    func waitUntilHandledThroughTheWindow() async throws {
        let timers = try await HourglassTestEngine.open(.memory) { $0.maxInFlight = 2 }
        let engine = timers.engine
        let seen = Seen()
        let consumer = Task {
            await engine.consume { delivery in
                seen.append(delivery.id.description)
                return .ack
            }
        }
        for i in 0 ..< 10 { try await engine.schedule(id: TimerID("t\(i)"), after: .seconds(Int64(1 + i))) }
        await timers.advance(by: .seconds(10))
        await timers.waitUntilHandled()
        #expect(seen.all == (0 ..< 10).map { "t\($0)" })
        try await timers.close()
        await consumer.value
    }

    @Test("waitUntilHandled() under at most once counts a delivery cancelled before its take as settled")
    func waitUntilHandledAtMostOnce() async throws {
        let timers = try await HourglassTestEngine.open(.memory) { $0.deliveryMode = .atMostOnce }
        let engine = timers.engine
        try await engine.schedule(id: "cancelled", after: .seconds(1))
        try await engine.schedule(id: "kept", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        #expect(try await engine.cancel(id: "cancelled"), "fired, not yet taken: the cancel wins")
        let seen = Seen()
        let consumer = Task {
            await engine.consume { delivery in
                seen.append(delivery.id.description)
                return .ack
            }
        }
        await timers.waitUntilHandled()
        #expect(seen.all == ["kept"])
        try await timers.close()
        await consumer.value
    }

    @Test("takeDeliveries() under at most once takes each delivery: it is not delivered again after a restart")
    func takeDeliveriesAtMostOnce() async throws {
        let timers = try await HourglassTestEngine.open { $0.deliveryMode = .atMostOnce }
        try await timers.engine.schedule(id: "once", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        #expect(await timers.takeDeliveries().map(\.id) == ["once"])
        try await timers.reopen()
        #expect(await timers.takeDeliveries().isEmpty)
        #expect(await timers.engine.stats().pending == 0)
        try await timers.close()
    }

    @Test("stopDeliveries(): consume returns once its handler finishes, the handler's ack still lands, the rest waits for a reopen")
    func stopDeliveries() async throws {
        let timers = try await HourglassTestEngine.open { $0.durability = .always }
        let engine = timers.engine
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let consumer = Task {
            await engine.consume { delivery in
                startedContinuation.yield()
                for await _ in release { break }
                return .ack
            }
        }
        try await engine.schedule(id: "handled", after: .seconds(1))
        try await engine.schedule(id: "buffered", after: .seconds(2))
        await timers.advance(by: .seconds(1))
        for await _ in started { break }  // the handler holds "handled"
        await timers.advance(by: .seconds(1))
        #expect(await engine.stats().buffered == 1)
        engine.stopDeliveries()
        #expect(engine.deliveriesStopped)
        #expect(await engine.stats().buffered == 0, "the buffered delivery is dropped: still in flight in the log")
        releaseContinuation.yield()
        await consumer.value  // consume returned: its handler finished and the ack was applied
        var stats = await engine.stats()
        #expect(stats.acknowledged == 1 && stats.inFlight == 1)
        try await engine.schedule(id: "later", after: .seconds(1))  // the engine still takes changes
        await timers.advance(by: .seconds(1))
        var iterator = engine.deliveries.makeAsyncIterator()
        #expect(await iterator.next() == nil, "deliveries stay ended")
        await timers.waitUntilHandled()  // returns at once: deliveries have ended

        try await timers.reopen()
        let again = await timers.takeDeliveries()
        #expect(Set(again.map(\.id.description)) == ["buffered", "later"])
        #expect(again.first { $0.id == "buffered" }?.attempt == 2)
        stats = await timers.engine.stats()
        #expect(stats.inFlight == 2 && stats.pending == 0, "\"handled\" was acknowledged before the stop took effect on it")
        try await timers.close()
    }

    @Test("TemporaryDirectory: a fresh empty directory per instance; remove() deletes it with its files")
    func temporaryDirectory() async throws {
        let one = TemporaryDirectory("kit")
        let two = TemporaryDirectory("kit")
        #expect(one != two && one.path.contains("/kit-"))
        #expect(one.files().isEmpty)
        let engine = try await HourglassEngine.open(.directory(one.path), clock: ManualClock())
        try await engine.close()
        #expect(one.files().contains("LOCK"))
        one.remove()
        two.remove()
        #expect(!exists(one.path) && !exists(two.path))
        #expect(one.files().isEmpty)
    }

    @Test("ManualClock: set(to:) moves either way and wakes the engine; a clock set back fires nothing early")
    func manualClockSetsBothWays() async throws {
        let clock = ManualClock(now: Deadline(millisecondsSinceEpoch: 10_000))
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        try await engine.schedule(id: "t", at: Deadline(millisecondsSinceEpoch: 20_000))
        clock.set(to: Deadline(millisecondsSinceEpoch: 5_000))
        #expect(await engine.takeDeliveries().isEmpty)
        clock.set(to: 19_999)
        #expect(await engine.takeDeliveries().isEmpty)
        clock.set(to: Deadline(millisecondsSinceEpoch: 20_000))
        #expect(await engine.takeDeliveries().map(\.id) == ["t"])
        #expect(clock.isManual)
        try await engine.close()
    }
}
