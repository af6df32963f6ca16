import HourglassCore
import Synchronization

/// A recurring timer's rule, compiled: the period or the parsed cron expression with its zone's
/// rules, the misfire policy, and the bytes a SERIES record carries (see `Docs/FORMAT.md`).
/// Rules are shared: every series with the same rule holds one instance (`SeriesRules`).
final class SeriesRule: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case every(milliseconds: Int64)
        case cron(CronExpression, ZoneRules)
    }

    let kind: Kind
    let misfire: MisfirePolicy
    /// The rule as SERIES records carry it.
    let encoded: [UInt8]

    private enum Code {
        static let every: UInt8 = 1
        static let cron: UInt8 = 2
        static let policies: [MisfirePolicy] = [.fireOnceNow, .fireAll, .skip]
    }

    /// The compiled rule of a caller's recurrence, from a process-wide cache of the recent ones
    /// (a service schedules many series with few rules: each is parsed once, not per call).
    static func compiled(_ recurrence: Recurrence) throws(HourglassError) -> SeriesRule {
        let key = RuleKey(kind: recurrence.kind, misfire: recurrence.misfire)
        if let rule = cache.withLock({ $0[key] }) { return rule }
        let rule = try SeriesRule(recurrence)
        cache.withLock { cache in
            if cache.count >= 1024 { cache.removeAll() }
            cache[key] = rule
        }
        return rule
    }

    private struct RuleKey: Hashable {
        var kind: Recurrence.Kind
        var misfire: MisfirePolicy
    }

    private static let cache = Mutex<[RuleKey: SeriesRule]>([:])

    /// Compiles a caller's recurrence: parses the expression and loads the zone.
    init(_ recurrence: Recurrence) throws(HourglassError) {
        misfire = recurrence.misfire
        var bytes: [UInt8] = []
        switch recurrence.kind {
        case let .every(ms):
            guard ms >= 1 && ms <= Deadline.latest.millisecondsSinceEpoch else {
                throw .invalidRecurrence("the period of a recurring timer must be 1 ms ... \(Deadline.latest.millisecondsSinceEpoch) ms, not \(ms) ms")
            }
            kind = .every(milliseconds: ms)
            bytes.append(Code.every)
            bytes.append(Code.policies.firstIndex(of: misfire).map(UInt8.init)!)
            appendVarint(UInt64(ms), to: &bytes)
        case let .cron(expression, zoneName):
            let parsed: CronExpression
            do throws(CronExpressionError) {
                parsed = try CronExpression(parsing: expression)
            } catch {
                throw .invalidCronExpression(field: error.field, position: error.position, reason: error.reason)
            }
            let zone = try SeriesRule.zone(zoneName)
            kind = .cron(parsed, zone)
            bytes.append(Code.cron)
            bytes.append(Code.policies.firstIndex(of: misfire).map(UInt8.init)!)
            appendString(parsed.text, to: &bytes)
            appendString(zone.name, to: &bytes)
            guard bytes.count <= LogFormat.maxRuleLength else {
                throw .invalidRecurrence("a cron expression and its time zone name take at most \(LogFormat.maxRuleLength - 12) bytes")
            }
        }
        encoded = bytes
    }

    /// Decodes the rule of a SERIES record (recovery, checkpoint loading).
    init(decoding bytes: UnsafeRawBufferPointer) throws(HourglassError) {
        var reader = ByteReader(bytes)
        func malformed(_ what: String) -> HourglassError { .invalidRecurrence("a logged recurrence rule is malformed (\(what))") }
        guard let code = reader.readByte(), let policy = reader.readByte(), Int(policy) < Code.policies.count else {
            throw malformed("header")
        }
        misfire = Code.policies[Int(policy)]
        switch code {
        case Code.every:
            guard let ms = reader.readVarint(), ms >= 1, ms <= UInt64(Deadline.latest.millisecondsSinceEpoch), reader.isAtEnd else {
                throw malformed("period")
            }
            kind = .every(milliseconds: Int64(ms))
        case Code.cron:
            guard let text = readString(&reader), let zoneName = readString(&reader), reader.isAtEnd else { throw malformed("cron") }
            let parsed: CronExpression
            do throws(CronExpressionError) {
                parsed = try CronExpression(parsing: text)
            } catch {
                throw malformed("\(error)")
            }
            kind = .cron(parsed, try SeriesRule.zone(zoneName))
        default:
            throw malformed("kind \(code)")
        }
        encoded = Array(bytes)
    }

    private static func zone(_ name: String) throws(HourglassError) -> ZoneRules {
        do throws(ZoneRulesError) {
            return try ZoneRules.named(name)
        } catch {
            throw .unknownTimeZone(name: error.name, reason: error.reason)
        }
    }

    /// "every 60000 ms", "cron '30 2 * * *' in Europe/Berlin", with a policy other than the default.
    var description: String {
        var text: String
        switch kind {
        case let .every(ms): text = "every \(ms) ms"
        case let .cron(expression, zone): text = "cron '\(expression.text)' in \(zone.name)"
        }
        if misfire != .fireOnceNow { text += ", misfire \(misfire)" }
        return text
    }

    /// The first occurrence strictly after `milliseconds`; nil when the series has none left
    /// before the end of year 9999.
    @inline(__always)
    func occurrence(after milliseconds: Int64) -> Int64? {
        let limit = Deadline.latest.millisecondsSinceEpoch
        switch kind {
        case let .every(period):
            let (next, overflow) = milliseconds.addingReportingOverflow(period)
            return overflow || next > limit ? nil : next
        case let .cron(expression, zone):
            return expression.nextOccurrence(after: milliseconds, in: zone, limit: limit)
        }
    }

    /// The occurrences due from `first` (itself due) through `now`, at most `cap` of them: the
    /// last one and how many. Exact for periods, and for cron series up to `exactLimit`
    /// occurrences; past that the latest due one is found directly and the count is estimated
    /// from the spacing of the first ones (see `Docs/RECURRING.md`).
    func due(from first: Int64, through now: Int64, cap: UInt32) -> (last: Int64, count: UInt32) {
        precondition(first <= now && cap >= 1)
        switch kind {
        case let .every(period):
            let count = UInt64((now - first) / period) + 1
            let taken = min(count, UInt64(cap))
            return (first + Int64(taken - 1) * period, UInt32(taken))
        case .cron:
            let exactLimit: UInt32 = 4096
            var last = first
            var count: UInt32 = 1
            while count < cap, let next = occurrence(after: last), next <= now {
                if count == exactLimit {
                    // Many missed: find the latest due one from `now` backwards, and estimate
                    // how many lie between from the mean spacing so far.
                    let latest = latestOccurrence(through: now, after: last)
                    let spacing = max(1, (last - first) / Int64(count - 1))
                    let estimate = UInt64(count) + UInt64((latest - last) / spacing)
                    return (latest, UInt32(min(estimate, UInt64(cap))))
                }
                last = next
                count += 1
            }
            return (last, count)
        }
    }

    /// The latest occurrence at or before `now` (one is known: `floor`, which is before it).
    private func latestOccurrence(through now: Int64, after floor: Int64) -> Int64 {
        var window: Int64 = 1000
        var start = max(floor, now - window)
        // Widen the window until it holds an occurrence; then walk forward to the last one.
        while start > floor, occurrence(after: start).map({ $0 > now }) ?? true {
            window = window.multipliedReportingOverflow(by: 2).overflow ? .max : window * 2
            start = max(floor, now - window)
        }
        var last = start
        while let next = occurrence(after: last), next <= now { last = next }
        return last
    }
}

/// The rules of the series an engine holds, each stored once and named by its index (which a
/// series' trailer keeps). Touched by the leader only (and by recovery before the engine runs).
/// Rules are not dropped when their last series ends: distinct rules are few, and a restart
/// keeps only those still in use.
final class SeriesRules: @unchecked Sendable {
    private(set) var rules: [SeriesRule] = []
    private var indexes: [[UInt8]: UInt32] = [:]
    /// The rule found last by `intern(encoded:)`: replay meets the same rule record after record.
    private var lastDecoded: UInt32? = nil

    var count: Int { rules.count }

    /// The index of `rule`, adding it when no equal rule is held.
    func intern(_ rule: SeriesRule) -> UInt32 {
        if let index = indexes[rule.encoded] { return index }
        let index = UInt32(rules.count)
        rules.append(rule)
        indexes[rule.encoded] = index
        return index
    }

    /// The index of an encoded rule (from a SERIES record), compiling it the first time.
    func intern(encoded bytes: UnsafeRawBufferPointer) throws(HourglassError) -> UInt32 {
        if let last = lastDecoded, rules[Int(last)].encoded.elementsEqual(bytes) { return last }
        let index: UInt32
        if let known = indexes[Array(bytes)] {
            index = known
        } else {
            index = intern(try SeriesRule(decoding: bytes))
        }
        lastDecoded = index
        return index
    }

    subscript(index: UInt32) -> SeriesRule { rules[Int(index)] }
}

/// What a recurring timer keeps after its payload in the arena: 20 bytes, little-endian.
///
/// | offset | field       |                                                      |
/// |--------|-------------|------------------------------------------------------|
/// | 0      | occurrence  | i64: the scheduled time of the current occurrence     |
/// | 8      | rule        | u32: index in the engine's `SeriesRules`              |
/// | 12     | remaining   | u32: occurrences left, this one included; 0: no end   |
/// | 16     | coalesced   | u32: occurrences the next delivery stands for         |
struct SeriesTrailer: Equatable {
    static let size = 20
    var occurrence: Int64
    var rule: UInt32
    var remaining: UInt32
    var coalesced: UInt32

    var fields: SeriesFields { SeriesFields(occurrence: occurrence, coalesced: coalesced, remaining: remaining) }

    init(rule: UInt32, fields: SeriesFields) {
        self.occurrence = fields.occurrence
        self.rule = rule
        self.remaining = fields.remaining
        self.coalesced = fields.coalesced
    }

    init(_ bytes: UnsafeRawBufferPointer) {
        occurrence = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: Int64.self))
        rule = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        remaining = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        coalesced = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
    }

    func store(into bytes: UnsafeMutableRawBufferPointer) {
        bytes.storeBytes(of: occurrence.littleEndian, toByteOffset: 0, as: Int64.self)
        bytes.storeBytes(of: rule.littleEndian, toByteOffset: 8, as: UInt32.self)
        bytes.storeBytes(of: remaining.littleEndian, toByteOffset: 12, as: UInt32.self)
        bytes.storeBytes(of: coalesced.littleEndian, toByteOffset: 16, as: UInt32.self)
    }

    /// A series timer's stored payload: the caller's payload, then the trailer.
    static func payload(_ user: UnsafeRawBufferPointer, trailer: SeriesTrailer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: user.count + size) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            if user.count > 0 { raw.baseAddress!.copyMemory(from: user.baseAddress!, byteCount: user.count) }
            trailer.store(into: UnsafeMutableRawBufferPointer(rebasing: raw[user.count...]))
            count = user.count + size
        }
    }
}

/// The tag the wheel keeps for a recurring timer (one-shot timers have 0).
let seriesTag: UInt8 = 1

extension TimerWheel {
    func isSeries(_ handle: TimerHandle) -> Bool { tag(of: handle) == seriesTag }

    func seriesTrailer(of handle: TimerHandle) -> SeriesTrailer {
        withPayload(of: handle) { SeriesTrailer(UnsafeRawBufferPointer(rebasing: $0[($0.count - SeriesTrailer.size)...])) }
    }

    mutating func setSeriesTrailer(_ trailer: SeriesTrailer, of handle: TimerHandle) {
        withMutablePayload(of: handle) { trailer.store(into: UnsafeMutableRawBufferPointer(rebasing: $0[($0.count - SeriesTrailer.size)...])) }
    }

    /// Schedules a recurring timer: the caller's payload with the trailer after it (an upsert,
    /// as `schedule`).
    mutating func scheduleSeries(
        id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer, trailer: SeriesTrailer
    ) throws(CapacityError) -> TimerHandle {
        let stored = SeriesTrailer.payload(payload, trailer: trailer)
        return try stored.withUnsafeBytes { bytes in
            Result { () throws(CapacityError) in
                try schedule(id: id, deadline: deadline, payload: bytes, attempt: attempt, tag: seriesTag).handle
            }
        }.get()
    }

    /// Moves a series on: the new state, a new generation (so that references to earlier
    /// deliveries match nothing), pending at `deadline` with attempt 1.
    mutating func armSeries(_ handle: TimerHandle, at deadline: Int64, _ trailer: SeriesTrailer) {
        setSeriesTrailer(trailer, of: handle)
        renew(handle)
        rearm(handle, deadline: deadline, attempt: 1)
    }

    /// The caller's payload: without the trailer of a recurring timer.
    func withUserPayload<R>(of handle: TimerHandle, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let series = isSeries(handle)
        return withPayload(of: handle) { body(series ? UnsafeRawBufferPointer(rebasing: $0[..<($0.count - SeriesTrailer.size)]) : $0) }
    }
}

/// A recurring timer as a caller asked for it, validated and compiled.
struct SeriesRequest: Sendable {
    var id: TimerID
    /// The first occurrence.
    var first: Int64
    var payload: [UInt8]
    var rule: SeriesRule
    /// The count, or 0 for none.
    var remaining: UInt32
}

private func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
    var v = value
    while v >= 0x80 {
        bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
        v >>= 7
    }
    bytes.append(UInt8(v))
}

private func appendString(_ text: String, to bytes: inout [UInt8]) {
    let utf8 = Array(text.utf8)
    appendVarint(UInt64(utf8.count), to: &bytes)
    bytes.append(contentsOf: utf8)
}

private func readString(_ reader: inout ByteReader) -> String? {
    guard let length = reader.readVarint(), length <= UInt64(LogFormat.maxRuleLength), let bytes = reader.readBytes(Int(length)) else { return nil }
    return String(validating: bytes, as: UTF8.self)
}
