import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the engine reads the time.
///
/// Deadlines are wall-clock milliseconds since the Unix epoch. A clock that follows real time
/// (`SystemClock`) lets the engine sleep until the next deadline; a manual clock (`ManualClock`)
/// moves only when a test moves it, and tells the engine so.
public protocol HourglassClock: Sendable {
    /// Wall-clock time in milliseconds since the Unix epoch.
    func now() -> Int64
    /// Whether time moves only when `onChange` handlers are called (a test clock). The engine
    /// then never sleeps on real time.
    var isManual: Bool { get }
    /// Registers a handler to call whenever a manual clock is moved; real clocks ignore it.
    func onChange(_ handler: @escaping @Sendable () -> Void)
}

/// The system's wall clock (`CLOCK_REALTIME`).
public struct SystemClock: HourglassClock {
    public init() {}

    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    public var isManual: Bool { false }
    public func onChange(_ handler: @escaping @Sendable () -> Void) {}
}

/// A clock that moves only when told to, for deterministic tests: no test sleeps to wait for a
/// timer. Moving it wakes every engine that reads it. It may be moved backwards, like a wall
/// clock stepped by NTP.
public final class ManualClock: HourglassClock {
    private struct State {
        var now: Int64
        var handlers: [@Sendable () -> Void] = []
    }

    private let state: Mutex<State>

    public init(now: Int64 = 1_763_791_200_000) { state = Mutex(State(now: now)) }

    public convenience init(now: Deadline) { self.init(now: now.millisecondsSinceEpoch) }

    public func now() -> Int64 { state.withLock { $0.now } }
    public var isManual: Bool { true }

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

    /// Sets the clock to `milliseconds` since the epoch.
    public func set(to milliseconds: Int64) { move { $0 = milliseconds } }

    private func move(_ body: (inout Int64) -> Void) {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            body(&state.now)
            return state.handlers
        }
        for handler in handlers { handler() }
    }
}

/// Monotonic nanoseconds, for pacing and durations.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
