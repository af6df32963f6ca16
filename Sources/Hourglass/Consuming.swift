/// What a handler wants done with a delivery.
public enum DeliveryOutcome: Sendable, Equatable {
    /// Done: acknowledge it.
    case ack
    /// Deliver it again after this delay, with the next attempt number.
    case retry(after: Duration)
    /// Leave it in flight: it is delivered again after `Configuration.redeliveryTimeout`.
    case leave
}

extension HourglassEngine {
    /// Hands every delivery to `handler`, on up to `concurrency` tasks at once, and acknowledges
    /// or retries it as the handler answers. A handler that throws leaves the timer in flight,
    /// so it is delivered again after the redelivery timeout. A slow handler holds up only its
    /// own task: the others go on with the next deliveries. Returns when the engine closes.
    ///
    /// ```swift
    /// Task {
    ///     await engine.consume(concurrency: 8) { delivery in
    ///         try await payments.checkStatus(order: delivery.id)
    ///             ? .ack
    ///             : .retry(after: .seconds(60))
    ///     }
    /// }
    /// ```
    public func consume(
        concurrency: Int = 1,
        _ handler: @escaping @Sendable (Delivery) async throws -> DeliveryOutcome
    ) async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0 ..< max(1, concurrency) {
                group.addTask { [self] in
                    for await delivery in deliveries {
                        let outcome: DeliveryOutcome
                        do {
                            outcome = try await handler(delivery)
                        } catch {
                            outcome = .leave
                        }
                        switch outcome {
                        case .ack: _ = try? await ack(delivery)
                        case let .retry(delay): _ = try? await retry(delivery, after: delay)
                        case .leave: break
                        }
                    }
                }
            }
        }
    }
}
