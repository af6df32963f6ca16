import ArgumentParser
import Hourglass
import Hummingbird
import Logging
import Metrics
import OrderService
import Prometheus
#if canImport(Glibc)
import Glibc
#endif

/// `order-service`: the HTTP server. Stops cleanly on SIGTERM or SIGINT (the server first,
/// then the timer consumer, then the timer engine).
@main
struct OrderServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-service",
        abstract: "An order service: unpaid orders are closed by Hourglass timers.")

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0: a free one, printed at start).")
    var port = 8080

    @Option(name: .customLong("data"), help: "Where the orders and the timers live (created if missing).")
    var dataDirectory = "./order-service-data"

    @Option(name: .customLong("close-after"), help: "How long an order may stay unpaid: 1800s, 30m, 500ms, 2h.")
    var closeAfter = "30m"

    @Option(name: .customLong("payment-check-interval"), help: "How long after a checkout, then between checks, the provider is asked.")
    var paymentCheckInterval = "1m"

    @Option(name: .customLong("payment-check-attempts"), help: "How many times the provider is asked at most.")
    var paymentCheckAttempts = 3

    @Option(help: "The timers' durability: always, interval:MS or none.")
    var durability = "always"

    @Option(name: .customLong("payment-sweep"), help: "The payment sweep's cron expression (UTC; five or six fields), or off.")
    var paymentSweep = "0/30 * * * * ?"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        _ = try settings()
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical") }
    }

    func settings() throws -> OrderServiceSettings {
        var settings = OrderServiceSettings(dataDirectory: dataDirectory)
        settings.host = host
        settings.port = port
        settings.closeAfter = try parseDuration(closeAfter, "--close-after")
        settings.paymentCheckInterval = try parseDuration(paymentCheckInterval, "--payment-check-interval")
        settings.paymentCheckAttempts = paymentCheckAttempts
        settings.paymentSweep = paymentSweep == "off" ? nil : paymentSweep
        switch durability {
        case "always": settings.durability = .always
        case "none": settings.durability = .none
        default:
            guard durability.hasPrefix("interval:"), let ms = Int(durability.dropFirst("interval:".count)), ms >= 1 else {
                throw ValidationError("--durability must be always, interval:MS (MS >= 1) or none, not '\(durability)'")
            }
            settings.durability = .interval(.milliseconds(ms))
        }
        return settings
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        // swift-metrics, bridged to Prometheus: Hummingbird's MetricsMiddleware and anything
        // else that uses the global MetricsSystem end up in /metrics too.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "order-service")
        let service: OrderService
        do {
            service = try await OrderService(settings: try settings(), registry: registry, logger: logger)
        } catch let error as OrderServiceError {
            printError("order-service: \(error)")
            throw ExitCode(2)
        }
        let app = service.application { port in
            // The end-to-end test reads this line to find the port.
            writeLine("order-service listening on \(host):\(port)")
        }
        try await app.runService()
        writeLine("order-service stopped")
    }
}

/// "1800s", "30m", "2h", "500ms", or a bare number of seconds.
func parseDuration(_ text: String, _ option: String) throws -> Duration {
    let units: [(String, (Int64) -> Duration)] = [("ms", { .milliseconds($0) }), ("s", { .seconds($0) }), ("m", { .seconds($0 * 60) }), ("h", { .seconds($0 * 3600) })]
    for (suffix, make) in units where text.hasSuffix(suffix) {
        if let value = Int64(text.dropLast(suffix.count)), value > 0, value <= 100 * 365 * 24 * 3600 { return make(value) }
    }
    if let seconds = Int64(text), seconds > 0, seconds <= 100 * 365 * 24 * 3600 { return .seconds(seconds) }
    throw ValidationError("\(option) must be a positive duration such as 1800s, 30m, 2h or 500ms, not '\(text)'")
}

func writeLine(_ text: String) {
    let line = Array((text + "\n").utf8)
    line.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
}

func printError(_ text: String) {
    let line = Array((text + "\n").utf8)
    line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}
