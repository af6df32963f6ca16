import Hourglass
import Logging
import ServiceLifecycle
import Synchronization

/// An engine's consumer as a swift-service-lifecycle `Service`: run it in a `ServiceGroup` next
/// to your HTTP server, and a graceful shutdown (SIGTERM) stops it without losing a timer.
///
/// ```swift
/// let engine = try await HourglassEngine.open(.directory("/var/lib/orders/timers", durability: .always))
/// let timers = HourglassService(engine: engine, concurrency: 8, logger: logger) { delivery in
///     try await orders.closeIfUnpaid(delivery.id.string!)   // idempotent: attempt may be > 1
///     return .ack
/// }
/// let group = ServiceGroup(services: [httpServer, timers], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// `run()` hands every delivery to the handler (as `HourglassEngine.consume` does: up to
/// `concurrency` at once; `.ack`, `.retry(after:)` or `.leave`; a handler that throws leaves the
/// timer in flight) until the service group shuts down gracefully. Then it:
///
/// 1. stops taking deliveries (`HourglassEngine.stopDeliveries()`): what fires from then on
///    stays in flight and is delivered again when the directory is next opened;
/// 2. lets the handlers that are running finish, and applies their outcomes, for at most
///    `handlerGracePeriod`; handlers still running then are cancelled (task cancellation), and
///    their timers stay in flight;
/// 3. closes the engine (everything applied is synced; the directory is released) and returns.
///
/// Nothing acknowledged is lost, and nothing taken is lost either: a delivery whose handler did
/// not finish is delivered again after the restart, with the next attempt number.
///
/// If the group cancels the service instead (a failure elsewhere, or the group's own
/// `maximumGracefulShutdownDuration`), the handlers are cancelled at once, then the engine is
/// closed the same way. If acknowledging or retrying fails because the engine stopped after a
/// storage failure, the service stops as for a shutdown and `run()` throws that error, so that
/// the group ends too (reopening the directory recovers everything acknowledged). If the
/// engine is closed by someone else, `run()` returns.
public struct HourglassService: Service {
    /// The engine this service consumes and, when it stops, closes.
    public let engine: HourglassEngine
    /// Deliveries handled at once.
    public let concurrency: Int
    /// How long running handlers may take to finish after a graceful shutdown begins.
    public let handlerGracePeriod: Duration
    private let handler: @Sendable (Delivery) async throws -> DeliveryOutcome
    private let logger: Logger
    private let sleep: @Sendable (Duration) async throws -> Void

    /// A service consuming `engine` with `handler`.
    ///
    /// - Parameters:
    ///   - engine: the engine to consume; the service closes it when it stops.
    ///   - concurrency: deliveries handled at once (at least 1).
    ///   - handlerGracePeriod: how long running handlers may take to finish once a graceful
    ///     shutdown begins (zero or more); then they are cancelled.
    ///   - logger: where the service logs its shutdown and failures (silent by default).
    ///   - handler: what to do with each delivery: `.ack`, `.retry(after:)` or `.leave`.
    public init(
        engine: HourglassEngine,
        concurrency: Int = 1,
        handlerGracePeriod: Duration = .seconds(10),
        logger: Logger = Logger(label: "hourglass.service", factory: { _ in SwiftLogNoOpLogHandler() }),
        handler: @escaping @Sendable (Delivery) async throws -> DeliveryOutcome
    ) {
        self.init(engine: engine, concurrency: concurrency, handlerGracePeriod: handlerGracePeriod, clock: ContinuousClock(), logger: logger, handler: handler)
    }

    /// A service whose grace period is measured on `clock` (tests pass a clock they move).
    ///
    /// `concurrency` below 1 counts as 1, and a negative grace period as zero.
    public init<C: Clock<Duration>>(
        engine: HourglassEngine,
        concurrency: Int = 1,
        handlerGracePeriod: Duration = .seconds(10),
        clock: C,
        logger: Logger = Logger(label: "hourglass.service", factory: { _ in SwiftLogNoOpLogHandler() }),
        handler: @escaping @Sendable (Delivery) async throws -> DeliveryOutcome
    ) {
        self.engine = engine
        self.concurrency = max(1, concurrency)
        self.handlerGracePeriod = max(.zero, handlerGracePeriod)
        self.logger = logger
        self.handler = handler
        self.sleep = { duration in try await clock.sleep(for: duration) }
    }

    /// Consumes until a graceful shutdown (or cancellation), then stops as described above and
    /// closes the engine.
    ///
    /// - Throws: the engine's `HourglassError` when a storage failure stopped it (while
    ///   applying a handler's outcome, or at the close).
    public func run() async throws {
        let engine = engine
        let failure = FirstFailure()
        let logger = logger
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [handler, concurrency] in
                await engine.consume(concurrency: concurrency, handler) { error, delivery in
                    switch error {
                    case .stopped, .io, .diskFull, .capacityExceeded:
                        if failure.record(error) {
                            logger.error("hourglass service stopping: the engine failed", metadata: ["error": "\(error)", "timer": "\(delivery.id)"])
                        }
                        engine.stopDeliveries()
                    case .closed:
                        break  // closed under us: deliveries end, and so does the service
                    default:
                        logger.error("hourglass service: the handler's outcome was refused; the timer stays in flight",
                                     metadata: ["error": "\(error)", "timer": "\(delivery.id)", "attempt": "\(delivery.attempt)"])
                    }
                }
            }
            group.addTask { [sleep, handlerGracePeriod] in
                do {
                    try await gracefulShutdown()
                } catch {
                    return  // cancelled: the consumer ended first
                }
                engine.stopDeliveries()
                logger.info("hourglass service: graceful shutdown, no more deliveries; waiting for running handlers",
                            metadata: ["grace_period": "\(handlerGracePeriod)"])
                do {
                    try await sleep(handlerGracePeriod)
                } catch {
                    return  // cancelled: the handlers finished in time
                }
                logger.warning("hourglass service: handlers still running after the grace period are cancelled; their timers stay in flight")
            }
            // The consumer ends (shutdown handled, engine failed or closed), or the grace period
            // runs out: either way the other task is cancelled.
            _ = await group.next()
            group.cancelAll()
        }
        engine.stopDeliveries()
        let stored = failure.error
        do throws(HourglassError) {
            try await engine.close()
        } catch {
            if stored == nil { throw error }
        }
        if let stored { throw stored }
        logger.info("hourglass service stopped; the engine is closed")
    }
}

/// The first storage failure the consumer met.
private final class FirstFailure: Sendable {
    private let stored = Mutex<HourglassError?>(nil)

    /// Keeps `error` if it is the first; returns whether it was.
    func record(_ error: HourglassError) -> Bool {
        stored.withLock { stored in
            guard stored == nil else { return false }
            stored = error
            return true
        }
    }

    var error: HourglassError? { stored.withLock { $0 } }
}
