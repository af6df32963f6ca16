import Hourglass
import Logging
import Metrics

/// The service's timers, on one Hourglass engine:
///
/// - `close:ID`, scheduled when an order is created, due `closeAfter` later: closes the order
///   if it is still unpaid. Cancelled when the order is paid.
/// - `check:ID`, scheduled at checkout, due `paymentCheckInterval` later: asks the payment
///   provider whether the order was paid; if not, retries after the same interval
///   (`retry(after:)`), `paymentCheckAttempts` times in all.
/// - `sweep:payments`, a recurring cron timer (every 30 s by default, Spring's
///   `0/30 * * * * ?`): pays the unpaid orders whose payment the provider holds although no
///   checkout asked (the reconciliation job services run with `@Scheduled`). One occurrence at a
///   time, durable, and never run twice at once by two instances: it is one timer.
///
/// Both handlers are idempotent (every change is a conditional update), because delivery is at
/// least once: after a crash, a timer whose handling was not acknowledged comes again, with a
/// higher attempt number.
public struct OrderTimers: Sendable {
    public let engine: HourglassEngine
    let store: OrderStore
    let provider: any PaymentProvider
    let closeAfter: Duration
    let paymentCheckInterval: Duration
    let paymentCheckAttempts: Int
    let metrics: OrderMetrics
    let logger: Logger

    static let closePrefix = "close:"
    static let checkPrefix = "check:"
    public static let sweepID: TimerID = "sweep:payments"

    /// The engine's time, in milliseconds since the epoch (a `ManualClock` in tests).
    var now: Int64 { engine.clock.now() }

    /// Schedules the close of a new order; returns its deadline.
    func scheduleClose(of id: String) async throws(HourglassError) -> Int64 {
        let deadline = Deadline(millisecondsSinceEpoch: now) + closeAfter
        try await engine.schedule(id: TimerID(Self.closePrefix + id), at: deadline)
        return deadline.millisecondsSinceEpoch
    }

    /// Cancels an order's timers (it was paid): returns whether its close timer was pending.
    @discardableResult
    func cancelTimers(of id: String) async throws(HourglassError) -> Bool {
        _ = try await engine.cancel(id: TimerID(Self.checkPrefix + id))
        return try await engine.cancel(id: TimerID(Self.closePrefix + id))
    }

    /// Schedules the payment sweep as a cron series (replacing the one a previous run scheduled,
    /// so a changed expression takes effect), or ends it when `cron` is nil.
    func scheduleSweep(cron: String?) async throws(HourglassError) {
        guard let cron else {
            _ = try await engine.cancel(id: Self.sweepID)
            return
        }
        try await engine.schedule(id: Self.sweepID, repeating: .cron(cron, timeZone: "UTC", misfire: .fireOnceNow))
    }

    func schedulePaymentCheck(of id: String) async throws(HourglassError) {
        try await engine.schedule(id: TimerID(Self.checkPrefix + id), after: paymentCheckInterval)
    }

    /// What the consumer does with a delivery.
    public func handle(_ delivery: Delivery) async throws -> DeliveryOutcome {
        guard let name = delivery.id.string else {
            logger.error("a timer with a non-UTF-8 id: dropped", metadata: ["timer": "\(delivery.id)"])
            return .ack
        }
        if name.hasPrefix(Self.closePrefix) {
            return try await close(String(name.dropFirst(Self.closePrefix.count)), delivery)
        }
        if name.hasPrefix(Self.checkPrefix) {
            return try await checkPayment(String(name.dropFirst(Self.checkPrefix.count)), delivery)
        }
        if delivery.id == Self.sweepID {
            return try await sweepPayments(delivery)
        }
        logger.error("a timer this service does not know: dropped", metadata: ["timer": "\(name)"])
        return .ack
    }

    private func close(_ id: String, _ delivery: Delivery) async throws -> DeliveryOutcome {
        switch try await store.closeIfUnpaid(id, at: now) {
        case .closed:
            metrics.closed.increment()
            logger.info("closed unpaid order", metadata: ["order": "\(id)", "attempt": "\(delivery.attempt)", "lateness_ms": "\(delivery.latenessMilliseconds)"])
        case let .unchanged(state):
            logger.debug("close timer for an order already \(state)", metadata: ["order": "\(id)", "attempt": "\(delivery.attempt)"])
        case .notFound:
            // The order's creation failed after its timer was scheduled: nothing to close.
            logger.notice("close timer for an order that was never stored", metadata: ["order": "\(id)"])
        }
        return .ack
    }

    /// One occurrence of the sweep: pays what the provider holds. Idempotent (each payment is a
    /// conditional update), so a redelivered occurrence changes nothing the second time.
    private func sweepPayments(_ delivery: Delivery) async throws -> DeliveryOutcome {
        var paid = 0
        for id in try await store.unpaidWithProviderPayment() {
            if case .paid = try await store.pay(id, at: now) {
                try await cancelTimers(of: id)
                metrics.paid(by: "sweep").increment()
                paid += 1
            }
        }
        metrics.sweeps.increment()
        logger.info("payment sweep", metadata: [
            "occurrence": "\(delivery.occurrence?.millisecondsSinceEpoch ?? 0)", "coalesced": "\(delivery.coalesced)", "paid": "\(paid)",
        ])
        return .ack
    }

    private func checkPayment(_ id: String, _ delivery: Delivery) async throws -> DeliveryOutcome {
        guard let order = try await store.order(id), order.state == .unpaid else { return .ack }
        if try await provider.isPaid(order: id) {
            try await store.recordConfirmedCheck(id, attempt: delivery.attempt)
            if case .paid = try await store.pay(id, at: now, confirmedByCheck: true) {
                metrics.paid(by: "payment_check").increment()
            }
            try await cancelTimers(of: id)
            metrics.checks(result: "paid").increment()
            return .ack
        }
        let last = delivery.attempt >= paymentCheckAttempts
        try await store.recordUnconfirmedCheck(id, attempt: delivery.attempt, gaveUp: last)
        if last {
            metrics.checks(result: "gave_up").increment()
            logger.info("payment never confirmed; the close timer decides", metadata: ["order": "\(id)", "checks": "\(delivery.attempt)"])
            return .ack
        }
        metrics.checks(result: "unpaid").increment()
        return .retry(after: paymentCheckInterval)
    }
}

/// The service's own metrics, through swift-metrics (exported by the Prometheus backend).
public struct OrderMetrics: Sendable {
    let factory: any MetricsFactory
    let created: Counter
    let closed: Counter
    let sweeps: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        created = Counter(label: "orders_created_total", factory: factory)
        closed = Counter(label: "orders_closed_total", factory: factory)
        sweeps = Counter(label: "payment_sweeps_total", factory: factory)
    }

    func paid(by how: String) -> Counter { Counter(label: "orders_paid_total", dimensions: [("via", how)], factory: factory) }
    func checks(result: String) -> Counter { Counter(label: "payment_checks_total", dimensions: [("result", result)], factory: factory) }
}
