import GRDB
import Hourglass
import HourglassServiceLifecycle
import Hummingbird
import Logging
import Prometheus
#if canImport(Glibc)
import Glibc
#endif

/// What the service needs to know to run.
public struct OrderServiceSettings: Sendable {
    /// The address to listen on.
    public var host = "127.0.0.1"
    /// The port to listen on; 0 picks a free one (printed when the server runs).
    public var port = 8080
    /// Where the orders (`orders.sqlite`) and the timers (`timers/`) live; created if missing.
    public var dataDirectory: String
    /// How long an order may stay unpaid before it is closed.
    public var closeAfter: Duration = .seconds(30 * 60)
    /// How long after a checkout, and then between checks, the payment provider is asked.
    public var paymentCheckInterval: Duration = .seconds(60)
    /// How many times the provider is asked at most.
    public var paymentCheckAttempts = 3
    /// The timers' durability policy. `always`: an order is created only once its close timer
    /// is on disk.
    public var durability: Hourglass.Configuration.Durability = .always
    /// Timers handled at once.
    public var consumers = 8
    /// The payment sweep's cron expression (six fields, UTC): every 30 s by default; nil: no sweep.
    public var paymentSweep: String? = "0/30 * * * * ?"

    public init(dataDirectory: String) { self.dataDirectory = dataDirectory }

    func validate() throws(OrderServiceError) {
        guard (0 ... 65_535).contains(port) else { throw .invalidSetting("port must be 0 ... 65535, not \(port)") }
        guard !host.isEmpty else { throw .invalidSetting("host is empty") }
        guard !dataDirectory.isEmpty else { throw .invalidSetting("the data directory is empty") }
        guard closeAfter > .zero else { throw .invalidSetting("close-after must be positive, not \(closeAfter)") }
        guard paymentCheckInterval > .zero else { throw .invalidSetting("payment-check-interval must be positive, not \(paymentCheckInterval)") }
        guard paymentCheckAttempts >= 1 else { throw .invalidSetting("payment-check-attempts must be at least 1, not \(paymentCheckAttempts)") }
        guard consumers >= 1 else { throw .invalidSetting("consumers must be at least 1, not \(consumers)") }
    }
}

/// Why the service could not start.
public enum OrderServiceError: Error, CustomStringConvertible, Equatable {
    case invalidSetting(String)
    /// The data directory cannot be created.
    case dataDirectory(path: String, errno: Int32)
    /// The timer engine refused to open (a locked directory, corruption, ...).
    case timers(HourglassError)

    public var description: String {
        switch self {
        case let .invalidSetting(message): return "invalid setting: \(message)"
        case let .dataDirectory(path, errno): return "cannot create the data directory \(path) (errno \(errno))"
        case let .timers(error): return "cannot open the timers: \(error)"
        }
    }
}

/// The service, assembled: its HTTP application (which runs the timer consumer as one of its
/// services, after the server in the shutdown order) and its parts, for tests.
public struct OrderService: Sendable {
    public let store: OrderStore
    public let engine: HourglassEngine
    public let registry: PrometheusCollectorRegistry
    let routes: OrderRoutes
    let timerService: HourglassService
    let settings: OrderServiceSettings
    let logger: Logger

    /// Opens the store and the timers and builds the routes. Run it with `application(...)`.
    ///
    /// - Parameters:
    ///   - clock: the timers' clock (a `ManualClock` in tests); order times are read from it too.
    ///   - registry: where metrics are collected for `/metrics`.
    ///   - provider: the payment provider; by default the sandbox provider in the same database.
    public init(
        settings: OrderServiceSettings, clock: any HourglassClock = SystemClock(), registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        provider: (any PaymentProvider)? = nil, logger: Logger
    ) async throws {
        try settings.validate()
        if mkdir(settings.dataDirectory, 0o700) != 0 && errno != EEXIST {
            throw OrderServiceError.dataDirectory(path: settings.dataDirectory, errno: errno)
        }
        let store = try OrderStore(path: settings.dataDirectory + "/orders.sqlite")
        let factory = PrometheusMetricsFactory(registry: registry)
        var configuration = Hourglass.Configuration.directory(settings.dataDirectory + "/timers", durability: settings.durability)
        configuration.metricsFactory = factory
        configuration.logger = logger
        let engine: HourglassEngine
        do throws(HourglassError) {
            engine = try await HourglassEngine.open(configuration, clock: clock)
        } catch {
            throw OrderServiceError.timers(error)
        }
        let metrics = OrderMetrics(factory: factory)
        let timers = OrderTimers(
            engine: engine, store: store, provider: provider ?? SandboxPaymentProvider(store: store), closeAfter: settings.closeAfter,
            paymentCheckInterval: settings.paymentCheckInterval, paymentCheckAttempts: settings.paymentCheckAttempts, metrics: metrics, logger: logger)
        self.store = store
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.logger = logger
        self.routes = OrderRoutes(store: store, timers: timers, registry: registry, metrics: metrics, logger: logger)
        do throws(HourglassError) {
            try await timers.scheduleSweep(cron: settings.paymentSweep)
        } catch {
            throw OrderServiceError.timers(error)
        }
        self.timerService = HourglassService(engine: engine, concurrency: settings.consumers, logger: logger) { delivery in
            try await timers.handle(delivery)
        }
        if engine.recoveryReport.records > 0 || engine.recoveryReport.checkpointTimers > 0 {
            logger.info("timers recovered", metadata: [
                "log_records": "\(engine.recoveryReport.records)", "checkpoint_timers": "\(engine.recoveryReport.checkpointTimers)",
            ])
        }
    }

    /// The Hummingbird application: the routes, with the timer consumer among its services.
    /// `onServerRunning` gets the port the server listens on.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.middlewares.add(MetricsMiddleware())
        routes.add(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "order-service"),
            services: [timerService],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? settings.port) },
            logger: logger)
    }
}
