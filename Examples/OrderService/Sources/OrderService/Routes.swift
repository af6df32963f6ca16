import Hourglass
import Hummingbird
import Logging
import Prometheus

extension Order: ResponseEncodable {}

/// The HTTP API. Bad input gets a 4xx with a JSON message (`{"error":{"message":"..."}}`),
/// never a 500 and never a lost timer.
///
/// | route | what it does |
/// |-------|--------------|
/// | `POST /orders` | creates an unpaid order (`{"customer":"...","amount_cents":1999}`) and schedules its close |
/// | `GET /orders/{id}` | the order, its state and its events |
/// | `POST /orders/{id}/pay` | pays it: a conditional update, then the timers are cancelled |
/// | `POST /orders/{id}/checkout` | the customer went to the payment provider: ask the provider every interval, a few times |
/// | `POST /sandbox/payments/{id}` | the sandbox provider records the order's payment (what the checks will find) |
/// | `GET /metrics` | Prometheus text: the service's counters and Hourglass's metrics |
/// | `GET /health` | 200 once the service runs |
struct OrderRoutes: Sendable {
    let store: OrderStore
    let timers: OrderTimers
    let registry: PrometheusCollectorRegistry
    let metrics: OrderMetrics
    let logger: Logger

    static let maxCustomerLength = 200
    static let maxAmountCents = 100_000_000

    func add(to router: Router<BasicRequestContext>) {
        router.post("orders") { request, context in try await create(request, context) }
        router.get("orders/:id") { _, context in try await find(context.parameters.require("id")) }
        router.post("orders/:id/pay") { _, context in try await pay(context.parameters.require("id")) }
        router.post("orders/:id/checkout") { _, context in try await checkout(context.parameters.require("id")) }
        router.post("sandbox/payments/:id") { _, context in try await settle(context.parameters.require("id")) }
        router.get("metrics") { _, _ in metricsText() }
        router.get("health") { _, _ in "ok\n" }
    }

    func create(_ request: Request, _ context: BasicRequestContext) async throws -> EditedResponse<Order> {
        let new = try await request.decode(as: NewOrder.self, context: context)
        let customer = new.customer
        guard !customer.allSatisfy(\.isWhitespace), customer.count <= Self.maxCustomerLength else {
            throw HTTPError(.badRequest, message: "customer must be 1 to \(Self.maxCustomerLength) characters")
        }
        guard (1 ... Self.maxAmountCents).contains(new.amountCents) else {
            throw HTTPError(.badRequest, message: "amount_cents must be 1 to \(Self.maxAmountCents)")
        }
        let id = "ord_" + String(UInt64.random(in: 1 ... .max), radix: 16)
        let now = timers.now
        // The timer first, then the row: a crash in between leaves a timer that finds no order
        // (and does nothing), never an unpaid order that nothing will close.
        let closesAt = try await mapEngineErrors { try await timers.scheduleClose(of: id) }
        let order = Order(id: id, customer: customer, amountCents: new.amountCents, state: .unpaid, createdAt: now, closesAt: closesAt,
                          paidAt: nil, closedAt: nil, paymentCheck: .none, paymentChecks: 0, events: ["created"])
        do {
            try await store.insert(order)
        } catch {
            _ = try? await timers.cancelTimers(of: id)
            throw error
        }
        metrics.created.increment()
        return EditedResponse(status: .created, headers: [.location: "/orders/\(id)"], response: order)
    }

    func find(_ id: String) async throws -> Order {
        guard let order = try await store.order(id) else { throw HTTPError(.notFound, message: "no order \(id)") }
        return order
    }

    func pay(_ id: String) async throws -> Order {
        switch try await store.pay(id, at: timers.now) {
        case let .paid(order):
            metrics.paid(by: "api").increment()
            // After the row: a crash in between leaves a close timer that finds the order paid
            // and changes nothing.
            _ = try await mapEngineErrors { try await timers.cancelTimers(of: id) }
            return order
        case let .alreadyPaid(order):
            return order
        case let .closed(order):
            throw HTTPError(.conflict, message: "order \(id) was closed at \(order.closedAt ?? 0) ms, unpaid; it cannot be paid any more")
        case .notFound:
            throw HTTPError(.notFound, message: "no order \(id)")
        }
    }

    func checkout(_ id: String) async throws -> EditedResponse<Order> {
        switch try await store.startPaymentCheck(id, at: timers.now) {
        case let .started(order, alreadyPending):
            if !alreadyPending { try await mapEngineErrors { try await timers.schedulePaymentCheck(of: id) } }
            return EditedResponse(status: .accepted, response: order)
        case let .notUnpaid(order):
            throw HTTPError(.conflict, message: "order \(id) is \(order.state.rawValue): there is no payment to check")
        case .notFound:
            throw HTTPError(.notFound, message: "no order \(id)")
        }
    }

    func settle(_ id: String) async throws -> Response {
        guard try await store.order(id) != nil else { throw HTTPError(.notFound, message: "no order \(id)") }
        try await store.settleAtProvider(id, at: timers.now)
        return Response(status: .noContent)
    }

    func metricsText() -> Response {
        let bytes = registry.emitToBuffer()
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The engine's typed errors as HTTP: a stopped or closed engine is a 503 (retry later;
    /// nothing was half done), anything else a 500 with the engine's message.
    private func mapEngineErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as HourglassError {
            logger.error("timer engine refused a change", metadata: ["error": "\(error)"])
            switch error {
            case .closed, .stopped, .diskFull, .io:
                throw HTTPError(.serviceUnavailable, message: "the timer store is unavailable: \(error)")
            default:
                throw HTTPError(.internalServerError, message: "\(error)")
            }
        }
    }
}
