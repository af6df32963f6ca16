/// A reference to one delivery, for `ack` and `retry`.
struct DeliveryRef: Sendable {
    var id: [UInt8]
    var handle: UInt32
    var generation: UInt32
    var attempt: Int
}

/// Where the engine sends a request's result: a suspended caller, or a callback (the
/// `hourglass run` command submits in order without waiting).
struct Reply<T: Sendable>: Sendable {
    private enum Target: Sendable {
        case continuation(UnsafeContinuation<Result<T, HourglassError>, Never>)
        case callback(@Sendable (Result<T, HourglassError>) -> Void)
    }

    // A continuation is held as it is (no closure around it: a queued call allocates nothing
    // for its reply).
    private let target: Target

    init(_ continuation: UnsafeContinuation<Result<T, HourglassError>, Never>) { target = .continuation(continuation) }

    init(callback: @escaping @Sendable (Result<T, HourglassError>) -> Void) { target = .callback(callback) }

    func resume(returning result: Result<T, HourglassError>) {
        switch target {
        case let .continuation(continuation): continuation.resume(returning: result)
        case let .callback(body): body(result)
        }
    }
}

/// Work left for the engine's leader by a caller that found it busy (see `Engine`).
enum Request: Sendable {
    case schedule(TimerRequest, Reply<Void>)
    case scheduleBatch([TimerRequest], Reply<Void>)
    case scheduleSeries(SeriesRequest, Reply<Void>)
    case cancel([UInt8], Reply<Bool>)
    case ack(DeliveryRef, Reply<Bool>)
    /// Acknowledges many deliveries; answers how many took effect.
    case ackBatch([DeliveryRef], Reply<Int>)
    /// At-most-once: a consumer takes a delivery, which counts as delivered from now on.
    case take(DeliveryRef, Reply<Bool>)
    case retry(DeliveryRef, delayMilliseconds: Int64, Reply<Bool>)
    /// Answered after the engine has fired what is due at the clock's current time.
    case stats(UnsafeContinuation<EngineStats, Never>)
    case checkpoint(Reply<Void>)
    case close(Reply<Void>)
}

/// Replies held back until the group is written (or durable), answered in the order the
/// requests came.
struct Replies {
    private enum Entry {
        case void(Reply<Void>, Result<Void, HourglassError>)
        case bool(Reply<Bool>, Result<Bool, HourglassError>)
        case int(Reply<Int>, Result<Int, HourglassError>)
    }

    private var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }

    mutating func append(_ reply: Reply<Void>, _ result: Result<Void, HourglassError>) { entries.append(.void(reply, result)) }
    mutating func append(_ reply: Reply<Bool>, _ result: Result<Bool, HourglassError>) { entries.append(.bool(reply, result)) }
    mutating func append(_ reply: Reply<Int>, _ result: Result<Int, HourglassError>) { entries.append(.int(reply, result)) }
    mutating func append(contentsOf other: Replies) { entries.append(contentsOf: other.entries) }

    mutating func failAll(with error: HourglassError) {
        entries = entries.map { entry in
            switch entry {
            case let .void(reply, _): return .void(reply, .failure(error))
            case let .bool(reply, _): return .bool(reply, .failure(error))
            case let .int(reply, _): return .int(reply, .failure(error))
            }
        }
    }

    func resumeAll() {
        for entry in entries {
            switch entry {
            case let .void(reply, result): reply.resume(returning: result)
            case let .bool(reply, result): reply.resume(returning: result)
            case let .int(reply, result): reply.resume(returning: result)
            }
        }
    }
}
