/// A POSIX TZ string, as in the footer of a TZif file: the rule a zone follows after its last
/// listed transition ("EST5EDT,M3.2.0,M11.1.0", "CET-1CEST,M3.5.0,M10.5.0/3", "JST-9").
///
/// Form: `std offset [dst [offset] [,start[/time],end[/time]]]`. Names are three or more letters
/// or `<...>` quoted (letters, digits, `+`, `-`). Offsets are `[+|-]hh[:mm[:ss]]` west of UTC, as
/// POSIX writes them (so "EST5" is UTC-5); the daylight offset defaults to one hour east of
/// standard. Days are `Mm.w.d` (day d, 0 = Sunday, of week w, 1...5 with 5 the last, of month
/// m), `Jn` (1...365, February 29 never counted) or `n` (0...365, February 29 counted). Times are
/// local wall times, `[+|-]hh[:mm[:ss]]` with hours up to 167 (RFC 8536), 02:00 by default: the
/// start in standard time, the end in daylight time. A daylight name without rules takes glibc's
/// default, `M3.2.0,M11.1.0`.
package struct PosixTimeZoneRule: Sendable, Hashable {
    /// A day of the year in one of the three POSIX forms.
    enum Day: Sendable, Hashable {
        /// `Jn`: 1...365, February 29 is never counted.
        case julian(Int)
        /// `n`: 0...365, February 29 is counted.
        case zeroBased(Int)
        /// `Mm.w.d`.
        case monthWeekDay(month: Int, week: Int, weekday: Int)
    }

    /// When daylight time starts or ends: a day and a local time (seconds from that day's midnight).
    struct Change: Sendable, Hashable {
        var day: Day
        var time: Int64

        /// The local seconds (since 1970-01-01 local midnight) of this change in `year`.
        @inline(__always)
        func localSeconds(year: Int64) -> Int64 {
            let days: Int64
            switch day {
            case let .julian(n):
                let jan1 = CivilCalendar.days(year: year, month: 1, day: 1)
                days = jan1 + Int64(n - 1) + (n >= 60 && CivilCalendar.isLeapYear(year) ? 1 : 0)
            case let .zeroBased(n):
                days = CivilCalendar.days(year: year, month: 1, day: 1) + Int64(n)
            case let .monthWeekDay(month, week, weekday):
                let first = CivilCalendar.days(year: year, month: month, day: 1)
                var day = 1 + (weekday - CivilCalendar.weekday(days: first) + 7) % 7 + 7 * (week - 1)
                let length = CivilCalendar.daysInMonth(year: year, month: month)
                while day > length { day -= 7 }
                days = first + Int64(day - 1)
            }
            return days * CivilCalendar.secondsPerDay + time
        }
    }

    /// The string as given.
    package let text: String
    /// Standard time's offset from UTC, seconds east.
    package let standardOffset: Int32
    /// Daylight time's offset from UTC, seconds east; nil when the zone has no daylight time.
    package let daylightOffset: Int32?
    let start: Change?
    let end: Change?

    /// Parses `text`; the error's name is `text`.
    package init(parsing text: String) throws(ZoneRulesError) {
        var parser = Parser(bytes: Array(text.utf8))
        func fail(_ reason: String) -> ZoneRulesError {
            ZoneRulesError(name: text, reason: "invalid POSIX TZ string: \(reason) at offset \(parser.index)")
        }
        guard parser.name() else { throw fail("bad standard time name") }
        guard let standard = parser.offset(maxHours: 24) else { throw fail("bad standard offset") }
        self.text = text
        standardOffset = Int32(-standard)
        if parser.isAtEnd {
            daylightOffset = nil
            start = nil
            end = nil
            return
        }
        guard parser.name() else { throw fail("bad daylight time name") }
        if parser.isAtEnd || parser.peek == UInt8(ascii: ",") {
            daylightOffset = standardOffset + 3600
        } else {
            guard let daylight = parser.offset(maxHours: 24) else { throw fail("bad daylight offset") }
            daylightOffset = Int32(-daylight)
        }
        if parser.isAtEnd {
            start = Change(day: .monthWeekDay(month: 3, week: 2, weekday: 0), time: 7200)
            end = Change(day: .monthWeekDay(month: 11, week: 1, weekday: 0), time: 7200)
            return
        }
        guard parser.take(","), let start = parser.change() else { throw fail("bad start rule") }
        guard parser.take(","), let end = parser.change() else { throw fail("bad end rule") }
        guard parser.isAtEnd else { throw fail("unexpected text") }
        self.start = start
        self.end = end
    }

    /// The offset from UTC (seconds east) in force at `utcSeconds`.
    package func offset(atUTC utcSeconds: Int64) -> Int32 {
        guard let daylight = daylightOffset, let start, let end else { return standardOffset }
        // The latest change at or before the instant, among those of the year around it and of
        // the years on either side (change times reach ±167 hours, past a year's end). A start
        // wins a tie, so that permanent daylight time written as "0/0,J365/25" stays daylight.
        let year = CivilCalendar.date(days: CivilCalendar.floorDivide(utcSeconds + Int64(standardOffset), CivilCalendar.secondsPerDay)).year
        var latest = Int64.min
        var inDaylight = false
        for y in year - 1 ... year + 1 {
            let starts = start.localSeconds(year: y) - Int64(standardOffset)
            let ends = end.localSeconds(year: y) - Int64(daylight)
            if ends <= utcSeconds && ends > latest { latest = ends; inDaylight = false }
            if starts <= utcSeconds && starts >= latest { latest = starts; inDaylight = true }
        }
        return inDaylight ? daylight : standardOffset
    }

    /// The UTC instants (seconds) at which daylight time starts and ends in `year`; nil without
    /// daylight time.
    package func changes(inYear year: Int64) -> (daylightStarts: Int64, daylightEnds: Int64)? {
        guard let daylight = daylightOffset, let start, let end else { return nil }
        return (start.localSeconds(year: year) - Int64(standardOffset), end.localSeconds(year: year) - Int64(daylight))
    }

    /// A cursor over the string's bytes.
    struct Parser {
        let bytes: [UInt8]
        var index = 0

        var isAtEnd: Bool { index == bytes.count }
        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func take(_ character: Unicode.Scalar) -> Bool {
            guard peek == UInt8(ascii: character) else { return false }
            index += 1
            return true
        }

        /// A zone abbreviation: three or more letters, or `<...>`.
        mutating func name() -> Bool {
            func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") }
            let begin = index
            if take("<") {
                while let b = peek, b != UInt8(ascii: ">") {
                    guard isLetter(b) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") else { return false }
                    index += 1
                }
                return index > begin + 1 && take(">")
            }
            while let b = peek, isLetter(b) { index += 1 }
            return index - begin >= 3
        }

        /// Up to `maxDigits` decimal digits.
        mutating func number(maxDigits: Int) -> Int? {
            var value = 0
            let begin = index
            while let b = peek, b >= 0x30 && b <= 0x39, index - begin < maxDigits {
                value = value * 10 + Int(b - 0x30)
                index += 1
            }
            return index > begin ? value : nil
        }

        /// `[+|-]hh[:mm[:ss]]` in seconds.
        mutating func offset(maxHours: Int) -> Int64? {
            var sign: Int64 = 1
            if take("-") { sign = -1 } else { _ = take("+") }
            guard let hours = number(maxDigits: 3), hours <= maxHours else { return nil }
            var seconds = Int64(hours) * 3600
            if take(":") {
                guard let minutes = number(maxDigits: 2), minutes <= 59 else { return nil }
                seconds += Int64(minutes) * 60
                if take(":") {
                    guard let s = number(maxDigits: 2), s <= 59 else { return nil }
                    seconds += Int64(s)
                }
            }
            return sign * seconds
        }

        /// `date[/time]`.
        mutating func change() -> Change? {
            let day: Day
            if take("J") {
                guard let n = number(maxDigits: 3), n >= 1 && n <= 365 else { return nil }
                day = .julian(n)
            } else if take("M") {
                guard let month = number(maxDigits: 2), month >= 1 && month <= 12, take("."),
                      let week = number(maxDigits: 1), week >= 1 && week <= 5, take("."),
                      let weekday = number(maxDigits: 1), weekday <= 6
                else { return nil }
                day = .monthWeekDay(month: month, week: week, weekday: weekday)
            } else {
                guard let n = number(maxDigits: 3), n <= 365 else { return nil }
                day = .zeroBased(n)
            }
            var time: Int64 = 7200
            if take("/") {
                guard let t = offset(maxHours: 167) else { return nil }
                time = t
            }
            return Change(day: day, time: time)
        }
    }
}
