import Hourglass
import HourglassTestSupport
import HourglassTesting
import Testing

@Suite("Recurring timers: every N and cron, one occurrence in flight, misfires, durability")
struct RecurringTests {
    static let start: Int64 = 1_763_791_200_000  // 2025-11-22T06:00:00Z

    func open(_ storage: HourglassTestEngine.Storage = .memory,
              _ configure: (inout Configuration) -> Void = { _ in }) async throws -> HourglassTestEngine {
        try await HourglassTestEngine.open(storage, startingAt: Deadline(millisecondsSinceEpoch: Self.start), configure: configure)
    }

    /// The deliveries made now, which must be exactly one.
    func one(_ timers: HourglassTestEngine, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Delivery {
        let deliveries = await timers.takeDeliveries()
        #expect(deliveries.count == 1, comment, sourceLocation: sourceLocation)
        return try #require(deliveries.first, comment, sourceLocation: sourceLocation)
    }

    @Test("every minute, three times: the payment pattern, each occurrence after the one before is acknowledged")
    func everyMinuteThreeTimes() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "payment-7", repeating: .every(.seconds(60), count: 3), payload: Array("ask".utf8))
        var occurrences: [Int64] = []
        for round in 1 ... 3 {
            await timers.advance(by: .milliseconds(59_999))
            #expect(await timers.takeDeliveries().isEmpty, "round \(round): not before its minute")
            await timers.advance(by: .milliseconds(1))
            let delivery = try await one(timers, "round \(round)")
            #expect(delivery.id == "payment-7" && delivery.payload == Array("ask".utf8) && delivery.attempt == 1)
            #expect(delivery.isRecurring && delivery.coalesced == 1)
            #expect(delivery.deadline == delivery.occurrence && delivery.firedAt == delivery.occurrence)
            occurrences.append(try #require(delivery.occurrence).millisecondsSinceEpoch)
            #expect(try await engine.ack(delivery))
        }
        #expect(occurrences == [Self.start + 60_000, Self.start + 120_000, Self.start + 180_000])
        await timers.advance(by: .seconds(3600))
        #expect(await timers.takeDeliveries().isEmpty, "three times, then done")
        let stats = await engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0 && stats.acknowledged == 3)
        try await timers.close()
    }

    @Test("one occurrence in flight at a time: an unacknowledged occurrence is redelivered, the next waits")
    func oneInFlight() async throws {
        let timers = try await open { $0.redeliveryTimeout = .seconds(30) }
        let engine = timers.engine
        try await engine.schedule(id: "sweep", repeating: .every(.seconds(10)))
        await timers.advance(by: .seconds(10))
        let first = try await one(timers)
        await timers.advance(by: .seconds(30))
        let again = try await one(timers, "redelivered, not the next occurrence")
        #expect(again.attempt == 2 && again.occurrence == first.occurrence, "the same occurrence, the next attempt")
        #expect(try await engine.ack(first) == false, "the first delivery's attempt is no longer in flight")
        #expect(try await engine.ack(again))
        #expect(try await engine.ack(again) == false, "a second ack of the same delivery does not skip an occurrence")
        // 40 s after the start: the next occurrence (at 20 s) is 20 s late, within the threshold.
        let second = try await one(timers, "the next occurrence, due already, fires at once")
        #expect(second.occurrence?.millisecondsSinceEpoch == Self.start + 20_000 && second.attempt == 1 && second.coalesced == 1)
        let staleFirst = try await engine.ack(first)
        let staleAgain = try await engine.ack(again)
        #expect(!staleFirst && !staleAgain, "acknowledgements of an earlier occurrence never match a later one")
        #expect(await engine.stats().inFlight == 1)
        try await timers.close()
    }

    @Test("misfire, fireOnceNow (the default): the due occurrences fire once, then the series goes on")
    func misfireFireOnceNow() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(10)))
        await timers.advance(by: .seconds(95))  // ten occurrences due at 10 ... 90 s: nine
        let delivery = try await one(timers)
        #expect(delivery.occurrence?.millisecondsSinceEpoch == Self.start + 90_000, "the latest due occurrence")
        #expect(delivery.coalesced == 9 && delivery.deadline == delivery.occurrence)
        #expect(await engine.stats().occurrencesCoalesced == 8)
        #expect(try await engine.ack(delivery))
        #expect(await timers.takeDeliveries().isEmpty, "the next one is in the future")
        await timers.advance(by: .seconds(5))
        let next = try await one(timers)
        #expect(next.occurrence?.millisecondsSinceEpoch == Self.start + 100_000 && next.coalesced == 1)
        try await timers.close()
    }

    @Test("misfire, fireAll: every missed occurrence, one after the other")
    func misfireFireAll() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(10), misfire: .fireAll))
        await timers.advance(by: .seconds(95))
        var occurrences: [Int64] = []
        for _ in 0 ..< 9 {
            let delivery = try await one(timers)
            #expect(delivery.coalesced == 1)
            occurrences.append(delivery.occurrence!.millisecondsSinceEpoch - Self.start)
            #expect(try await engine.ack(delivery))
        }
        #expect(occurrences == Array(stride(from: 10_000, through: 90_000, by: 10_000)))
        #expect(await timers.takeDeliveries().isEmpty)
        try await timers.close()
    }

    @Test("misfire, skip: the latest due occurrence fires if within the threshold, else the next future one")
    func misfireSkip() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(10), misfire: .skip))
        await timers.advance(by: .seconds(95))
        let delivery = try await one(timers)
        #expect(delivery.occurrence?.millisecondsSinceEpoch == Self.start + 90_000 && delivery.coalesced == 9, "5 s late: on time")
        #expect(await engine.stats().occurrencesSkipped == 8)
        try await timers.close()

        let strict = try await open { $0.misfireThreshold = .zero }
        try await strict.engine.schedule(id: "s", repeating: .every(.seconds(10), misfire: .skip))
        await strict.advance(by: .seconds(95))
        #expect(await strict.takeDeliveries().isEmpty, "all nine missed: nothing now")
        #expect(await strict.engine.stats().occurrencesSkipped == 9)
        await strict.advance(by: .seconds(5))
        let next = try await one(strict)
        #expect(next.occurrence?.millisecondsSinceEpoch == Self.start + 100_000 && next.coalesced == 10, "it reports the nine skipped")
        try await strict.close()
    }

    @Test("a count caps what a misfire folds, and skipping the last occurrences ends the series")
    func countAndMisfire() async throws {
        let timers = try await open { $0.misfireThreshold = .zero }
        try await timers.engine.schedule(id: "a", repeating: .every(.seconds(10), count: 3))
        try await timers.engine.schedule(id: "b", repeating: .every(.seconds(10), count: 3, misfire: .skip))
        await timers.advance(by: .seconds(100))
        let delivery = try await one(timers, "a fires once for its three; b's three were all missed")
        #expect(delivery.id == "a" && delivery.coalesced == 3 && delivery.occurrence?.millisecondsSinceEpoch == Self.start + 30_000)
        #expect(try await timers.engine.ack(delivery))
        let stats = await timers.engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0, "both series ended")
        try await timers.close()
    }

    @Test("a retry keeps the occurrence; out of attempts, the series goes on with the next occurrence")
    func retryAndExhaustion() async throws {
        let timers = try await open { $0.maxAttempts = 2 }
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(60)))
        await timers.advance(by: .seconds(60))
        let first = try await one(timers)
        #expect(try await engine.retry(first, after: .seconds(5)))
        await timers.advance(by: .seconds(5))
        let retried = try await one(timers)
        #expect(retried.attempt == 2 && retried.occurrence == first.occurrence && retried.deadline.millisecondsSinceEpoch == Self.start + 65_000)
        #expect(try await engine.retry(retried, after: .seconds(5)) == false, "the last attempt")
        #expect(await engine.stats().exhausted == 1)
        await timers.advance(by: .seconds(55))
        let next = try await one(timers, "the series goes on")
        #expect(next.occurrence?.millisecondsSinceEpoch == Self.start + 120_000 && next.attempt == 1)
        try await timers.close()
    }

    @Test("cancel ends a series; scheduling the id again replaces it")
    func cancelAndReplace() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(10)))
        await timers.advance(by: .seconds(10))
        _ = try await one(timers)
        #expect(try await engine.cancel(id: "s"), "in flight: cancelled")
        await timers.advance(by: .seconds(60))
        #expect(await timers.takeDeliveries().isEmpty)

        try await engine.schedule(id: "s", repeating: .every(.seconds(10)))
        try await engine.schedule(id: "s", repeating: .every(.seconds(25)), payload: [2])
        await timers.advance(by: .seconds(10))
        #expect(await timers.takeDeliveries().isEmpty, "the 10 s series was replaced")
        await timers.advance(by: .seconds(15))
        let replaced = try await one(timers)
        #expect(replaced.payload == [2] && replaced.occurrence?.millisecondsSinceEpoch == Self.start + 95_000)
        try await engine.schedule(id: "s", after: .seconds(1), payload: [3])
        #expect(try await engine.ack(replaced) == false, "replaced by a one-shot timer")
        await timers.advance(by: .seconds(1))
        let oneShot = try await one(timers)
        #expect(!oneShot.isRecurring && oneShot.occurrence == nil && oneShot.coalesced == 1 && oneShot.payload == [3])
        #expect(try await engine.ack(oneShot))
        await timers.advance(by: .seconds(100))
        #expect(await timers.takeDeliveries().isEmpty, "a one-shot timer does not recur")
        try await timers.close()
    }

    @Test("startingAt names the first occurrence; a past one is due at once")
    func startingAt() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "s", repeating: .every(.seconds(60)), startingAt: Deadline(millisecondsSinceEpoch: Self.start + 5_000))
        await timers.advance(by: .seconds(5))
        let first = try await one(timers)
        #expect(first.occurrence?.millisecondsSinceEpoch == Self.start + 5_000)
        #expect(try await engine.ack(first))
        await timers.advance(by: .seconds(60))
        #expect(try await one(timers).occurrence?.millisecondsSinceEpoch == Self.start + 65_000)
        try await timers.close()
    }

    @Test("cron: the next time the expression names, after each acknowledged occurrence")
    func cronEveryMinute() async throws {
        let timers = try await open()
        let engine = timers.engine
        try await engine.schedule(id: "c", repeating: .cron("0 * * * * *"))
        await timers.advance(by: .seconds(59))
        #expect(await timers.takeDeliveries().isEmpty)
        await timers.advance(by: .seconds(1))
        let first = try await one(timers)
        #expect(first.occurrence?.millisecondsSinceEpoch == Self.start + 60_000)
        #expect(try await engine.ack(first))
        await timers.advance(by: .seconds(60))
        #expect(try await one(timers).occurrence?.millisecondsSinceEpoch == Self.start + 120_000)
        try await timers.close()
    }

    /// Steps the clock to just before each expected occurrence (nothing fires) and to it (it
    /// fires, exactly then), acknowledging each.
    func expectOccurrences(_ timers: HourglassTestEngine, _ expected: [Int64], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for time in expected {
            await timers.advance(to: Deadline(millisecondsSinceEpoch: time - 1))
            #expect(await timers.takeDeliveries().isEmpty, "nothing before \(time)", sourceLocation: sourceLocation)
            await timers.advance(to: Deadline(millisecondsSinceEpoch: time))
            let delivery = try await one(timers, "at \(time)", sourceLocation: sourceLocation)
            #expect(delivery.occurrence?.millisecondsSinceEpoch == time && delivery.coalesced == 1, sourceLocation: sourceLocation)
            #expect(try await timers.engine.ack(delivery), sourceLocation: sourceLocation)
        }
    }

    @Test("cron across the spring change in New York: 02:30 does not occur on 2026-03-08, so that day has none")
    func cronSpringForward() async throws {
        let timers = try await HourglassTestEngine.open(.memory, startingAt: Deadline(millisecondsSinceEpoch: 1_772_798_400_000))  // 2026-03-06 12:00Z
        try await timers.engine.schedule(id: "nightly", repeating: .cron("30 2 * * *", timeZone: "America/New_York"))
        // 03-07 02:30 EST (07:30Z), then 03-09 02:30 EDT (06:30Z): none on the 8th.
        try await expectOccurrences(timers, [1_772_868_600_000, 1_773_037_800_000])
        try await timers.close()
    }

    @Test("cron across the autumn change in New York: 01:30 occurs twice on 2026-11-01 and fires once, the first time")
    func cronFallBack() async throws {
        let timers = try await HourglassTestEngine.open(.memory, startingAt: Deadline(millisecondsSinceEpoch: 1_793_361_600_000))  // 2026-10-30 12:00Z
        try await timers.engine.schedule(id: "nightly", repeating: .cron("0 30 1 * * ?", timeZone: "America/New_York"))
        // 10-31 01:30 EDT, 11-01 01:30 EDT (05:30Z; not again at 06:30Z, EST), 11-02 01:30 EST (06:30Z).
        try await expectOccurrences(timers, [1_793_424_600_000, 1_793_511_000_000, 1_793_601_000_000])
        try await timers.close()
    }

    @Test("an invalid cron expression is a typed error naming the field and position")
    func invalidCron() async throws {
        let timers = try await open()
        await #expect(throws: HourglassError.invalidCronExpression(field: "minute", position: 3, reason: "value 61 is outside 0...59")) {
            try await timers.engine.schedule(id: "c", repeating: .cron("0 61 * * * *"))
        }
        do {
            try await timers.engine.schedule(id: "c", repeating: .cron("0 0 30 2 *"))
            Issue.record("February 30 never occurs")
        } catch {
            guard case let .invalidCronExpression(field, _, reason) = error else { Issue.record("\(error)"); return }
            #expect(field == "day of month" && reason.contains("never"), "\(reason)")
        }
        #expect(await timers.engine.stats().pending == 0)
        try await timers.close()
    }

    @Test("at most once: taking an occurrence arms the next")
    func atMostOnce() async throws {
        let timers = try await open { $0.deliveryMode = .atMostOnce }
        try await timers.engine.schedule(id: "s", repeating: .every(.seconds(10), count: 2))
        var seen: [Int64] = []
        var iterator = timers.engine.deliveries.makeAsyncIterator()
        for _ in 0 ..< 2 {
            await timers.advance(by: .seconds(10))
            let delivery = try #require(await iterator.next())
            seen.append(delivery.occurrence!.millisecondsSinceEpoch - Self.start)
        }
        #expect(seen == [10_000, 20_000])
        await timers.advance(by: .seconds(100))
        let stats = await timers.engine.stats()
        #expect(stats.pending == 0 && stats.inFlight == 0 && stats.buffered == 0)
        try await timers.close()
    }

    @Test("bad recurrences are typed errors and change nothing")
    func errors() async throws {
        let timers = try await open { $0.maxPayloadBytes = 100 }
        let engine = timers.engine
        await #expect(throws: HourglassError.invalidRecurrence("the period of a recurring timer must be 1 ms ... 253402300799999 ms, not 0 ms")) {
            try await engine.schedule(id: "s", repeating: .every(.zero))
        }
        await #expect(throws: HourglassError.invalidRecurrence("the count of a recurring timer must be 1 ... 4294967295, not 0")) {
            try await engine.schedule(id: "s", repeating: .every(.seconds(1), count: 0))
        }
        await #expect(throws: HourglassError.payloadTooLarge(length: 101, limit: 100)) {
            try await engine.schedule(id: "s", repeating: .every(.seconds(1)), payload: [UInt8](repeating: 0, count: 101))
        }
        await #expect(throws: HourglassError.emptyID) { try await engine.schedule(id: "", repeating: .every(.seconds(1))) }
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: -1)) {
            try await engine.schedule(id: "s", repeating: .every(.seconds(1)), startingAt: Deadline(millisecondsSinceEpoch: -1))
        }
        do {
            try await engine.schedule(id: "s", repeating: .cron("0 0 * * *", timeZone: "Nowhere/Zone"))
            Issue.record("an unknown zone is refused")
        } catch {
            guard case let .unknownTimeZone(name, _) = error else { Issue.record("\(error)"); return }
            #expect(name == "Nowhere/Zone")
        }
        #expect(await engine.stats().pending == 0)
        try await timers.close()
    }

    @Test("durable: a series survives close and reopen, from the log and from a checkpoint, at the occurrence it had reached")
    func durableAcrossRestarts() async throws {
        let timers = try await open(.temporaryDirectory)
        try await timers.engine.schedule(id: "s", repeating: .every(.seconds(60), count: 4), payload: [9])
        try await timers.engine.schedule(id: "c", repeating: .cron("0 * * * * *", timeZone: "UTC"))
        await timers.advance(by: .seconds(60))
        for delivery in await timers.takeDeliveries() { #expect(try await timers.engine.ack(delivery)) }
        // Reopen from the log: both at their second occurrence.
        try await timers.reopen()
        await timers.advance(by: .seconds(60))
        var deliveries = await timers.takeDeliveries().sorted { $0.id.description < $1.id.description }
        #expect(deliveries.map(\.occurrence?.millisecondsSinceEpoch) == [Self.start + 120_000, Self.start + 120_000])
        #expect(deliveries.first { $0.id == "s" }?.payload == [9])
        // In flight at a checkpoint and a close: delivered again after the reopen, the same occurrence.
        try await timers.engine.checkpoint()
        try await timers.reopen()
        deliveries = await timers.takeDeliveries().sorted { $0.id.description < $1.id.description }
        #expect(deliveries.count == 2 && deliveries.allSatisfy { $0.attempt == 2 && $0.occurrence?.millisecondsSinceEpoch == Self.start + 120_000 })
        for delivery in deliveries { #expect(try await timers.engine.ack(delivery)) }
        try await timers.engine.checkpoint()
        try await timers.reopen()
        await timers.advance(by: .seconds(60))
        deliveries = await timers.takeDeliveries()
        #expect(deliveries.count == 2 && deliveries.allSatisfy { $0.occurrence?.millisecondsSinceEpoch == Self.start + 180_000 })
        let s = try #require(deliveries.first { $0.id == "s" })
        #expect(try await timers.engine.ack(s))
        // The fourth and last occurrence of "s".
        await timers.advance(by: .seconds(60))
        let last = try #require(await timers.takeDeliveries().first { $0.id == "s" })
        #expect(last.occurrence?.millisecondsSinceEpoch == Self.start + 240_000)
        #expect(try await timers.engine.ack(last))
        try await timers.reopen()
        await timers.advance(by: .seconds(600))
        #expect(await timers.takeDeliveries().allSatisfy { $0.id == "c" }, "s is done, for good")
        try await timers.close()
    }

    @Test("a misfire decided at firing replays as the same coalesced occurrence after a restart")
    func coalescedOccurrenceIsDurable() async throws {
        let timers = try await open(.temporaryDirectory)
        try await timers.engine.schedule(id: "s", repeating: .every(.seconds(10)))
        await timers.advance(by: .seconds(95))
        let delivery = try await one(timers)
        #expect(delivery.coalesced == 9)
        try await timers.reopen()
        let again = try await one(timers, "in flight at the close: delivered again at the open")
        #expect(again.attempt == 2 && again.occurrence == delivery.occurrence && again.coalesced == 9)
        #expect(try await timers.engine.ack(again))
        await timers.advance(by: .seconds(200))
        let next = try await one(timers, "the next occurrence after 90 s is overdue by far: coalesced again")
        #expect(next.occurrence?.millisecondsSinceEpoch == Self.start + 290_000 && next.coalesced == 20)
        try await timers.close()
    }

    @Test("inspect shows a series' rule, occurrence and count, and its payload without the engine's state")
    func inspection() async throws {
        let timers = try await open(.temporaryDirectory)
        try await timers.engine.schedule(id: "s", repeating: .every(.seconds(60), count: 3, misfire: .skip), payload: [1, 2])
        let path = try #require(timers.directory?.path)
        try await timers.engine.close()
        let inspection = try HourglassEngine.inspect(directory: path, includeTimers: true)
        let info = try #require(inspection.timers.first)
        #expect(info.payload == [1, 2] && info.recurrence == "every 60000 ms, misfire skip" && info.remaining == 3)
        #expect(info.occurrence?.millisecondsSinceEpoch == Self.start + 60_000)
        try await timers.close()
    }
}
