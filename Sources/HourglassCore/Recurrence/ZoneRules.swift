#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Why a zone could not be loaded.
package struct ZoneRulesError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The zone name as asked for.
    package var name: String
    /// "invalid name (...)", "no such zone in /usr/share/zoneinfo", "not a TZif file (...)", ...
    package var reason: String

    package init(name: String, reason: String) {
        self.name = name
        self.reason = reason
    }

    package var description: String { "time zone '\(name)': \(reason)" }
}

/// The UTC offsets of one IANA zone over time (TZif file from the zone database, with its POSIX TZ
/// footer for instants after the last transition).
///
/// Files are read from `$TZDIR` when it is set and not empty, otherwise from /usr/share/zoneinfo;
/// TZif versions 1 to 4 are read (the 64-bit block of version 2 and later). Before the first
/// transition the file's first local time type is in force; from the last transition on, the
/// footer's rule (`PosixTimeZoneRule`), or the last transition's offset when there is none.
/// Leap-second files ("right/...") are refused. "UTC" is built in and never read from a file.
///
/// Lookups are a binary search over the transitions (a few hundred in a "fat" file), or the
/// footer's rule computed for the year around the instant.
package final class ZoneRules: Sendable {
    /// The name as loaded ("Europe/Berlin").
    package let name: String
    /// Transition instants, UTC seconds, ascending.
    let transitions: [Int64]
    /// The offset in force from each transition on (seconds east).
    let offsets: [Int32]
    /// The offset before the first transition.
    let initialOffset: Int32
    /// The rule after the last transition.
    package let footer: PosixTimeZoneRule?

    /// Coordinated Universal Time: offset 0 at every instant.
    package static let utc = ZoneRules(name: "UTC", transitions: [], offsets: [], initialOffset: 0, footer: nil)

    /// The longest name accepted, in bytes.
    package static let maxNameLength = 255

    /// The largest file read.
    static let maxFileBytes = 1 << 20

    private static let cache = Mutex<[String: ZoneRules]>(["UTC": ZoneRules.utc])

    init(name: String, transitions: [Int64], offsets: [Int32], initialOffset: Int32, footer: PosixTimeZoneRule?) {
        self.name = name
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.footer = footer
    }

    /// Loads `name` ("Europe/Berlin", "UTC", "America/New_York") from $TZDIR or
    /// /usr/share/zoneinfo; cached by name (one instance per name per process, thread-safe).
    ///
    /// Names that could leave the directory are refused: empty, longer than 255 bytes, absolute,
    /// with a ".." component or a NUL byte. Failures are not cached.
    package static func named(_ name: String) throws(ZoneRulesError) -> ZoneRules {
        if let cached = cache.withLock({ $0[name] }) { return cached }
        try validate(name)
        let directory = zoneDirectory()
        let bytes = try readFile(directory + "/" + name, name: name, directory: directory)
        let loaded = try ZoneRules(name: name, tzif: bytes)
        return cache.withLock { table in
            if let existing = table[name] { return existing }
            table[name] = loaded
            return loaded
        }
    }

    /// Parses the TZif file `bytes` (for tests and tools; `named` caches, this does not).
    package convenience init(name: String, tzif bytes: [UInt8]) throws(ZoneRulesError) {
        let table: TZifTable
        do { table = try TZifTable(bytes) } catch { throw ZoneRulesError(name: name, reason: "not a TZif file (\(error.reason))") }
        var footer: PosixTimeZoneRule?
        if let text = table.footer, !text.isEmpty {
            do { footer = try PosixTimeZoneRule(parsing: text) } catch { throw ZoneRulesError(name: name, reason: "bad TZ footer '\(text)': \(error.reason)") }
        }
        self.init(name: name, transitions: table.transitions, offsets: table.offsets, initialOffset: table.initialOffset, footer: footer)
    }

    /// The offset from UTC (seconds, east positive) in force at `utcSeconds`.
    package func offset(atUTC utcSeconds: Int64) -> Int32 {
        transitions.withUnsafeBufferPointer { times in
            let count = times.count
            if count == 0 { return footer?.offset(atUTC: utcSeconds) ?? initialOffset }
            if utcSeconds < times[0] { return initialOffset }
            if utcSeconds >= times[count - 1] { return footer?.offset(atUTC: utcSeconds) ?? offsets[count - 1] }
            // times[low] <= utcSeconds < times[high]
            var low = 0
            var high = count - 1
            while high - low > 1 {
                let middle = (low + high) >> 1
                if times[middle] <= utcSeconds { low = middle } else { high = middle }
            }
            return offsets[low]
        }
    }

    /// The UTC instants (seconds) whose local wall time is `local` (seconds since 1970-01-01 in
    /// local time), ascending: none in a gap (spring forward), two in an overlap (fall back),
    /// otherwise one.
    ///
    /// An instant u is one of them when u + offset(u) = local; the offsets tried are those in
    /// force 26 hours either side (no offset reaches 26 hours) and those they lead to, which finds
    /// every instant unless three transitions fall within two days.
    package func instants(atLocal local: Int64) -> (first: Int64?, second: Int64?) {
        let window: Int64 = 26 * 3600
        var tried: (Int32, Int32, Int32, Int32) = (0, 0, 0, 0)
        var triedCount = 0
        var found: (Int64, Int64) = (0, 0)
        var foundCount = 0
        var pending: (Int32, Int32) = (offset(atUTC: local - window), offset(atUTC: local + window))
        var pendingCount = 2
        while pendingCount > 0 && triedCount < 4 {
            let candidate = pending.0
            pending.0 = pending.1
            pendingCount -= 1
            if triedCount > 0 && tried.0 == candidate { continue }
            if triedCount > 1 && tried.1 == candidate { continue }
            if triedCount > 2 && tried.2 == candidate { continue }
            switch triedCount {
            case 0: tried.0 = candidate
            case 1: tried.1 = candidate
            case 2: tried.2 = candidate
            default: tried.3 = candidate
            }
            triedCount += 1
            let instant = local - Int64(candidate)
            let actual = offset(atUTC: instant)
            if actual == candidate {
                if foundCount == 0 { found.0 = instant } else if foundCount == 1 { found.1 = instant }
                foundCount += 1
            } else if pendingCount < 2 {
                if pendingCount == 0 { pending.0 = actual } else { pending.1 = actual }
                pendingCount += 1
            }
        }
        switch foundCount {
        case 0: return (nil, nil)
        case 1: return (found.0, nil)
        default: return (min(found.0, found.1), max(found.0, found.1))
        }
    }

    // MARK: Loading

    static func validate(_ name: String) throws(ZoneRulesError) {
        func fail(_ why: String) -> ZoneRulesError { ZoneRulesError(name: name, reason: "invalid name (\(why))") }
        let utf8 = name.utf8
        if utf8.isEmpty { throw fail("empty") }
        if utf8.count > maxNameLength { throw fail("over \(maxNameLength) bytes") }
        if utf8.first == UInt8(ascii: "/") { throw fail("absolute path") }
        if utf8.contains(0) { throw fail("NUL byte") }
        if name.split(separator: "/", omittingEmptySubsequences: false).contains("..") { throw fail("'..' component") }
    }

    /// $TZDIR when set and not empty, else /usr/share/zoneinfo.
    static func zoneDirectory() -> String {
        if let value = getenv("TZDIR"), value.pointee != 0 {
            var directory = String(cString: value)
            while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
            return directory
        }
        return "/usr/share/zoneinfo"
    }

    static func readFile(_ path: String, name: String, directory: String) throws(ZoneRulesError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw ZoneRulesError(name: name, reason: "no such zone in \(directory)") }
            throw ZoneRulesError(name: name, reason: "cannot open \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw ZoneRulesError(name: name, reason: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw ZoneRulesError(name: name, reason: "no such zone in \(directory) (not a file)") }
        guard status.st_size <= maxFileBytes else { throw ZoneRulesError(name: name, reason: "not a TZif file (over \(maxFileBytes) bytes)") }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ZoneRulesError(name: name, reason: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            filled += n
        }
        bytes.removeLast(bytes.count - filled)
        return bytes
    }
}

/// The contents of a TZif file (RFC 8536) that offsets need: transitions, their offsets, the
/// initial offset and the footer.
struct TZifTable {
    struct Failure: Error {
        var reason: String
    }

    var transitions: [Int64] = []
    var offsets: [Int32] = []
    var initialOffset: Int32 = 0
    /// The TZ string of a version 2+ file (may be empty); nil for version 1.
    var footer: String?

    init(_ bytes: [UInt8]) throws(Failure) {
        var reader = Reader(bytes: bytes)
        let header = try reader.header()
        if header.version == 0 {
            try read(&reader, header, timeSize: 4)
            return
        }
        // Skip the 32-bit block, read the 64-bit one and the footer.
        try reader.skip(header.blockSize(timeSize: 4))
        let header2 = try reader.header()
        try read(&reader, header2, timeSize: 8)
        guard try reader.byte() == 0x0A else { throw Failure(reason: "no footer") }
        var text: [UInt8] = []
        while true {
            let b = try reader.byte()
            if b == 0x0A { break }
            text.append(b)
        }
        footer = String(decoding: text, as: UTF8.self)
    }

    private mutating func read(_ reader: inout Reader, _ header: Header, timeSize: Int) throws(Failure) {
        guard header.leapCount == 0 else { throw Failure(reason: "leap-second files are not supported") }
        guard header.typeCount >= 1 else { throw Failure(reason: "no local time types") }
        var times: [Int64] = []
        times.reserveCapacity(header.timeCount)
        for _ in 0 ..< header.timeCount {
            let time = timeSize == 4 ? Int64(Int32(bitPattern: UInt32(try reader.integer(4)))) : Int64(bitPattern: try reader.integer(8))
            if let last = times.last, time <= last { throw Failure(reason: "transitions out of order") }
            times.append(time)
        }
        var indices: [Int] = []
        indices.reserveCapacity(header.timeCount)
        for _ in 0 ..< header.timeCount {
            let index = Int(try reader.byte())
            guard index < header.typeCount else { throw Failure(reason: "bad local time type \(index)") }
            indices.append(index)
        }
        var typeOffsets: [Int32] = []
        for _ in 0 ..< header.typeCount {
            let offset = Int32(bitPattern: UInt32(try reader.integer(4)))
            guard offset > -26 * 3600 && offset < 26 * 3600 else { throw Failure(reason: "offset \(offset) out of range") }
            typeOffsets.append(offset)
            try reader.skip(2)  // isdst, abbreviation index
        }
        try reader.skip(header.characterCount + header.standardCount + header.utcCount)
        transitions = times
        offsets = indices.map { typeOffsets[$0] }
        initialOffset = typeOffsets[0]
    }

    /// The counts of a TZif header.
    struct Header {
        var version: UInt8
        var utcCount: Int
        var standardCount: Int
        var leapCount: Int
        var timeCount: Int
        var typeCount: Int
        var characterCount: Int

        /// Bytes of the data block after this header.
        func blockSize(timeSize: Int) -> Int {
            timeCount * (timeSize + 1) + typeCount * 6 + characterCount + leapCount * (timeSize + 4) + standardCount + utcCount
        }
    }

    /// A bounds-checked cursor.
    struct Reader {
        let bytes: [UInt8]
        var index = 0

        mutating func byte() throws(Failure) -> UInt8 {
            guard index < bytes.count else { throw Failure(reason: "truncated") }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func skip(_ count: Int) throws(Failure) {
            guard count >= 0 && count <= bytes.count - index else { throw Failure(reason: "truncated") }
            index += count
        }

        /// A big-endian unsigned integer of `size` bytes.
        mutating func integer(_ size: Int) throws(Failure) -> UInt64 {
            guard size <= bytes.count - index else { throw Failure(reason: "truncated") }
            var value: UInt64 = 0
            for k in 0 ..< size { value = value << 8 | UInt64(bytes[index + k]) }
            index += size
            return value
        }

        mutating func header() throws(Failure) -> Header {
            guard bytes.count - index >= 44 else { throw Failure(reason: "truncated header") }
            guard bytes[index] == 0x54, bytes[index + 1] == 0x5A, bytes[index + 2] == 0x69, bytes[index + 3] == 0x66 else {
                throw Failure(reason: "bad magic")
            }
            let versionByte = bytes[index + 4]
            let version: UInt8
            switch versionByte {
            case 0: version = 0
            case UInt8(ascii: "2") ... UInt8(ascii: "9"): version = versionByte - UInt8(ascii: "0")
            default: throw Failure(reason: "unknown version \(versionByte)")
            }
            index += 20
            var counts: [Int] = []
            for _ in 0 ..< 6 {
                let count = Int(try integer(4))
                guard count <= 1 << 20 else { throw Failure(reason: "count \(count) too large") }
                counts.append(count)
            }
            return Header(version: version, utcCount: counts[0], standardCount: counts[1], leapCount: counts[2],
                          timeCount: counts[3], typeCount: counts[4], characterCount: counts[5])
        }
    }
}
