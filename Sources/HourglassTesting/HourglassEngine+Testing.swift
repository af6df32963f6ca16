import Hourglass

extension HourglassEngine {
    /// Takes every delivery the engine has fired by its clock's current time and no consumer
    /// has taken yet, without waiting for more.
    ///
    /// It first lets the engine fire everything due (as `stats()` does), so after
    /// `clock.advance(by:)` the result holds exactly the timers that became due, in firing
    /// order. Under `DeliveryMode.atMostOnce` each is taken (logged as done) as a consumer would
    /// take it. Use it when the test itself plays the consumer; with a handler running through
    /// `consume` (or `HourglassService`), use ``waitUntilHandled()`` instead: both would compete
    /// for the same deliveries.
    ///
    /// ```swift
    /// clock.advance(by: .seconds(1800))
    /// let fired = await engine.takeDeliveries()
    /// #expect(fired.map(\.id) == ["order-42"])
    /// for delivery in fired { _ = try await engine.ack(delivery) }
    /// ```
    nonisolated(nonsending)
    public func takeDeliveries() async -> [Delivery] {
        _ = await stats()
        return await takeBufferedDeliveries()
    }

    /// Returns once every delivery the engine has made so far, at its clock's current time, has
    /// been handled by `consume(concurrency:_:)` (which is what `HourglassService` runs), with
    /// the handler's outcome applied: acknowledged, retried, or left in flight.
    ///
    /// A handler's outcome can make more timers fire (a retry that is already due, room in the
    /// in-flight window after an acknowledgement): it waits for those too, until nothing due is
    /// left unhandled. It returns at once when deliveries have ended (`stopDeliveries()`,
    /// `close()`).
    ///
    /// Every delivery must go through `consume`: a delivery taken some other way (a loop over
    /// `deliveries`, ``takeDeliveries()``) is never counted as handled, and this would wait
    /// for it forever.
    ///
    /// ```swift
    /// let consumer = Task { await engine.consume { delivery in try await orders.close(delivery) } }
    /// clock.advance(by: .seconds(1800))
    /// await engine.waitUntilHandled()
    /// #expect(try orders.state(of: 42) == .closed)
    /// ```
    nonisolated(nonsending)
    public func waitUntilHandled() async {
        var made = await stats().delivered
        while true {
            await waitUntilSettled(count: made)
            if deliveriesStopped { return }
            let now = await stats().delivered
            if now == made { return }
            made = now
        }
    }
}
