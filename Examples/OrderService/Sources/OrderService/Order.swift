/// An order, as the service stores it and `GET /orders/{id}` shows it.
public struct Order: Sendable, Codable, Equatable {
    /// Where an order is in its life. `unpaid` moves to `paid` or `closed`, never both, never back.
    public enum State: String, Sendable, Codable {
        case unpaid, paid, closed
    }

    /// Where the payment-status check started by `POST /orders/{id}/checkout` is.
    public enum PaymentCheck: String, Sendable, Codable {
        /// No checkout: nothing to ask the provider.
        case none
        /// The provider is asked every interval, up to the configured number of times.
        case pending
        /// The provider confirmed the payment: the order was paid by the check.
        case confirmed
        /// The provider never confirmed it; the order's close timer decides.
        case gaveUp = "gave_up"
    }

    public var id: String
    public var customer: String
    public var amountCents: Int
    public var state: State
    /// Milliseconds since the Unix epoch, as every time here.
    public var createdAt: Int64
    /// When the close timer fires if the order is still unpaid.
    public var closesAt: Int64
    public var paidAt: Int64?
    public var closedAt: Int64?
    public var paymentCheck: PaymentCheck
    /// Times the provider has been asked.
    public var paymentChecks: Int
    /// What happened to the order, oldest first: `created`, `paid`, `closed`, `checkout`. A
    /// close or a payment appears at most once, whatever the redeliveries.
    public var events: [String]

    public init(
        id: String, customer: String, amountCents: Int, state: State, createdAt: Int64, closesAt: Int64,
        paidAt: Int64?, closedAt: Int64?, paymentCheck: PaymentCheck, paymentChecks: Int, events: [String]
    ) {
        self.id = id
        self.customer = customer
        self.amountCents = amountCents
        self.state = state
        self.createdAt = createdAt
        self.closesAt = closesAt
        self.paidAt = paidAt
        self.closedAt = closedAt
        self.paymentCheck = paymentCheck
        self.paymentChecks = paymentChecks
        self.events = events
    }

    enum CodingKeys: String, CodingKey {
        case id, customer, state, events
        case amountCents = "amount_cents"
        case createdAt = "created_at"
        case closesAt = "closes_at"
        case paidAt = "paid_at"
        case closedAt = "closed_at"
        case paymentCheck = "payment_check"
        case paymentChecks = "payment_checks"
    }
}

/// The body of `POST /orders`.
public struct NewOrder: Sendable, Codable {
    public var customer: String
    public var amountCents: Int

    public init(customer: String, amountCents: Int) {
        self.customer = customer
        self.amountCents = amountCents
    }

    enum CodingKeys: String, CodingKey {
        case customer
        case amountCents = "amount_cents"
    }
}
