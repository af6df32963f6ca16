import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting

/// The rule for out-of-range time arithmetic (Docs/OPERATIONS.md, "Out-of-range values"): sums
/// of times saturate at the Int64 bounds; what is then out of range is refused with a typed error.
@Suite("Overflow: time arithmetic saturates, configuration bounds are refused")
struct OverflowTests {
    static let start: Int64 = 1_763_791_200_000

    // MARK: Deadline + Duration

    @Test("Deadline + Duration saturates at Int64.max instead of wrapping before the epoch")
    func deadlinePlusHugeDurationSaturates() {
        #expect((Deadline.latest + .seconds(Int64.max)).millisecondsSinceEpoch == Int64.max)
        #expect((Deadline(millisecondsSinceEpoch: Int64.max) + .milliseconds(1)).millisecondsSinceEpoch == Int64.max)
        #expect((Deadline(millisecondsSinceEpoch: Self.start) + .seconds(Int64.max / 1000)).millisecondsSinceEpoch == Int64.max)
    }

    @Test("Deadline + a hugely negative Duration saturates at Int64.min instead of wrapping past the end")
    func deadlinePlusHugeNegativeDurationSaturates() {
        #expect((Deadline(millisecondsSinceEpoch: -1) + .seconds(Int64.min)).millisecondsSinceEpoch == Int64.min)
        #expect((Deadline(millisecondsSinceEpoch: Int64.min) + .milliseconds(-1)).millisecondsSinceEpoch == Int64.min)
        // Whole seconds that fit in milliseconds, and a fraction that takes the sum past the bound.
        let justPastTheBound = Duration.seconds(Int64.min / 1000) - .milliseconds(900)
        #expect((Deadline.earliest + justPastTheBound).millisecondsSinceEpoch == Int64.min)
    }

    @Test("Deadline + Duration rounds up to whole milliseconds, negative durations toward the future too")
    func deadlinePlusNegativeDurationRoundsUp() {
        let base = Deadline(millisecondsSinceEpoch: 1000)
        #expect((base + .milliseconds(-1500)).millisecondsSinceEpoch == -500)
        #expect((base + .seconds(-2)).millisecondsSinceEpoch == -1000)
        #expect((base + .nanoseconds(-1_500_000)).millisecondsSinceEpoch == 999)
        #expect((base + .nanoseconds(1_500_000)).millisecondsSinceEpoch == 1002)
        #expect((base + .nanoseconds(1)).millisecondsSinceEpoch == 1001)
        #expect((base + .nanoseconds(-1)).millisecondsSinceEpoch == 1000)
    }

    @Test("schedule(id:at:) refuses a saturated deadline with deadlineOutOfRange, and schedules nothing")
    func saturatedDeadlineIsRefused() async throws {
        let engine = try await HourglassEngine.open(.memory, clock: ManualClock(now: Self.start))
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: Int64.max)) {
            try await engine.schedule(id: "far", at: Deadline(millisecondsSinceEpoch: Self.start) + .seconds(Int64.max))
        }
        await #expect(throws: HourglassError.deadlineOutOfRange(milliseconds: Int64.min)) {
            try await engine.schedule(id: "early", at: Deadline(millisecondsSinceEpoch: -1) + .seconds(Int64.min))
        }
        #expect(await engine.stats().pending == 0)
        try await engine.close()
    }

    // MARK: ManualClock.advance(by:)

    @Test("ManualClock.advance(by:) saturates at Int64.max instead of trapping")
    func manualClockSaturatesForward() {
        let clock = ManualClock(now: Self.start)
        clock.advance(by: .seconds(Int64.max))
        #expect(clock.now() == Int64.max)
        clock.advance(by: .seconds(1))
        #expect(clock.now() == Int64.max)
    }

    @Test("ManualClock.advance(by:) moving back by a huge amount saturates at Int64.min")
    func manualClockSaturatesBackward() {
        let clock = ManualClock(now: Self.start)
        clock.advance(by: .seconds(Int64.min))
        #expect(clock.now() == Self.start + Int64.min)
        clock.advance(by: .seconds(Int64.min))
        #expect(clock.now() == Int64.min)
        clock.advance(by: .milliseconds(-1))
        #expect(clock.now() == Int64.min)
    }

    @Test("ManualClock.advance(by:) rounds as Deadline + Duration does: up, toward the future")
    func manualClockRoundsLikeDeadlines() {
        let clock = ManualClock(now: 1000)
        clock.advance(by: .microseconds(1))
        #expect(clock.now() == 1001)
        clock.advance(by: .nanoseconds(1_500_000))
        #expect(clock.now() == 1003)
        clock.advance(by: .nanoseconds(-1_500_000))
        #expect(clock.now() == 1002)
        clock.advance(by: .milliseconds(-2))
        #expect(clock.now() == 1000)
    }

    @Test("a timer scheduled after a sub-millisecond delay fires once the clock is advanced by that delay")
    func subMillisecondDelayFiresAfterTheSameAdvance() async throws {
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        try await engine.schedule(id: "soon", after: .microseconds(1500))
        clock.advance(by: .microseconds(1500))
        #expect(ids(await engine.takeDeliveries()) == ["soon"])
        try await engine.close()
    }

    // MARK: Configuration bounds

    func refusal(_ configure: (inout Configuration) -> Void) async -> String? {
        var configuration = Configuration.memory
        configure(&configuration)
        do throws(HourglassError) {
            let engine = try await HourglassEngine.open(configuration, clock: ManualClock(now: Self.start))
            try? await engine.close()
            return nil
        } catch {
            guard case let .invalidConfiguration(message) = error else { return "unexpected error: \(error)" }
            return message
        }
    }

    @Test("a redeliveryTimeout over Configuration.longestDuration is refused, naming the field")
    func hugeRedeliveryTimeoutIsRefused() async throws {
        let message = try #require(await refusal { $0.redeliveryTimeout = .seconds(Int64.max) })
        #expect(message.hasPrefix("redeliveryTimeout must be at most 100 years"))
        let justOver = try #require(await refusal { $0.redeliveryTimeout = Configuration.longestDuration + .nanoseconds(1) })
        #expect(justOver.hasPrefix("redeliveryTimeout"))
        #expect(await refusal { $0.redeliveryTimeout = Configuration.longestDuration } == nil)
    }

    @Test("a checkpointInterval over Configuration.longestDuration is refused, naming the field")
    func hugeCheckpointIntervalIsRefused() async throws {
        let message = try #require(await refusal { $0.checkpointInterval = .seconds(Int64.max) })
        #expect(message.hasPrefix("checkpointInterval must be at most 100 years"))
        #expect(await refusal { $0.checkpointInterval = Configuration.longestDuration } == nil)
    }

    @Test("a sync interval over Configuration.longestDuration is refused, naming the setting")
    func hugeSyncIntervalIsRefused() async throws {
        let message = try #require(await refusal { $0.durability = .interval(.seconds(Int64.max)) })
        #expect(message.hasPrefix("the sync interval (durability .interval) must be at most 100 years"))
    }

    @Test("a sync interval under 1 ms is refused, naming the setting; a fractional one above is kept")
    func tinySyncIntervalIsRefused() async throws {
        let message = try #require(await refusal { $0.durability = .interval(.microseconds(999)) })
        #expect(message.hasPrefix("the sync interval (durability .interval) must be at least 1 ms"))
        #expect(await refusal { $0.durability = .interval(.zero) } != nil)
        #expect(await refusal { $0.durability = .interval(.milliseconds(-5)) } != nil)
        #expect(await refusal { $0.durability = .interval(.microseconds(1500)) } == nil)
        #expect(await refusal { $0.durability = .interval(Configuration.longestDuration) } == nil)
    }

    @Test("Durability's description spells the policy as the command line does")
    func durabilityDescription() {
        #expect(Configuration.Durability.always.description == "always")
        #expect(Configuration.Durability.none.description == "none")
        #expect(Configuration.Durability.interval(.milliseconds(10)).description == "interval:10")
        #expect(Configuration.Durability.interval(.seconds(2)).description == "interval:2000")
        #expect(Configuration.Durability.interval(.microseconds(1500)).description.hasPrefix("interval:"))
        #expect(Configuration.Durability.interval(.microseconds(1500)).description != "interval:1")
    }

    @Test("a tick that is not a whole number of milliseconds from 1 ms to 60 s is refused, naming the field")
    func badTickIsRefused() async throws {
        for tick: Duration in [.zero, .microseconds(500), .microseconds(1500), .seconds(61), .milliseconds(-1), .seconds(Int64.max)] {
            let message = try #require(await refusal { $0.tick = tick }, "tick \(tick)")
            #expect(message.hasPrefix("tick must be a whole number of milliseconds from 1 ms to 60 s"), "tick \(tick): \(message)")
        }
        for tick: Duration in [.milliseconds(1), .milliseconds(10), .seconds(60)] {
            #expect(await refusal { $0.tick = tick } == nil, "tick \(tick)")
        }
    }

    @Test("a 10 ms tick fires a timer at the first tick at or after its deadline")
    func coarseTickRoundsUp() async throws {
        let clock = ManualClock(now: Self.start)
        var configuration = Configuration.memory
        configuration.tick = .milliseconds(10)
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "coarse", after: .milliseconds(13))
        clock.advance(by: .milliseconds(19))
        #expect(await engine.takeDeliveries().isEmpty, "the deadline's tick is +20 ms")
        clock.advance(by: .milliseconds(1))
        #expect(ids(await engine.takeDeliveries()) == ["coarse"])
        try await engine.close()
    }

    @Test("Configuration.longestDuration is 100 years and leaves any valid deadline plus it far inside Int64")
    func longestDurationLeavesRoom() {
        #expect(Configuration.longestDuration == .seconds(3_155_760_000))
        let sum = Deadline.latest + Configuration.longestDuration
        #expect(sum.millisecondsSinceEpoch == Deadline.latest.millisecondsSinceEpoch + 3_155_760_000_000)
        #expect(sum.millisecondsSinceEpoch < Int64.max / 1000)
    }
}
