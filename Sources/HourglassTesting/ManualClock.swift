import Hourglass
import Synchronization

/// A clock that moves only when a test moves it: no test sleeps to wait for a timer.
///
/// Give it to `HourglassEngine.open(_:clock:)` (or let ``HourglassTestEngine`` make one). The
/// engine then never sleeps on real time: moving the clock wakes every engine that reads it,
/// and `HourglassEngine.stats()` (or ``Hourglass/HourglassEngine/takeDeliveries()``) returns
/// once everything due at the new time has fired. It may be moved backwards, like a wall clock
/// stepped by NTP: the engine never fires a timer early.
///
/// ```swift
/// let clock = ManualClock(now: Deadline(millisecondsSinceEpoch: 1_763_791_200_000))
/// let engine = try await HourglassEngine.open(.memory, clock: clock)
/// try await engine.schedule(id: "order-42", after: .seconds(1800))
/// clock.advance(by: .seconds(1800))
/// let fired = await engine.takeDeliveries()   // [order-42]
/// ```
public final class ManualClock: HourglassClock {
    private struct State {
        var now: Int64
        var handlers: [@Sendable () -> Void] = []
    }

    private let state: Mutex<State>

    /// A clock that reads `now` milliseconds since the Unix epoch until it is moved (by default
    /// 2025-11-22 06:00:00 UTC, ``HourglassTestEngine/defaultStart``).
    public init(now: Int64 = HourglassTestEngine.defaultStart.millisecondsSinceEpoch) { state = Mutex(State(now: now)) }

    /// A clock that reads `now` until it is moved.
    public convenience init(now: Deadline) { self.init(now: now.millisecondsSinceEpoch) }

    /// The clock's time, in milliseconds since the Unix epoch.
    public func now() -> Int64 { state.withLock { $0.now } }

    /// The clock's time as a `Deadline`.
    public var deadline: Deadline { Deadline(millisecondsSinceEpoch: now()) }

    /// Always true: the engine waits for the clock to be moved instead of sleeping.
    public var isManual: Bool { true }

    /// Registers a handler that runs after every move of the clock (engines register one when
    /// they open, to fire what became due).
    public func onChange(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.handlers.append(handler) }
    }

    /// Moves the clock by `duration` (which may be negative), rounded up to whole milliseconds
    /// as `Deadline + Duration` rounds: toward the future (1.5 ms moves it 2 ms forward, -1.5 ms
    /// 1 ms back), so a clock advanced by a timer's delay has reached its deadline.
    ///
    /// Saturates: the clock stops at `Int64.max` (or `Int64.min`) instead of trapping or wrapping.
    public func advance(by duration: Duration) {
        move { $0 = (Deadline(millisecondsSinceEpoch: $0) + duration).millisecondsSinceEpoch }
    }

    /// Sets the clock to `milliseconds` since the epoch (forward or back).
    public func set(to milliseconds: Int64) { move { $0 = milliseconds } }

    /// Sets the clock to `deadline` (forward or back).
    public func set(to deadline: Deadline) { set(to: deadline.millisecondsSinceEpoch) }

    private func move(_ body: (inout Int64) -> Void) {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            body(&state.now)
            return state.handlers
        }
        for handler in handlers { handler() }
    }
}
