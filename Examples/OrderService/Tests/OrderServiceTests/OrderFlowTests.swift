import Foundation
import Hourglass
import HourglassTesting
import Hummingbird
import HummingbirdTesting
import Logging
import OrderService
import Testing

/// The service in process, on a `ManualClock`: thirty minutes pass in a microsecond, and
/// `waitUntilHandled()` returns once the timer consumer has dealt with everything due. No test
/// here sleeps.
@Suite("Order service in process: closing, paying, checking payments, bad input")
struct OrderFlowTests {
    static let silent = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A service on a fresh data directory and a manual clock, with the defaults (close after
    /// 30 minutes, a payment check every minute, three times).
    struct Harness {
        let directory: TemporaryDirectory
        let clock: ManualClock
        let service: OrderService

        init(_ configure: (inout OrderServiceSettings) -> Void = { _ in }) async throws {
            directory = TemporaryDirectory("order-service")
            clock = ManualClock(now: HourglassTestEngine.defaultStart)
            var settings = OrderServiceSettings(dataDirectory: directory.appending("data"))
            settings.port = 0
            settings.paymentSweep = nil  // the payment sweep's own test turns it on
            configure(&settings)
            service = try await OrderService(settings: settings, clock: clock, logger: OrderFlowTests.silent)
        }

        /// Moves time and returns once every timer that fell due has been handled.
        func advance(by duration: Duration) async {
            clock.advance(by: duration)
            await service.engine.waitUntilHandled()
        }
    }

    static func order(_ response: TestResponse) throws -> Order {
        try JSONDecoder().decode(Order.self, from: Data(buffer: response.body))
    }

    static func message(_ response: TestResponse) -> String {
        String(buffer: response.body)
    }

    static func create(_ client: some TestClientProtocol, customer: String = "ada", cents: Int = 1999) async throws -> Order {
        let response = try await client.execute(
            uri: "/orders", method: .post, headers: [.contentType: "application/json"],
            body: ByteBuffer(string: #"{"customer":"\#(customer)","amount_cents":\#(cents)}"#))
        #expect(response.status == .created, "\(message(response))")
        return try order(response)
    }

    @Test("the payment sweep, a cron timer every 30 s, pays an order whose payment the provider holds without a checkout")
    func paymentSweep() async throws {
        let harness = try await Harness { $0.paymentSweep = "0/30 * * * * ?" }
        let app = harness.service.application()
        try await app.test(.router) { client in
            let order = try await Self.create(client)
            #expect(try await client.execute(uri: "/sandbox/payments/\(order.id)", method: .post).status == .noContent)
            #expect(try await Self.get(client, order.id).state == .unpaid, "nothing before the sweep")
            // The sweep's next occurrence is the next whole half minute.
            await harness.advance(by: .seconds(30))
            let swept = try await Self.get(client, order.id)
            #expect(swept.state == .paid, "the sweep paid it")
            await harness.advance(by: .seconds(1800))
            #expect(try await Self.get(client, order.id).state == .paid, "its close timer was cancelled")
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains(#"orders_paid_total{via="sweep"} 1"#), "\(metrics)")
            #expect(!metrics.contains("payment_sweeps_total 0"), "the sweep ran")
        }
        try await harness.service.engine.close()
        harness.directory.remove()
    }

    static func get(_ client: some TestClientProtocol, _ id: String) async throws -> Order {
        let response = try await client.execute(uri: "/orders/\(id)", method: .get)
        #expect(response.status == .ok)
        return try order(response)
    }

    @Test("an unpaid order is closed at its 30th minute, not before; a paid order never")
    func unpaidOrdersClose() async throws {
        let harness = try await Harness()
        try await harness.service.application().test(.router) { client in
            let unpaid = try await Self.create(client)
            let paid = try await Self.create(client, customer: "grace")
            #expect(unpaid.state == .unpaid && unpaid.closesAt == unpaid.createdAt + 1_800_000)
            let payment = try await client.execute(uri: "/orders/\(paid.id)/pay", method: .post)
            #expect(payment.status == .ok)
            #expect(try Self.order(payment).state == .paid)

            await harness.advance(by: .milliseconds(1_799_999))
            #expect(try await Self.get(client, unpaid.id).state == .unpaid)
            await harness.advance(by: .milliseconds(1))
            let closed = try await Self.get(client, unpaid.id)
            #expect(closed.state == .closed && closed.closedAt == unpaid.closesAt)
            #expect(closed.events == ["created", "closed"])

            await harness.advance(by: .seconds(3600))
            let stillPaid = try await Self.get(client, paid.id)
            #expect(stillPaid.state == .paid && stillPaid.events == ["created", "paid"])
            #expect(await harness.service.engine.stats().pending == 0, "the paid order's timer was cancelled")
        }
        harness.directory.remove()
    }

    @Test("payment check: the provider is asked a minute after checkout, then every minute; a payment found on the second check pays the order")
    func paymentCheckFindsThePayment() async throws {
        let harness = try await Harness()
        try await harness.service.application().test(.router) { client in
            let order = try await Self.create(client)
            let checkout = try await client.execute(uri: "/orders/\(order.id)/checkout", method: .post)
            #expect(checkout.status == .accepted)
            #expect(try Self.order(checkout).paymentCheck == .pending)

            await harness.advance(by: .seconds(59))
            #expect(try await Self.get(client, order.id).paymentChecks == 0)
            await harness.advance(by: .seconds(1))
            var seen = try await Self.get(client, order.id)
            #expect(seen.paymentChecks == 1 && seen.state == .unpaid && seen.paymentCheck == .pending)

            let settle = try await client.execute(uri: "/sandbox/payments/\(order.id)", method: .post)
            #expect(settle.status == .noContent)
            await harness.advance(by: .seconds(60))
            seen = try await Self.get(client, order.id)
            #expect(seen.state == .paid && seen.paymentCheck == .confirmed && seen.paymentChecks == 2)
            #expect(seen.events == ["created", "checkout", "paid"])

            await harness.advance(by: .seconds(3600))
            #expect(try await Self.get(client, order.id).state == .paid, "paying cancelled the close timer")
            #expect(await harness.service.engine.stats().pending == 0)
        }
        harness.directory.remove()
    }

    @Test("payment check: never confirmed, the provider is asked three times, a minute apart, then the close timer closes the order")
    func paymentCheckGivesUp() async throws {
        let harness = try await Harness()
        try await harness.service.application().test(.router) { client in
            let order = try await Self.create(client)
            #expect(try await client.execute(uri: "/orders/\(order.id)/checkout", method: .post).status == .accepted)
            // A second checkout does not start a second check.
            #expect(try await client.execute(uri: "/orders/\(order.id)/checkout", method: .post).status == .accepted)
            for minute in 1 ... 3 {
                await harness.advance(by: .seconds(60))
                let seen = try await Self.get(client, order.id)
                #expect(seen.paymentChecks == minute, "minute \(minute)")
                #expect(seen.paymentCheck == (minute < 3 ? .pending : .gaveUp), "minute \(minute)")
            }
            await harness.advance(by: .seconds(600))
            #expect(try await Self.get(client, order.id).paymentChecks == 3, "no fourth check")
            await harness.advance(by: .seconds(1800))
            let closed = try await Self.get(client, order.id)
            #expect(closed.state == .closed && closed.events == ["created", "checkout", "closed"])
        }
        harness.directory.remove()
    }

    @Test("bad input gets a 4xx with a message, and changes no timer")
    func badInput() async throws {
        let harness = try await Harness()
        try await harness.service.application().test(.router) { client in
            let json: HTTPFields = [.contentType: "application/json"]
            for (body, expected) in [
                ("{not json", "not valid"),
                (#"{"customer":"ada"}"#, "amount_cents"),
                (#"{"customer":"ada","amount_cents":"12"}"#, "amount_cents"),
                (#"{"customer":"   ","amount_cents":100}"#, "customer must be"),
                (#"{"customer":"ada","amount_cents":0}"#, "amount_cents must be"),
                (#"{"customer":"ada","amount_cents":100000001}"#, "amount_cents must be"),
            ] {
                let response = try await client.execute(uri: "/orders", method: .post, headers: json, body: ByteBuffer(string: body))
                #expect(response.status == .badRequest, "\(body)")
                #expect(Self.message(response).contains(expected), "\(body): \(Self.message(response))")
            }
            #expect(await harness.service.engine.stats().pending == 0, "no timer for a refused order")

            let missing = try await client.execute(uri: "/orders/ord_nope", method: .get)
            #expect(missing.status == .notFound && Self.message(missing).contains("no order ord_nope"))
            #expect(try await client.execute(uri: "/orders/ord_nope/pay", method: .post).status == .notFound)
            #expect(try await client.execute(uri: "/orders/ord_nope/checkout", method: .post).status == .notFound)
            #expect(try await client.execute(uri: "/sandbox/payments/ord_nope", method: .post).status == .notFound)

            let order = try await Self.create(client)
            await harness.advance(by: .seconds(1800))
            let late = try await client.execute(uri: "/orders/\(order.id)/pay", method: .post)
            #expect(late.status == .conflict)
            #expect(Self.message(late).contains("cannot be paid"))
            #expect(try await client.execute(uri: "/orders/\(order.id)/checkout", method: .post).status == .conflict)
            #expect(try await Self.get(client, order.id).events == ["created", "closed"], "a refused payment changes nothing")

            let paid = try await Self.create(client)
            #expect(try await client.execute(uri: "/orders/\(paid.id)/pay", method: .post).status == .ok)
            #expect(try await client.execute(uri: "/orders/\(paid.id)/pay", method: .post).status == .ok, "paying twice is harmless")
            #expect(try await Self.get(client, paid.id).events == ["created", "paid"])
            #expect(try await client.execute(uri: "/orders/\(paid.id)/checkout", method: .post).status == .conflict)
        }
        harness.directory.remove()
    }

    @Test("a close delivered twice (a redelivery after a crash) closes the order once")
    func closeIsIdempotent() async throws {
        let harness = try await Harness()
        let store = harness.service.store
        let now = harness.clock.now()
        let order = Order(id: "ord_twice", customer: "ada", amountCents: 100, state: .unpaid, createdAt: now, closesAt: now,
                          paidAt: nil, closedAt: nil, paymentCheck: .none, paymentChecks: 0, events: [])
        try await store.insert(order)
        #expect(try await store.closeIfUnpaid("ord_twice", at: now) == .closed)
        #expect(try await store.closeIfUnpaid("ord_twice", at: now + 5) == .unchanged(.closed))
        #expect(try await store.pay("ord_twice", at: now + 6) == .closed(try #require(await store.order("ord_twice"))))
        let stored = try #require(await store.order("ord_twice"))
        #expect(stored.events == ["created", "closed"] && stored.closedAt == now)
        #expect(try await store.closeIfUnpaid("ord_never", at: now) == .notFound)
        try await harness.service.engine.close()
        harness.directory.remove()
    }

    @Test("/metrics serves Prometheus text: the service's counters and Hourglass's metrics, through swift-metrics")
    func metrics() async throws {
        let harness = try await Harness()
        try await harness.service.application().test(.router) { client in
            _ = try await Self.create(client)
            await harness.advance(by: .seconds(1800))
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
            let text = Self.message(response)
            for line in ["orders_created_total 1", "orders_closed_total 1", "hourglass_fired_total 1", "hourglass_acked_total 1"] {
                #expect(text.contains(line), "\(line) in:\n\(text)")
            }
            #expect(text.contains("# TYPE hourglass_pending gauge"))
        }
        harness.directory.remove()
    }

    @Test("invalid settings are refused with what is wrong")
    func invalidSettings() async throws {
        let directory = TemporaryDirectory("order-service")
        defer { directory.remove() }
        for (configure, expected) in [
            ({ (s: inout OrderServiceSettings) in s.closeAfter = .zero }, "close-after"),
            ({ (s: inout OrderServiceSettings) in s.paymentCheckAttempts = 0 }, "payment-check-attempts"),
            ({ (s: inout OrderServiceSettings) in s.port = 70_000 }, "port"),
        ] {
            var settings = OrderServiceSettings(dataDirectory: directory.appending("data"))
            configure(&settings)
            do {
                _ = try await OrderService(settings: settings, logger: Self.silent)
                Issue.record("accepted: \(expected)")
            } catch let error as OrderServiceError {
                #expect(error.description.contains(expected), "\(error)")
            }
        }
    }
}
