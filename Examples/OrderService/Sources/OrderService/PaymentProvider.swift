/// The payment provider the service asks "was order X paid?" (a card processor, a wallet).
public protocol PaymentProvider: Sendable {
    /// Whether the provider holds a completed payment for the order.
    func isPaid(order id: String) async throws -> Bool
}

/// A provider in sandbox mode, as card processors offer for development: its answers are what
/// `POST /sandbox/payments/{id}` recorded, kept in the service's own database. Replace it with
/// your provider's client in production.
public struct SandboxPaymentProvider: PaymentProvider {
    let store: OrderStore

    public init(store: OrderStore) { self.store = store }

    public func isPaid(order id: String) async throws -> Bool {
        try await store.providerHasPayment(id)
    }
}
