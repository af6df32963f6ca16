/// One timer to schedule, as the engine receives it (validated by the caller's side).
struct _ScheduleItem: Sendable {
    var id: [UInt8]
    var deadline: Int64
    var payload: [UInt8]
}

/// A reference to one delivery, for `ack` and `retry`.
struct _DeliveryRef: Sendable {
    var id: [UInt8]
    var handle: UInt32
    var generation: UInt32
    var attempt: Int
}

typealias _Reply<T> = UnsafeContinuation<Result<T, HourglassError>, Never>

/// Work handed to the engine thread.
enum _Request: Sendable {
    case schedule(_ScheduleItem, _Reply<Void>)
    case scheduleBatch([_ScheduleItem], _Reply<Void>)
    case cancel([UInt8], _Reply<Bool>)
    case ack(_DeliveryRef, _Reply<Bool>)
    case retry(_DeliveryRef, delayMilliseconds: Int64, _Reply<Bool>)
    /// Answered after the engine has fired what is due at the clock's current time.
    case stats(UnsafeContinuation<EngineStats, Never>)
    case checkpoint(_Reply<Void>)
    case close(_Reply<Void>)
}

/// A snapshot of the engine's counters.
public struct EngineStats: Sendable, Equatable {
    /// Timers waiting for their deadline.
    public var pending: Int
    /// Timers delivered and not yet acknowledged.
    public var inFlight: Int
    /// Deliveries made so far (first deliveries and redeliveries).
    public var delivered: Int
    /// Of those, redeliveries after a timeout or a restart.
    public var redelivered: Int
    public var acknowledged: Int
    public var retried: Int
    /// Deliveries waiting for a consumer to take them.
    public var buffered: Int
    /// The earliest deadline among pending timers (or cascade point before it).
    public var nextDeadline: Deadline?
    /// Bytes of memory the timers use.
    public var memoryBytes: Int
    /// Log bytes written since the engine opened (0 in memory).
    public var logBytesWritten: Int
    /// Frames (group commits) written since the engine opened.
    public var framesWritten: Int
    /// Syncs (fsync, msync) since the engine opened.
    public var syncs: Int
}
