/// Everything that can go wrong, with what happened, where, and what to do.
///
/// Input errors (`emptyID`, `idTooLong`, `payloadTooLarge`, `deadlineOutOfRange`) leave the engine
/// unchanged. Storage errors name the file and the offset. Once a write or sync has failed the
/// engine refuses further changes with `stopped`: nothing acknowledged is lost, and reopening
/// the directory recovers everything that was acknowledged.
public enum HourglassError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The timer id has no bytes.
    case emptyID
    /// The timer id is longer than the configured limit.
    case idTooLong(length: Int, limit: Int)
    /// The payload is longer than the configured limit (`Configuration.maxPayloadBytes`).
    case payloadTooLarge(length: Int, limit: Int)
    /// The deadline is outside `Deadline.validRange` (the Unix epoch to the end of year 9999).
    case deadlineOutOfRange(milliseconds: Int64)
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// A recurring timer's cron expression is malformed: `field` ("minute", "day of week", or
    /// "expression" for the whole) and the 1-based character `position` where the problem starts.
    case invalidCronExpression(field: String, position: Int, reason: String)
    /// A recurring timer's time zone is not in the zone database ($TZDIR or /usr/share/zoneinfo).
    case unknownTimeZone(name: String, reason: String)
    /// A recurring timer's rule cannot be used (a period or count out of range, a series without
    /// any occurrence left, a malformed rule in the log).
    case invalidRecurrence(String)
    /// The engine was closed; open it again to continue.
    case closed
    /// Another engine (in this or another process) holds the directory.
    case directoryLocked(path: String)
    /// A file does not hold what it should; `offset` is in bytes from the file's start.
    case corruption(file: String, offset: Int64, reason: String)
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32, message: String)
    /// The disk is full.
    case diskFull(path: String)
    /// The engine holds as many timers, or as many bytes, as it can.
    case capacityExceeded(String)
    /// The engine stopped accepting changes after an earlier failure, which `reason` describes.
    case stopped(reason: String)
    /// A fleet's call to PostgreSQL failed: what was being done, and the server's or the
    /// connection's message. For an append (a schedule, cancel, ack or retry) the outcome is
    /// unknown: the call may have committed; repeat it (schedules, cancels and acks are
    /// idempotent).
    case database(operation: String, message: String)

    /// What happened, where, and what to do.
    public var description: String {
        switch self {
        case .emptyID:
            return "timer id is empty: give every timer a non-empty id"
        case let .idTooLong(length, limit):
            return "timer id is \(length) bytes, over the limit of \(limit) bytes (Configuration.maxIDBytes)"
        case let .payloadTooLarge(length, limit):
            return "payload is \(length) bytes, over the limit of \(limit) bytes (Configuration.maxPayloadBytes)"
        case let .deadlineOutOfRange(ms):
            return "deadline \(ms) ms since the epoch is outside 0 ... \(Deadline.latest.millisecondsSinceEpoch) (1970 to the end of year 9999)"
        case let .invalidConfiguration(message):
            return "invalid configuration: \(message)"
        case let .invalidCronExpression(field, position, reason):
            return "invalid cron expression: \(field) at position \(position): \(reason)"
        case let .unknownTimeZone(name, reason):
            return "time zone '\(name)': \(reason) (zones are read from $TZDIR or /usr/share/zoneinfo; Debian: the tzdata package)"
        case let .invalidRecurrence(message):
            return "invalid recurring timer: \(message)"
        case .closed:
            return "the engine is closed: open it again to continue"
        case let .directoryLocked(path):
            return "\(path) is in use by another engine (in this or another process): close that one first"
        case let .corruption(file, offset, reason):
            return "\(file) at offset \(offset): \(reason)"
        case let .io(operation, path, errno, message):
            return "\(operation) failed on \(path): \(message) (errno \(errno))"
        case let .diskFull(path):
            return "no space left on the device holding \(path): free space, then reopen"
        case let .capacityExceeded(message):
            return "capacity exceeded: \(message)"
        case let .database(operation, message):
            return "PostgreSQL: \(operation) failed: \(message)"
        case let .stopped(reason):
            return "the engine stopped accepting changes after a failure (\(reason)); close and reopen it: everything acknowledged is recovered"
        }
    }
}
