#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the engine reads the time.
///
/// Deadlines are wall-clock milliseconds since the Unix epoch. A clock that follows real time
/// (`SystemClock`) lets the engine sleep until the next deadline; a manual clock (HourglassTesting's
/// `ManualClock`) moves only when a test moves it, and tells the engine so.
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
    /// The system clock.
    public init() {}

    /// `CLOCK_REALTIME`, in milliseconds since the Unix epoch.
    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// False: the engine sleeps until the next deadline on real time.
    public var isManual: Bool { false }
    /// Does nothing: real time moves by itself.
    public func onChange(_ handler: @escaping @Sendable () -> Void) {}
}

/// Monotonic nanoseconds, for pacing and durations.
package func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
