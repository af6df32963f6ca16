/// The user's key for a timer: an order id, a payment id. Bytes or a string; unique among the
/// timers held, so that scheduling an id again replaces the timer (an idempotent upsert).
public struct TimerID: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The id's bytes (UTF-8 when made from a string).
    public let bytes: [UInt8]

    /// The id made of a string's UTF-8 bytes.
    public init(_ string: String) { bytes = Array(string.utf8) }
    /// The id made of these bytes.
    public init<Bytes: Sequence<UInt8>>(bytes: Bytes) { self.bytes = Array(bytes) }
    /// The id made of a string literal's UTF-8 bytes: `engine.cancel(id: "order-42")`.
    public init(stringLiteral value: String) { self.init(value) }

    /// The id as a string, when its bytes are valid UTF-8.
    public var string: String? { String(validating: bytes, as: UTF8.self) }

    /// The string, or `0x` and hexadecimal bytes when they are not UTF-8.
    public var description: String {
        if let string { return string }
        return "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// A point in wall-clock time, in milliseconds since the Unix epoch. Deadlines are wall-clock
/// times because they must survive restarts; the monotonic clock only paces the engine.
public struct Deadline: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var millisecondsSinceEpoch: Int64

    /// The deadline at `millisecondsSinceEpoch`.
    public init(millisecondsSinceEpoch: Int64) { self.millisecondsSinceEpoch = millisecondsSinceEpoch }

    /// The latest deadline accepted: 9999-12-31T23:59:59.999Z.
    public static let latest = Deadline(millisecondsSinceEpoch: 253_402_300_799_999)
    /// The earliest deadline accepted: the Unix epoch.
    public static let earliest = Deadline(millisecondsSinceEpoch: 0)
    /// Every deadline the engine accepts.
    public static let validRange = earliest.millisecondsSinceEpoch ... latest.millisecondsSinceEpoch

    /// Whether `a` comes before `b`.
    public static func < (a: Deadline, b: Deadline) -> Bool { a.millisecondsSinceEpoch < b.millisecondsSinceEpoch }

    /// The deadline `duration` after this one (before it when `duration` is negative), rounded
    /// up to whole milliseconds so that a timer never fires before the time asked for.
    ///
    /// Saturates: a sum past the Int64 bounds is `Int64.max` (or `Int64.min`), never a wrapped
    /// value on the other side of the epoch. Such a deadline is outside `validRange`, so
    /// `schedule(id:at:)` refuses it with `deadlineOutOfRange` rather than firing it at once.
    public static func + (deadline: Deadline, duration: Duration) -> Deadline {
        let milliseconds = duration.wholeMillisecondsRoundedUp
        return Deadline(millisecondsSinceEpoch: sumClampedToInt64Bounds(deadline.millisecondsSinceEpoch, milliseconds))
    }

    /// Milliseconds since the epoch, with the unit.
    public var description: String { "\(millisecondsSinceEpoch) ms" }
}

extension Duration {
    /// Whole milliseconds, rounded up: toward the future, for negative durations too (1.5 ms is
    /// 2 ms, -1.5 ms is -1 ms). Saturates at the Int64 bounds.
    var wholeMillisecondsRoundedUp: Int64 {
        // `components` divides toward zero: `attoseconds` has the sign of the whole duration, so
        // dropping a negative remainder already rounds up.
        let (seconds, attoseconds) = components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return seconds < 0 ? .min : .max }
        let fraction = attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 > 0 ? 1 : 0)
        return sumClampedToInt64Bounds(ms, fraction)
    }
}

/// `a + b`, or the Int64 bound the sum passed.
private func sumClampedToInt64Bounds(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if !overflow { return sum }
    return b < 0 ? .min : .max
}
