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
    /// own task: the others go on with the next deliveries. Returns when the engine closes or
    /// `stopDeliveries()` is called, once every handler that was running has returned and its
    /// outcome has been applied.
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
        await consume(concurrency: concurrency, handler, outcomeFailed: { _, _ in })
    }

    /// `consume(concurrency:_:)`, telling `outcomeFailed` when applying a handler's outcome
    /// failed (an ack or a retry that threw: a storage failure, or a retry delay out of range),
    /// with the delivery. For `HourglassService`, which stops on a storage failure.
    package func consume(
        concurrency: Int,
        _ handler: @escaping @Sendable (Delivery) async throws -> DeliveryOutcome,
        outcomeFailed: @escaping @Sendable (HourglassError, Delivery) -> Void
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
                        do throws(HourglassError) {
                            switch outcome {
                            case .ack: _ = try await ack(delivery)
                            case let .retry(delay): _ = try await retry(delivery, after: delay)
                            case .leave: break
                            }
                        } catch {
                            outcomeFailed(error, delivery)
                        }
                        deliveries.queue.noteSettled()
                    }
                }
            }
        }
    }
}

extension HourglassEngine {
    /// Stops handing out deliveries, without closing the engine: the first step of a graceful
    /// shutdown. Every iteration of `deliveries` (and `consume`) ends: consumers waiting get
    /// nil, and so does every later `next()`. Timers keep firing, but what fires from now on,
    /// and what was buffered for a consumer, stays in flight (under at most once: pending) and
    /// is delivered again after the directory is reopened. Deliveries already taken can still
    /// be acknowledged or retried, so handlers that are running finish their work; then
    /// `close()`.
    ///
    /// Calling it again does nothing. It cannot be undone: reopen the engine to consume again.
    public func stopDeliveries() {
        deliveries.queue.finish()
    }

    /// Whether `stopDeliveries()` was called or the engine was closed: `deliveries` has ended.
    public var deliveriesStopped: Bool { deliveries.queue.isFinished }
}

extension HourglassEngine {
    /// Returns once `count` deliveries of this engine have been settled: handled by `consume`
    /// with their outcome applied, passed over under at most once (cancelled before the take),
    /// or dropped by `stopDeliveries()` or `close()`; or at once when deliveries have ended.
    /// For HourglassTesting's `waitUntilHandled()`.
    nonisolated(nonsending)
    package func waitUntilSettled(count: Int) async {
        await deliveries.queue.waitUntilSettled(count)
    }

    /// Takes every buffered delivery without waiting: what a consumer iterating `deliveries`
    /// would get next, as far as the engine has fired. Under at most once each is taken (logged
    /// as done) first; those cancelled or replaced meanwhile are left out. For
    /// HourglassTesting's `takeDeliveries()`.
    nonisolated(nonsending)
    package func takeBufferedDeliveries() async -> [Delivery] {
        let buffered = deliveries.queue.takeBuffered()
        guard let taker = deliveries.taker else { return buffered }
        var taken: [Delivery] = []
        for delivery in buffered {
            if await taker.take(delivery) { taken.append(delivery) } else { deliveries.queue.noteSettled() }
        }
        return taken
    }
}
