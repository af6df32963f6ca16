/// One record of the log, as a view into a decoded frame body: the id and payload point into
/// the frame's buffer and are valid only while it is (during `RecordDecoder.forEach`).
package struct RecordView {
    package var type: LogFormat.RecordType
    package var id: UnsafeRawBufferPointer
    /// SCHEDULE and RETRY only; 0 otherwise.
    package var deadline: Int64
    /// SCHEDULE, FIRE and RETRY only; 0 otherwise.
    package var attempt: UInt32
    /// SCHEDULE and SERIES only; empty otherwise.
    package var payload: UnsafeRawBufferPointer
    /// SERIES and NEXT only (zero or empty otherwise): the series' state, see `SeriesFields`.
    package var series: SeriesFields = SeriesFields()
    /// SERIES only: the encoded recurrence rule.
    package var rule: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    /// ACK_OF and RETRY_OF only (fleet frames): the generation of the delivery they settle.
    package var generation: UInt64 = 0
}

/// The state of a recurring timer's series, as SERIES and NEXT records carry it.
package struct SeriesFields: Equatable, Sendable {
    /// The scheduled time of the occurrence the timer stands for (its deadline may differ: a
    /// retry moves the deadline, not the occurrence).
    package var occurrence: Int64
    /// How many occurrences of the series the next delivery stands for (at least 1: more when
    /// the misfire policy folded missed ones into it).
    package var coalesced: UInt32
    /// Occurrences left, this one included; 0 for a series without end.
    package var remaining: UInt32

    package init(occurrence: Int64 = 0, coalesced: UInt32 = 0, remaining: UInt32 = 0) {
        self.occurrence = occurrence
        self.coalesced = coalesced
        self.remaining = remaining
    }
}

/// A record as values, for tests and tools (replay uses `RecordView`, which copies nothing).
package enum LogRecord: Equatable, Sendable, CustomStringConvertible {
    case schedule(id: [UInt8], deadline: Int64, attempt: UInt32, payload: [UInt8])
    case cancel(id: [UInt8])
    case fire(id: [UInt8], attempt: UInt32)
    case ack(id: [UInt8])
    case retry(id: [UInt8], deadline: Int64, attempt: UInt32)
    case series(id: [UInt8], deadline: Int64, attempt: UInt32, payload: [UInt8], rule: [UInt8], state: SeriesFields)
    case next(id: [UInt8], deadline: Int64, state: SeriesFields)
    case ackOf(id: [UInt8], generation: UInt64)
    case retryOf(id: [UInt8], generation: UInt64, deadline: Int64, attempt: UInt32)

    package init(_ view: RecordView) {
        let id = Array(view.id)
        switch view.type {
        case .schedule: self = .schedule(id: id, deadline: view.deadline, attempt: view.attempt, payload: Array(view.payload))
        case .cancel: self = .cancel(id: id)
        case .fire: self = .fire(id: id, attempt: view.attempt)
        case .ack: self = .ack(id: id)
        case .retry: self = .retry(id: id, deadline: view.deadline, attempt: view.attempt)
        case .series:
            self = .series(id: id, deadline: view.deadline, attempt: view.attempt, payload: Array(view.payload), rule: Array(view.rule), state: view.series)
        case .next: self = .next(id: id, deadline: view.deadline, state: view.series)
        case .ackOf: self = .ackOf(id: id, generation: view.generation)
        case .retryOf: self = .retryOf(id: id, generation: view.generation, deadline: view.deadline, attempt: view.attempt)
        }
    }

    package var id: [UInt8] {
        switch self {
        case let .schedule(id, _, _, _), let .cancel(id), let .fire(id, _), let .ack(id), let .retry(id, _, _),
             let .series(id, _, _, _, _, _), let .next(id, _, _), let .ackOf(id, _), let .retryOf(id, _, _, _): return id
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
        case let .series(_, deadline, attempt, payload, rule, state):
            return "SERIES \(name) @\(deadline) attempt \(attempt) payload \(payload.count) B rule \(rule.count) B \(state.summary)"
        case let .next(_, deadline, state): return "NEXT \(name) @\(deadline) \(state.summary)"
        case let .ackOf(_, generation): return "ACK_OF \(name) generation \(generation)"
        case let .retryOf(_, generation, deadline, attempt): return "RETRY_OF \(name) generation \(generation) @\(deadline) attempt \(attempt)"
        }
    }
}

extension SeriesFields {
    var summary: String { "occurrence \(occurrence) coalesced \(coalesced) remaining \(remaining == 0 ? "unbounded" : String(remaining))" }
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

    package mutating func ackOf(id: UnsafeRawBufferPointer, generation: UInt64) {
        appendHeader(.ackOf, id: id)
        buffer.append(varint: generation)
    }

    package mutating func retryOf(id: UnsafeRawBufferPointer, generation: UInt64, deadline: Int64, attempt: UInt32) {
        appendHeader(.retryOf, id: id)
        buffer.append(varint: generation)
        appendDeadline(deadline)
        buffer.append(varint: UInt64(attempt))
    }

    package mutating func series(
        id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer,
        rule: UnsafeRawBufferPointer, state: SeriesFields
    ) {
        precondition(payload.count <= LogFormat.maxPayloadLength && rule.count >= 1 && rule.count <= LogFormat.maxRuleLength)
        appendHeader(.series, id: id)
        appendDeadline(deadline)
        buffer.append(varint: UInt64(attempt))
        buffer.append(varint: UInt64(payload.count))
        buffer.append(payload)
        buffer.append(varint: UInt64(rule.count))
        buffer.append(rule)
        appendState(state, deadline: deadline)
    }

    package mutating func next(id: UnsafeRawBufferPointer, deadline: Int64, state: SeriesFields) {
        appendHeader(.next, id: id)
        appendDeadline(deadline)
        appendState(state, deadline: deadline)
    }

    /// The occurrence as a zigzag delta from the deadline (usually 0), then the counts.
    @inline(__always)
    private mutating func appendState(_ state: SeriesFields, deadline: Int64) {
        let delta = deadline &- state.occurrence
        buffer.append(varint: UInt64(bitPattern: (delta << 1) ^ (delta >> 63)))
        buffer.append(varint: UInt64(state.coalesced))
        buffer.append(varint: UInt64(state.remaining))
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
        case let .series(id, deadline, attempt, payload, rule, state):
            id.withUnsafeBytes { i in
                payload.withUnsafeBytes { p in
                    rule.withUnsafeBytes { r in series(id: i, deadline: deadline, attempt: attempt, payload: p, rule: r, state: state) }
                }
            }
        case let .next(id, deadline, state): id.withUnsafeBytes { next(id: $0, deadline: deadline, state: state) }
        case let .ackOf(id, generation): id.withUnsafeBytes { ackOf(id: $0, generation: generation) }
        case let .retryOf(id, generation, deadline, attempt):
            id.withUnsafeBytes { retryOf(id: $0, generation: generation, deadline: deadline, attempt: attempt) }
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

        package init(offset: Int, reason: String) {
            self.offset = offset
            self.reason = reason
        }
    }

    /// Calls `body` with each record of `bytes`, in order, and returns how many there were.
    /// ACK_OF and RETRY_OF records are malformed unless `fleet` is set (they belong only in a
    /// fleet's PostgreSQL frames).
    package static func forEach(
        in bytes: UnsafeRawBufferPointer, fleet: Bool = false, _ body: (RecordView) throws -> Void
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
            if type.isFleetOnly && !fleet {
                throw fail("an \(type == .ackOf ? "ACK_OF" : "RETRY_OF") record, which belongs only in a fleet's PostgreSQL frames")
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
            func readPayload() throws -> UnsafeRawBufferPointer {
                guard let length = reader.readVarint(), length <= UInt64(LogFormat.maxPayloadLength),
                      let payload = reader.readBytes(Int(length))
                else { throw fail("bad payload length") }
                return payload
            }
            func readState(deadline: Int64) throws -> SeriesFields {
                guard let zigzag = reader.readVarint() else { throw fail("truncated occurrence") }
                let delta = Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
                let occurrence = deadline &- delta
                guard occurrence >= 0 && occurrence <= TimerWheel.maxDeadline else { throw fail("occurrence \(occurrence) out of range") }
                guard let coalesced = reader.readVarint(), coalesced >= 1, coalesced <= UInt64(UInt32.max),
                      let remaining = reader.readVarint(), remaining <= UInt64(UInt32.max)
                else { throw fail("bad series counts") }
                return SeriesFields(occurrence: occurrence, coalesced: UInt32(coalesced), remaining: UInt32(remaining))
            }
            switch type {
            case .schedule:
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
                view.payload = try readPayload()
            case .series:
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
                view.payload = try readPayload()
                guard let length = reader.readVarint(), length >= 1, length <= UInt64(LogFormat.maxRuleLength),
                      let rule = reader.readBytes(Int(length))
                else { throw fail("bad rule length") }
                view.rule = rule
                view.series = try readState(deadline: view.deadline)
            case .next:
                view.deadline = try readDeadline()
                view.series = try readState(deadline: view.deadline)
            case .cancel, .ack:
                break
            case .fire:
                view.attempt = try readAttempt()
            case .retry:
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
            case .ackOf:
                guard let generation = reader.readVarint() else { throw fail("truncated generation") }
                view.generation = generation
            case .retryOf:
                guard let generation = reader.readVarint() else { throw fail("truncated generation") }
                view.generation = generation
                view.deadline = try readDeadline()
                view.attempt = try readAttempt()
            }
            try body(view)
            count += 1
        }
        return count
    }

    /// Every record of `bytes` as values (for tests and tools).
    package static func records(in bytes: UnsafeRawBufferPointer, fleet: Bool = false) throws -> [LogRecord] {
        var records: [LogRecord] = []
        _ = try forEach(in: bytes, fleet: fleet) { records.append(LogRecord($0)) }
        return records
    }
}
