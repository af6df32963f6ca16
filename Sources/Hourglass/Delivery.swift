import DequeModule
import Synchronization

/// A fired timer handed to the consumer.
///
/// In at-least-once mode it stays in flight until `HourglassEngine.ack(_:)` (or `retry`); if
/// that does not come within `Configuration.redeliveryTimeout`, or the process restarts, it is
/// delivered again with `attempt` one higher. `id` is stable across deliveries, so consumers can
/// de-duplicate.
public struct Delivery: Sendable, CustomStringConvertible {
    /// The timer's id, as scheduled.
    public let id: TimerID
    /// The deadline the timer was scheduled for (for a retried timer: the retry's time).
    public let deadline: Deadline
    /// The timer's payload, as scheduled.
    public let payload: [UInt8]
    /// 1 for the first delivery; one more for each redelivery or retry.
    public let attempt: Int
    /// When the engine handed the timer over.
    public let firedAt: Deadline
    /// For a recurring timer: the scheduled time of the occurrence this delivery is (the same
    /// in every redelivery and retry of it, so consumers can de-duplicate by id and occurrence).
    /// nil for a one-shot timer.
    public let occurrence: Deadline?
    /// How many occurrences of a recurring timer this delivery stands for: 1, or more when the
    /// misfire policy folded missed occurrences into it (`MisfirePolicy.fireOnceNow`) or skipped
    /// them (`.skip`). 1 for a one-shot timer.
    public let coalesced: Int

    let handle: UInt32
    let generation: UInt32
    /// The serial of the engine that delivered it (`EngineSerial`).
    let engine: UInt64

    var ref: DeliveryRef { DeliveryRef(id: id.bytes, handle: handle, generation: generation, attempt: attempt) }

    package init(
        id: TimerID, deadline: Deadline, payload: [UInt8], attempt: Int, firedAt: Deadline, occurrence: Deadline?, coalesced: Int,
        handle: UInt32, generation: UInt32, engine: UInt64
    ) {
        self.id = id
        self.deadline = deadline
        self.payload = payload
        self.attempt = attempt
        self.firedAt = firedAt
        self.occurrence = occurrence
        self.coalesced = coalesced
        self.handle = handle
        self.generation = generation
        self.engine = engine
    }

    /// A fleet's delivery: its 64-bit generation in `handle` and `generation`, and
    /// `Delivery.fleetEngine` as its engine (no local engine's serial), so that a local engine
    /// refuses to acknowledge it.
    package init(fleet id: TimerID, deadline: Deadline, payload: [UInt8], attempt: Int, firedAt: Deadline, fleetGeneration: UInt64) {
        self.init(id: id, deadline: deadline, payload: payload, attempt: attempt, firedAt: firedAt, occurrence: nil, coalesced: 1,
                  handle: UInt32(truncatingIfNeeded: fleetGeneration >> 32), generation: UInt32(truncatingIfNeeded: fleetGeneration),
                  engine: Delivery.fleetEngine)
    }

    /// The engine serial of fleet deliveries.
    package static let fleetEngine: UInt64 = .max

    /// Whether a fleet node delivered it.
    package var isFleetDelivery: Bool { engine == Delivery.fleetEngine }

    /// A fleet delivery's generation (meaningless for a local engine's).
    package var fleetGeneration: UInt64 { UInt64(handle) << 32 | UInt64(generation) }

    /// How late the delivery was, in milliseconds (fired-at minus deadline).
    public var latenessMilliseconds: Int64 { firedAt.millisecondsSinceEpoch - deadline.millisecondsSinceEpoch }

    /// The payload as UTF-8 text, when it is valid UTF-8.
    public var payloadString: String? { String(validating: payload, as: UTF8.self) }

    /// Whether the delivery is an occurrence of a recurring timer.
    public var isRecurring: Bool { occurrence != nil }

    /// The id, attempt, deadline and firing time, for logs.
    public var description: String {
        var text = "\(id) attempt \(attempt) due \(deadline.millisecondsSinceEpoch) fired \(firedAt.millisecondsSinceEpoch)"
        if let occurrence { text += " occurrence \(occurrence.millisecondsSinceEpoch)" + (coalesced > 1 ? " coalescing \(coalesced)" : "") }
        return text
    }
}

/// The fired timers, as an `AsyncSequence`. Several tasks may iterate it at once: each
/// delivery goes to one of them. The sequence ends when the engine closes.
///
/// A consumer that finds deliveries waiting takes them without suspending; one that finds none
/// waits, and a batch of fired timers wakes only as many waiting consumers as it has timers.
/// Under `DeliveryMode.atMostOnce` a delivery counts as delivered when a consumer takes it here.
public struct Deliveries: AsyncSequence, Sendable {
    /// One fired timer.
    public typealias Element = Delivery
    let queue: DeliveryQueue
    let taker: Taker?

    init(queue: DeliveryQueue, taker: Taker?) {
        self.queue = queue
        self.taker = taker
    }

    /// The deliveries `queue` hands out (a fleet node's: acknowledged through the node).
    package init(queue: DeliveryQueue) { self.init(queue: queue, taker: nil) }

    /// Takes deliveries one at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: DeliveryQueue
        let taker: Taker?

        /// The next delivery, waiting for one when none is buffered; nil once the engine is
        /// closed or `stopDeliveries()` was called.
        public mutating func next() async -> Delivery? { await next(isolation: #isolation) }

        /// The next delivery, on the caller's actor (see `next()`).
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Delivery? {
            while let delivery = await queue.next() {
                guard let taker else { return delivery }
                if await taker.take(delivery) { return delivery }
                queue.noteSettled()  // cancelled or replaced before the take: nothing to handle
            }
            return nil
        }
    }

    /// An iterator; several may take from the same engine at once.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue, taker: taker) }

    /// The deliveries in batches of up to `maxCount`: each batch is what was waiting when the
    /// consumer asked (at least one; it waits for one when none is), for consumers that handle
    /// and acknowledge many at once (`HourglassEngine.ack(contentsOf:)`).
    public func batches(maxCount: Int) -> Batches { Batches(queue: queue, taker: taker, maxCount: Swift.max(1, maxCount)) }

    /// Deliveries in batches (see `batches(maxCount:)`).
    public struct Batches: AsyncSequence, Sendable {
        /// The deliveries waiting when the consumer asked (at least one).
        public typealias Element = [Delivery]
        let queue: DeliveryQueue
        let taker: Taker?
        let maxCount: Int

        /// Takes batches of deliveries.
        public struct AsyncIterator: AsyncIteratorProtocol {
            let queue: DeliveryQueue
            let taker: Taker?
            let maxCount: Int

            /// The next batch, waiting for a delivery when none is buffered; nil once
            /// deliveries have ended.
            public mutating func next() async -> [Delivery]? { await next(isolation: #isolation) }

            /// The next batch, on the caller's actor (see `next()`).
            public mutating func next(isolation actor: isolated (any Actor)?) async -> [Delivery]? {
                while let batch = await queue.next(maxCount: maxCount) {
                    guard let taker else { return batch }
                    var taken: [Delivery] = []
                    for delivery in batch where await taker.take(delivery) { taken.append(delivery) }
                    if taken.count < batch.count { queue.noteSettled(batch.count - taken.count) }
                    if !taken.isEmpty { return taken }
                }
                return nil
            }
        }

        /// An iterator of batches.
        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue, taker: taker, maxCount: maxCount) }
    }

    /// Deliveries buffered and not yet taken by a consumer.
    public var buffered: Int { queue.buffered }
}

/// Deliveries waiting for a consumer, and consumers waiting for a delivery.
package final class DeliveryQueue: Sendable {
    private struct Waiter {
        var id: UInt64
        var continuation: UnsafeContinuation<Delivery?, Never>
    }

    private struct State {
        var buffer = Deque<Delivery>()
        var waiters = Deque<Waiter>()
        var nextWaiterID: UInt64 = 0
        var finished = false
        /// Deliveries settled: handled by `consume` (its outcome applied), not taken under at
        /// most once, or dropped by `finish()`.
        var settled = 0
        var settleWaiters: [(target: Int, continuation: UnsafeContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    package init() {}

    var buffered: Int { state.withLock { $0.buffer.count } }

    /// Hands deliveries to waiting consumers, buffering the rest. Once finished, drops them:
    /// they stay in flight (pending, at most once) and are delivered again after a reopen.
    package func push(_ deliveries: some Sequence<Delivery>) {
        var handOffs: [(UnsafeContinuation<Delivery?, Never>, Delivery)] = []
        state.withLock { state in
            if state.finished { return }
            for delivery in deliveries {
                if let waiter = state.waiters.popFirst() {
                    handOffs.append((waiter.continuation, delivery))
                } else {
                    state.buffer.append(delivery)
                }
            }
        }
        for (continuation, delivery) in handOffs { continuation.resume(returning: delivery) }
    }

    /// Ends the sequence: waiting consumers get nil; buffered deliveries are dropped (they stay
    /// in flight in the log and are delivered again after reopening). Idempotent.
    package func finish() {
        let (waiters, settleWaiters) = state.withLock { state in
            state.finished = true
            state.settled += state.buffer.count
            state.buffer.removeAll()
            defer {
                state.waiters.removeAll()
                state.settleWaiters.removeAll()
            }
            return (state.waiters, state.settleWaiters)
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
        for waiter in settleWaiters { waiter.continuation.resume() }
    }

    var isFinished: Bool { state.withLock { $0.finished } }

    /// Every buffered delivery, taken at once (none when none is buffered: never waits).
    func takeBuffered() -> [Delivery] {
        state.withLock { state in
            defer { state.buffer.removeAll() }
            return Array(state.buffer)
        }
    }

    /// Counts `count` deliveries as settled (see `State.settled`), waking who waits for them.
    func noteSettled(_ count: Int = 1) {
        let ready = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            state.settled += count
            guard !state.settleWaiters.isEmpty else { return [] }
            let settled = state.settled
            let ready = state.settleWaiters.filter { $0.target <= settled }.map(\.continuation)
            state.settleWaiters.removeAll { $0.target <= settled }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Returns once `target` deliveries have been settled, or the sequence has finished.
    nonisolated(nonsending)
    func waitUntilSettled(_ target: Int) async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.finished || state.settled >= target { return true }
                state.settleWaiters.append((target, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    nonisolated(nonsending)
    func next() async -> Delivery? {
        if let ready = state.withLock({ $0.buffer.popFirst() }) { return ready }
        return await wait()?.first
    }

    /// Up to `maxCount` deliveries: those buffered, or, when none is, the next one to come.
    nonisolated(nonsending)
    func next(maxCount: Int) async -> [Delivery]? {
        let ready = state.withLock { state -> [Delivery] in
            let count = min(maxCount, state.buffer.count)
            defer { state.buffer.removeFirst(count) }
            return Array(state.buffer.prefix(count))
        }
        if !ready.isEmpty { return ready }
        return await wait()
    }

    /// Waits for the next delivery (nil once finished).
    nonisolated(nonsending)
    private func wait() async -> [Delivery]? {
        let waiterID = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let delivery = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Delivery?, Never>) in
                let immediate: Delivery?? = state.withLock { state in
                    if let ready = state.buffer.popFirst() { return .some(ready) }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiters.append(Waiter(id: waiterID, continuation: continuation))
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == waiterID }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(returning: nil)
        }
        return delivery.map { [$0] }
    }
}
