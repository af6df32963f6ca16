import Hourglass
import Synchronization

/// An engine under test: a ``ManualClock``, a temporary directory (or memory), and the few
/// moves a test makes: move time, see what fired, restart, clean up.
///
/// ```swift
/// import Hourglass
/// import HourglassTesting
/// import Testing
///
/// @Test func unpaidOrderIsClosedAfter30Minutes() async throws {
///     let timers = try await HourglassTestEngine.open()
///     try await timers.engine.schedule(id: "order-42", after: .seconds(1800))
///
///     await timers.advance(by: .seconds(1799))
///     #expect(await timers.takeDeliveries().isEmpty)
///     await timers.advance(by: .seconds(1))
///     #expect(await timers.takeDeliveries().map(\.id) == ["order-42"])
///
///     try await timers.close()   // closes the engine, removes the directory
/// }
/// ```
///
/// Nothing here sleeps: moving the clock wakes the engine, and every method that reports what
/// fired first lets the engine fire everything due at the clock's time. Tests are
/// deterministic whatever the machine's load.
public final class HourglassTestEngine: Sendable {
    /// Where the engine under test keeps its timers.
    public enum Storage: Sendable, Hashable {
        /// In memory: fastest; `reopen()` then starts from nothing, as a restart would.
        case memory
        /// In a fresh ``TemporaryDirectory`` (the default), removed by `close()`: the real log,
        /// checkpoints and recovery, so that `reopen()` is a restart that keeps every timer.
        case temporaryDirectory
    }

    /// Where the clock starts unless a test says otherwise: 2025-11-22 06:00:00 UTC.
    public static let defaultStart = Deadline(millisecondsSinceEpoch: 1_763_791_200_000)

    /// The engine's clock. Move it with ``advance(by:)`` (which also waits for what fell due),
    /// or directly.
    public let clock: ManualClock
    /// The directory the engine keeps its timers in; nil in memory.
    public let directory: TemporaryDirectory?

    private struct State: Sendable {
        var engine: HourglassEngine
        var configuration: Configuration
    }

    private let state: Mutex<State>

    /// The engine under test (a new one after each ``reopen(_:)``).
    public var engine: HourglassEngine { state.withLock { $0.engine } }

    /// The configuration the current engine was opened with.
    public var configuration: Configuration { state.withLock { $0.configuration } }

    private init(clock: ManualClock, directory: TemporaryDirectory?, engine: HourglassEngine, configuration: Configuration) {
        self.clock = clock
        self.directory = directory
        self.state = Mutex(State(engine: engine, configuration: configuration))
    }

    /// Opens an engine with a ``ManualClock`` reading `start`.
    ///
    /// Over a temporary directory the configuration starts as `Configuration.directory(path)`
    /// with the library's defaults, except for smaller log segments (4 MiB instead of 64 MiB,
    /// so that many tests can run at once); `configure` changes whatever the test needs (the
    /// durability policy, `maxAttempts`, `redeliveryTimeout`, ...). Don't change `storage`:
    /// the harness owns it.
    ///
    /// - Throws: what `HourglassEngine.open(_:clock:)` throws (an invalid configuration, ...);
    ///   the temporary directory is removed first.
    public static func open(
        _ storage: Storage = .temporaryDirectory,
        startingAt start: Deadline = defaultStart,
        configure: (inout Configuration) -> Void = { _ in }
    ) async throws(HourglassError) -> HourglassTestEngine {
        let clock = ManualClock(now: start)
        var configuration: Configuration
        let directory: TemporaryDirectory?
        switch storage {
        case .memory:
            directory = nil
            configuration = .memory
        case .temporaryDirectory:
            let made = TemporaryDirectory("hourglass-test")
            directory = made
            configuration = .directory(made.path)
            configuration.segmentBytes = 4 << 20
        }
        configure(&configuration)
        do throws(HourglassError) {
            let engine = try await HourglassEngine.open(configuration, clock: clock)
            return HourglassTestEngine(clock: clock, directory: directory, engine: engine, configuration: configuration)
        } catch {
            directory?.remove()
            throw error
        }
    }

    /// Moves the clock forward (or back, with a negative duration) and returns once the engine
    /// has fired everything due at the new time: each delivery is then buffered for a consumer,
    /// or already handed to one. See the clock's `advance(by:)` for the rounding.
    public func advance(by duration: Duration) async {
        clock.advance(by: duration)
        _ = await engine.stats()
    }

    /// Sets the clock to `deadline` and returns once the engine has fired everything due then.
    public func advance(to deadline: Deadline) async {
        clock.set(to: deadline)
        _ = await engine.stats()
    }

    /// Takes every delivery fired so far and not yet taken (see
    /// `HourglassEngine.takeDeliveries()`): for tests that play the consumer themselves.
    public func takeDeliveries() async -> [Delivery] {
        await engine.takeDeliveries()
    }

    /// Waits until every delivery made so far has been handled by `consume` with its outcome
    /// applied (see `HourglassEngine.waitUntilHandled()`): for tests that run a handler.
    public func waitUntilHandled() async {
        await engine.waitUntilHandled()
    }

    /// Closes the engine and opens the directory again, as a restart of the process would:
    /// every timer pending or in flight at the close comes back (in flight ones are delivered
    /// again at once, with the next attempt number). `configure` may change the configuration
    /// for the new engine (not its storage). Consumers of the old engine end; start them again
    /// on the new ``engine``. In memory the new engine starts empty.
    ///
    /// - Returns: the new engine (also ``engine`` from now on).
    /// - Throws: what `close()` or `open` throws; the harness then keeps the old engine.
    @discardableResult
    public func reopen(_ configure: (inout Configuration) -> Void = { _ in }) async throws(HourglassError) -> HourglassEngine {
        var configuration = self.configuration
        configure(&configuration)
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        state.withLock { state in
            state.engine = reopened
            state.configuration = configuration
        }
        return reopened
    }

    /// Closes the engine and removes the temporary directory. Call it at the end of every test
    /// (a `defer` cannot await); calling it again does nothing.
    ///
    /// - Throws: what `HourglassEngine.close()` throws (the directory is removed all the same).
    public func close() async throws(HourglassError) {
        defer { directory?.remove() }
        try await engine.close()
    }
}
