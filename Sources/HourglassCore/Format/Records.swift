/// One record of the log, as a view into a decoded frame body: the id and payload point into
/// the frame's buffer and are valid only while it is (during `RecordDecoder.forEach`).
package struct RecordView {
    package var type: LogFormat.RecordType
    package var id: UnsafeRawBufferPointer
    /// SCHEDULE and RETRY only; 0 otherwise.
    package var deadline: Int64
    /// SCHEDULE, FIRE and RETRY only; 0 otherwise.
    package var attempt: UInt32
    /// SCHEDULE only; empty otherwise.
    package var payload: UnsafeRawBufferPointer
}

/// A record as values, for tests and tools (replay uses `RecordView`, which copies nothing).
package enum LogRecord: Equatable, Sendable, CustomStringConvertible {
    case schedule(id: [UInt8], deadline: Int64, attempt: UInt32, payload: [UInt8])
    case cancel(id: [UInt8])
    case fire(id: [UInt8], attempt: UInt32)
    case ack(id: [UInt8])
    case retry(id: [UInt8], deadline: Int64, attempt: UInt32)

    package init(_ view: RecordView) {
        let id = Array(view.id)
        switch view.type {
        case .schedule: self = .schedule(id: id, deadline: view.deadline, attempt: view.attempt, payload: Array(view.payload))
        case .cancel: self = .cancel(id: id)
        case .fire: self = .fire(id: id, attempt: view.attempt)
        case .ack: self = .ack(id: id)
        case .retry: self = .retry(id: id, deadline: view.deadline, attempt: view.attempt)
        }
    }

    package var id: [UInt8] {
        switch self {
        case let .schedule(id, _, _, _), let .cancel(id), let .fire(id, _), let .ack(id), let .retry(id, _, _): return id
        }
    }

    package var description: String {
        let name = String(decoding: id, as: UTF8.self)
        switch self {
        case let .schedule(_, deadline, attempt, payload): return "SCHEDULE \(name) @\(deadline) attempt \(attempt) payload \(payload.count) B"
        case .cancel: return "CANCEL \(name)"
        case let .fire(_, attempt): return "FIRE \(name) attempt \(attempt)"
        case .ack: return "ACK \(name)"
        case let .retry(_, deadline, attempt): return "RETRY \(name) @\(deadline) attempt \(attempt)"
        }
    }
}

/// Appends records to a frame body. Deadlines are written as zigzag deltas from the previous
/// deadline in the frame (timers scheduled together tend to be due together).
package struct RecordEncoder: ~Copyable {
    package var buffer: ByteWriter
    package private(set) var count: Int = 0
    private var previousDeadline: Int64 = 0

    package init(capacity: Int = 64 << 10) { buffer = ByteWriter(capacity: capacity) }

    package var byteCount: Int { buffer.count }
    package var isEmpty: Bool { count == 0 }

    /// Starts a new frame body.
    package mutating func reset() {
        buffer.removeAll()
        count = 0
        previousDeadline = 0
    }

    @inline(__always)
    private mutating func appendHeader(_ type: LogFormat.RecordType, id: UnsafeRawBufferPointer) {
        precondition(id.count >= 1 && id.count <= LogFormat.maxIDLength, "record id length \(id.count)")
        buffer.append(byte: type.rawValue)
        buffer.append(varint: UInt64(id.count))
        buffer.append(id)
        count += 1
    }

    @inline(__always)
    private mutating func appendDeadline(_ deadline: Int64) {
        let delta = deadline &- previousDeadline
        buffer.append(varint: UInt64(bitPattern: (delta << 1) ^ (delta >> 63)))
        previousDeadline = deadline
    }

    package mutating func schedule(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer) {
        precondition(payload.count <= LogFormat.maxPayloadLength)
        appendHeader(.schedule, id: id)
        appendDeadline(deadline)
        buffer.append(varint: UInt64(attempt))
        buffer.append(varint: UInt64(payload.count))
        buffer.append(payload)
    }

    package mutating func cancel(id: UnsafeRawBufferPointer) { appendHeader(.cancel, id: id) }

    package mutating func fire(id: UnsafeRawBufferPointer, attempt: UInt32) {
        appendHeader(.fire, id: id)
        buffer.append(varint: UInt64(attempt))
    }

    package mutating func ack(id: UnsafeRawBufferPointer) { appendHeader(.ack, id: id) }

    package mutating func retry(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32) {
        appendHeader(.retry, id: id)
        appendDeadline(deadline)
        buffer.append(varint: UInt64(attempt))
    }

    /// Appends a record given as values.
    package mutating func append(_ record: LogRecord) {
        switch record {
        case let .schedule(id, deadline, attempt, payload):
            id.withUnsafeBytes { i in payload.withUnsafeBytes { p in schedule(id: i, deadline: deadline, attempt: attempt, payload: p) } }
        case let .cancel(id): id.withUnsafeBytes { cancel(id: $0) }
        case let .fire(id, attempt): id.withUnsafeBytes { fire(id: $0, attempt: attempt) }
        case let .ack(id): id.withUnsafeBytes { ack(id: $0) }
        case let .retry(id, deadline, attempt): id.withUnsafeBytes { retry(id: $0, deadline: deadline, attempt: attempt) }
        }
    }
}

/// Decodes a frame body into records. Every length is checked against what is left; the
/// first malformed byte ends decoding with a description and the offset of the bad record.
package enum RecordDecoder {
    package struct Failure: Error, Equatable, Sendable {
        /// Offset of the bad record in the raw (decompressed) body.
        package var offset: Int
        package var reason: String
    }

    /// Calls `body` with each record of `bytes`, in order, and returns how many there were.
    package static func forEach(
        in bytes: UnsafeRawBufferPointer, _ body: (RecordView) throws -> Void
    ) throws -> Int {
        var reader = ByteReader(bytes)
        var previousDeadline: Int64 = 0
        var count = 0
        while !reader.isAtEnd {
            let start = reader.offset
            func fail(_ reason: String) -> Failure { Failure(offset: start, reason: reason) }
            guard let rawType = reader.readByte(), let type = LogFormat.RecordType(rawValue: rawType) else {
                throw fail("unknown record type \(bytes[start])")
            }
            guard let idLength = reader.readVarint(), idLength >= 1, idLength <= UInt64(LogFormat.maxIDLength),
                  let id = reader.readBytes(Int(idLength))
            else { throw fail("bad id length in a \(type) record") }
            var view = RecordView(type: type, id: id, deadline: 0, attempt: 0, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            func readDeadline() throws -> Int64 {
                guard let zigzag = reader.readVarint() else { throw fail("truncated deadline") }
                let delta = Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
                let deadline = previousDeadline &+ delta
                guard deadline >= 0 && deadline <= TimerWheel.maxDeadline else { throw fail("deadline \(deadline) out of range") }
                previousDeadline = deadline
                return deadline
            }
            func readAttempt() throws -> UInt32 {
                guard let attempt = reader.readVarint(), attempt <= UInt64(UInt32.max) else { throw fail("bad attempt") }
                return UInt32(attempt)
            }
            switch type {
            case .schedule:
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
                guard let length = reader.readVarint(), length <= UInt64(LogFormat.maxPayloadLength),
                      let payload = reader.readBytes(Int(length))
                else { throw fail("bad payload length") }
                view.payload = payload
            case .cancel, .ack:
                break
            case .fire:
                view.attempt = try readAttempt()
            case .retry:
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
            }
            try body(view)
            count += 1
        }
        return count
    }

    /// Every record of `bytes` as values (for tests and tools).
    package static func records(in bytes: UnsafeRawBufferPointer) throws -> [LogRecord] {
        var records: [LogRecord] = []
        _ = try forEach(in: bytes) { records.append(LogRecord($0)) }
        return records
    }
}
