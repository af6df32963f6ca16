#if canImport(Glibc)
import Glibc
#endif
import HourglassCore
import Testing

/// UTC seconds of a UTC date and time (CivilCalendar is pinned against literal instants in
/// `civilCalendar` below).
func utcSeconds(_ year: Int64, _ month: Int, _ day: Int, _ hour: Int = 0, _ minute: Int = 0, _ second: Int = 0) -> Int64 {
    CivilCalendar.days(year: year, month: month, day: day) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
}

private func zone(_ name: String) throws -> ZoneRules { try ZoneRules.named(name) }

private func error(loading name: String) -> ZoneRulesError? {
    do {
        _ = try ZoneRules.named(name)
        return nil
    } catch {
        return error
    }
}

/// A TZif file: version byte, transitions, local time types (offsets), footer (v2+ only).
private func tzif(version: UInt8, transitions: [Int64], indices: [UInt8], offsets: [Int32], footer: String?) -> [UInt8] {
    func be(_ value: UInt64, _ size: Int) -> [UInt8] { (0 ..< size).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * (size - 1 - $0))) } }
    func block(timeSize: Int) -> [UInt8] {
        var bytes: [UInt8] = Array("TZif".utf8) + [version] + [UInt8](repeating: 0, count: 15)
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for count in [0, 0, 0, transitions.count, offsets.count, 4] { bytes += be(UInt64(count), 4) }
        for t in transitions { bytes += be(UInt64(bitPattern: t), timeSize) }
        bytes += indices
        for (k, offset) in offsets.enumerated() { bytes += be(UInt64(UInt32(bitPattern: offset)), 4) + [UInt8(k), 0] }
        bytes += Array("ABC\0".utf8)
        return bytes
    }
    var file = block(timeSize: 4)
    if version != 0 {
        file += block(timeSize: 8)
        file += [0x0A] + Array((footer ?? "").utf8) + [0x0A]
    }
    return file
}

@Suite("ZoneRules")
struct ZoneRulesTests {
    @Test("civil calendar against known instants")
    func civilCalendar() {
        #expect(CivilCalendar.days(year: 1970, month: 1, day: 1) == 0)
        #expect(CivilCalendar.days(year: 2026, month: 3, day: 8) * 86_400 + 7 * 3600 == 1_772_953_200)
        #expect(CivilCalendar.days(year: 2028, month: 2, day: 29) * 86_400 == 1_835_395_200)
        #expect(CivilCalendar.days(year: 2104, month: 2, day: 29) * 86_400 == 4_233_686_400)
        #expect(CivilCalendar.days(year: 9999, month: 12, day: 31) * 86_400 + 86_399 == 253_402_300_799)
        #expect(CivilCalendar.days(year: 1969, month: 12, day: 31) == -1)
        #expect(CivilCalendar.date(days: 20_520) == (2026, 3, 8))
        #expect(CivilCalendar.date(days: -1) == (1969, 12, 31))
        #expect(CivilCalendar.weekday(days: 0) == 4)  // Thursday
        #expect(CivilCalendar.weekday(days: -1) == 3)
        #expect(CivilCalendar.weekday(days: CivilCalendar.days(year: 2026, month: 3, day: 8)) == 0)  // Sunday
        for days in stride(from: Int64(-800_000), through: 3_000_000, by: 997) {
            let date = CivilCalendar.date(days: days)
            #expect(CivilCalendar.days(year: date.year, month: date.month, day: date.day) == days)
        }
        #expect(!CivilCalendar.isLeapYear(2100) && CivilCalendar.isLeapYear(2000) && CivilCalendar.isLeapYear(2028))
    }

    @Test("UTC is built in and cached")
    func utc() throws {
        #expect(ZoneRules.utc.offset(atUTC: 1_800_000_000) == 0)
        #expect(try ZoneRules.named("UTC") === ZoneRules.utc)
        #expect(ZoneRules.utc.name == "UTC")
    }

    @Test("one instance per name")
    func cached() async throws {
        let first = try zone("Europe/Berlin")
        #expect(try zone("Europe/Berlin") === first)
        let loaded = await withTaskGroup(of: ObjectIdentifier?.self) { group in
            for _ in 0 ..< 8 { group.addTask { (try? ZoneRules.named("Asia/Tokyo")).map(ObjectIdentifier.init) } }
            var ids: Set<ObjectIdentifier?> = []
            for await id in group { ids.insert(id) }
            return ids
        }
        #expect(loaded.count == 1 && loaded.first! != nil)
    }

    @Test("America/New_York 2026: 2026-03-08 07:00 UTC and 2026-11-01 06:00 UTC")
    func newYork() throws {
        let ny = try zone("America/New_York")
        #expect(ny.offset(atUTC: 1_772_953_199) == -18_000)
        #expect(ny.offset(atUTC: 1_772_953_200) == -14_400)
        #expect(ny.offset(atUTC: 1_793_512_799) == -14_400)
        #expect(ny.offset(atUTC: 1_793_512_800) == -18_000)
        // Before the first transition (1883): local mean time, -4:56:02.
        #expect(ny.offset(atUTC: -3_000_000_000) == -17_762)
    }

    @Test("Europe/Berlin 2026: 2026-03-29 01:00 UTC and 2026-10-25 01:00 UTC")
    func berlin() throws {
        let berlin = try zone("Europe/Berlin")
        #expect(berlin.offset(atUTC: 1_774_745_999) == 3600)
        #expect(berlin.offset(atUTC: 1_774_746_000) == 7200)
        #expect(berlin.offset(atUTC: 1_792_889_999) == 7200)
        #expect(berlin.offset(atUTC: 1_792_890_000) == 3600)
    }

    @Test("Australia/Sydney 2026: DST ends 2026-04-04 16:00 UTC, starts 2026-10-03 16:00 UTC")
    func sydney() throws {
        let sydney = try zone("Australia/Sydney")
        #expect(sydney.offset(atUTC: 1_775_318_399) == 39_600)
        #expect(sydney.offset(atUTC: 1_775_318_400) == 36_000)
        #expect(sydney.offset(atUTC: 1_791_043_199) == 36_000)
        #expect(sydney.offset(atUTC: 1_791_043_200) == 39_600)
    }

    @Test("after the table (2040): the footer's rule", arguments: [
        ("America/New_York", utcSeconds(2040, 3, 11, 7), utcSeconds(2040, 11, 4, 6), Int32(-18_000), Int32(-14_400)),
        ("Europe/Berlin", utcSeconds(2040, 3, 25, 1), utcSeconds(2040, 10, 28, 1), 3600, 7200),
        ("Australia/Sydney", utcSeconds(2040, 10, 6, 16), utcSeconds(2040, 3, 31, 16), 36_000, 39_600),
        ("Australia/Lord_Howe", utcSeconds(2040, 10, 6, 15, 30), utcSeconds(2040, 3, 31, 15), 37_800, 39_600),
    ])
    func after2037(name: String, starts: Int64, ends: Int64, standard: Int32, daylight: Int32) throws {
        let rules = try zone(name)
        #expect(rules.offset(atUTC: starts - 1) == standard)
        #expect(rules.offset(atUTC: starts) == daylight)
        #expect(rules.offset(atUTC: ends - 1) == daylight)
        #expect(rules.offset(atUTC: ends) == standard)
        let footer = try #require(rules.footer)
        let changes = try #require(footer.changes(inYear: 2040))
        #expect(changes.daylightStarts == starts && changes.daylightEnds == ends)
    }

    @Test("the footer agrees with the table in 2030, every 15 minutes", arguments: [
        "America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe", "America/Sao_Paulo", "Asia/Tokyo", "Europe/London",
    ])
    func footerAgreesWithTable(name: String) throws {
        let rules = try zone(name)
        let footer = try #require(rules.footer)
        var disagreements = 0
        var t = utcSeconds(2030, 1, 1)
        while t < utcSeconds(2031, 1, 1) {
            if footer.offset(atUTC: t) != rules.offset(atUTC: t) { disagreements += 1 }
            t += 900
        }
        #expect(disagreements == 0)
        // Exactly at the 2030 changes too.
        if let changes = footer.changes(inYear: 2030) {
            for instant in [changes.daylightStarts - 1, changes.daylightStarts, changes.daylightEnds - 1, changes.daylightEnds] {
                #expect(footer.offset(atUTC: instant) == rules.offset(atUTC: instant))
            }
        }
    }

    @Test("POSIX TZ strings")
    func posixRules() throws {
        let ny = try PosixTimeZoneRule(parsing: "EST5EDT,M3.2.0,M11.1.0")
        #expect(ny.standardOffset == -18_000 && ny.daylightOffset == -14_400)
        #expect(ny.changes(inYear: 2026)! == (1_772_953_200, 1_793_512_800))
        #expect(ny.offset(atUTC: 1_772_953_199) == -18_000 && ny.offset(atUTC: 1_772_953_200) == -14_400)

        let berlin = try PosixTimeZoneRule(parsing: "CET-1CEST,M3.5.0,M10.5.0/3")
        #expect(berlin.changes(inYear: 2026)! == (1_774_746_000, 1_792_890_000))

        let lordHowe = try PosixTimeZoneRule(parsing: "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0")
        #expect(lordHowe.standardOffset == 37_800 && lordHowe.daylightOffset == 39_600)
        // Starts 2026-10-04 02:00 +10:30, ends 2026-04-05 02:00 +11.
        #expect(lordHowe.changes(inYear: 2026)! == (1_791_041_400, 1_775_314_800))
        #expect(lordHowe.offset(atUTC: utcSeconds(2026, 7, 1)) == 37_800)
        #expect(lordHowe.offset(atUTC: utcSeconds(2026, 12, 31, 23)) == 39_600)
        #expect(lordHowe.offset(atUTC: utcSeconds(2027, 1, 1, 0, 30)) == 39_600)

        let tokyo = try PosixTimeZoneRule(parsing: "JST-9")
        #expect(tokyo.daylightOffset == nil && tokyo.changes(inYear: 2026) == nil)
        #expect(tokyo.offset(atUTC: 0) == 32_400 && tokyo.offset(atUTC: 253_402_300_799) == 32_400)

        let noRules = try PosixTimeZoneRule(parsing: "EST5EDT")  // glibc's default rules
        #expect(noRules.changes(inYear: 2026)! == (1_772_953_200, 1_793_512_800))

        let seconds = try PosixTimeZoneRule(parsing: "<-0330>3:30:15")
        #expect(seconds.standardOffset == -12_615)

        // Jn never counts February 29; n does.
        let julian = try PosixTimeZoneRule(parsing: "AAA0BBB,J60/0,59/0")
        #expect(julian.daylightOffset == 3600)
        #expect(julian.changes(inYear: 2024)! == (utcSeconds(2024, 3, 1), utcSeconds(2024, 2, 29) - 3600))
        #expect(julian.changes(inYear: 2023)! == (utcSeconds(2023, 3, 1), utcSeconds(2023, 3, 1) - 3600))

        // Permanent daylight time, the RFC 8536 way: stays daylight across the year's end.
        let permanent = try PosixTimeZoneRule(parsing: "EST5EDT,0/0,J365/25")
        for t in [utcSeconds(2030, 7, 1), utcSeconds(2030, 12, 31, 23), utcSeconds(2031, 1, 1, 4), utcSeconds(2031, 1, 1, 5), utcSeconds(2031, 1, 1, 6)] {
            #expect(permanent.offset(atUTC: t) == -14_400)
        }
        // Negative and long change times.
        let negative = try PosixTimeZoneRule(parsing: "XXX3YYY,M3.5.0/-2,M10.5.0/-1")
        #expect(negative.changes(inYear: 2026)! == (utcSeconds(2026, 3, 28, 22 + 3), utcSeconds(2026, 10, 24, 23 + 2)))
    }

    @Test("bad POSIX TZ strings", arguments: ["", "E5", "EST", "EST5EDT,M13.1.0,M11.1.0", "EST5EDT,M3.2.0", "EST5EDT,M3.6.0,M11.1.0",
                                            "EST25", "EST5EDT,J0,J365", "<>5", "EST5EDT,M3.2.0,M11.1.0x", "EST5EDT,M3.2.0/168,M11.1.0"])
    func badPosixRules(text: String) {
        #expect(throws: ZoneRulesError.self) { try PosixTimeZoneRule(parsing: text) }
    }

    @Test("wall times to instants: one, none in the gap, two in the overlap")
    func instants() throws {
        let ny = try zone("America/New_York")
        func local(_ y: Int64, _ m: Int, _ d: Int, _ h: Int, _ mi: Int) -> Int64 { utcSeconds(y, m, d, h, mi) }
        let normal = ny.instants(atLocal: local(2026, 7, 1, 12, 0))
        #expect(normal.first == utcSeconds(2026, 7, 1, 16) && normal.second == nil)
        let gap = ny.instants(atLocal: local(2026, 3, 8, 2, 30))
        #expect(gap.first == nil && gap.second == nil)
        let beforeGap = ny.instants(atLocal: local(2026, 3, 8, 1, 59))
        #expect(beforeGap.first == utcSeconds(2026, 3, 8, 6, 59) && beforeGap.second == nil)
        let afterGap = ny.instants(atLocal: local(2026, 3, 8, 3, 0))
        #expect(afterGap.first == utcSeconds(2026, 3, 8, 7) && afterGap.second == nil)
        let overlap = ny.instants(atLocal: local(2026, 11, 1, 1, 30))
        #expect(overlap.first == utcSeconds(2026, 11, 1, 5, 30) && overlap.second == utcSeconds(2026, 11, 1, 6, 30))
        let afterOverlap = ny.instants(atLocal: local(2026, 11, 1, 2, 0))
        #expect(afterOverlap.first == utcSeconds(2026, 11, 1, 7) && afterOverlap.second == nil)
    }

    @Test("TZif version 1, and a slim version 2 file (no transitions, the footer only)")
    func handBuiltFiles() throws {
        let v1 = try ZoneRules(name: "Test/V1", tzif: tzif(version: 0, transitions: [1000, 2000], indices: [1, 0], offsets: [3600, 7200], footer: nil))
        #expect(v1.offset(atUTC: 999) == 3600)
        #expect(v1.offset(atUTC: 1000) == 7200)
        #expect(v1.offset(atUTC: 1999) == 7200)
        #expect(v1.offset(atUTC: 2000) == 3600)
        #expect(v1.offset(atUTC: 1 << 40) == 3600)
        #expect(v1.footer == nil)

        let slim = try ZoneRules(name: "Test/Slim", tzif: tzif(version: UInt8(ascii: "2"), transitions: [], indices: [], offsets: [-18_000],
                                                            footer: "EST5EDT,M3.2.0,M11.1.0"))
        #expect(slim.offset(atUTC: utcSeconds(2026, 7, 1)) == -14_400)
        #expect(slim.offset(atUTC: 1_772_953_199) == -18_000 && slim.offset(atUTC: 1_772_953_200) == -14_400)

        // v3 with transitions before the footer takes over.
        let v3 = try ZoneRules(name: "Test/V3", tzif: tzif(version: UInt8(ascii: "3"), transitions: [-(1 << 40), 1_000_000_000], indices: [0, 1],
                                                          offsets: [0, 32_400], footer: "JST-9"))
        #expect(v3.offset(atUTC: 999_999_999) == 0 && v3.offset(atUTC: 1_000_000_000) == 32_400 && v3.offset(atUTC: 1 << 40) == 32_400)

        #expect(throws: ZoneRulesError(name: "Bad", reason: "not a TZif file (bad magic)")) {
            try ZoneRules(name: "Bad", tzif: Array("TZip".utf8) + [UInt8](repeating: 0, count: 60))
        }
        #expect(throws: ZoneRulesError(name: "Bad", reason: "not a TZif file (truncated header)")) { try ZoneRules(name: "Bad", tzif: [0x54]) }
        let truncated = Array(tzif(version: 0, transitions: [1000, 2000], indices: [1, 0], offsets: [3600, 7200], footer: nil).dropLast(6))
        #expect(throws: ZoneRulesError(name: "Bad", reason: "not a TZif file (truncated)")) { try ZoneRules(name: "Bad", tzif: truncated) }
        #expect(throws: ZoneRulesError(name: "Bad", reason: "not a TZif file (transitions out of order)")) {
            try ZoneRules(name: "Bad", tzif: tzif(version: 0, transitions: [2000, 1000], indices: [1, 0], offsets: [3600, 7200], footer: nil))
        }
        #expect(throws: ZoneRulesError(name: "Bad", reason: "not a TZif file (bad local time type 2)")) {
            try ZoneRules(name: "Bad", tzif: tzif(version: 0, transitions: [1000], indices: [2], offsets: [3600, 7200], footer: nil))
        }
        #expect(throws: ZoneRulesError.self) {
            try ZoneRules(name: "Bad", tzif: tzif(version: UInt8(ascii: "2"), transitions: [], indices: [], offsets: [0], footer: "EST5EDT,M3"))
        }
    }

    @Test("names that could leave the directory are refused", arguments: [
        ("", "invalid name (empty)"),
        ("/etc/localtime", "invalid name (absolute path)"),
        ("../etc/passwd", "invalid name ('..' component)"),
        ("America/../../etc/passwd", "invalid name ('..' component)"),
        ("America/..", "invalid name ('..' component)"),
        (String(repeating: "a", count: 256), "invalid name (over 255 bytes)"),
        ("Europe/Berlin\u{0}x", "invalid name (NUL byte)"),
    ])
    func rejectedNames(name: String, reason: String) {
        #expect(error(loading: name) == ZoneRulesError(name: name, reason: reason))
    }

    @Test("unknown zones, directories, files that are not TZif")
    func unknownZones() throws {
        let directory = getenv("TZDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/share/zoneinfo"
        #expect(error(loading: "Mars/Olympus_Mons") == ZoneRulesError(name: "Mars/Olympus_Mons", reason: "no such zone in \(directory)"))
        #expect(error(loading: "America/New_York/x") == ZoneRulesError(name: "America/New_York/x", reason: "no such zone in \(directory)"))
        #expect(error(loading: "America") == ZoneRulesError(name: "America", reason: "no such zone in \(directory) (not a file)"))
        if access(directory + "/zone1970.tab", R_OK) == 0 {
            #expect(error(loading: "zone1970.tab") == ZoneRulesError(name: "zone1970.tab", reason: "not a TZif file (bad magic)"))
        }
        #expect(ZoneRulesError(name: "X", reason: "y").description == "time zone 'X': y")
    }
}
