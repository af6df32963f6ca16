import HourglassCore
import Testing

private func cron(_ text: String) throws -> CronExpression { try CronExpression(parsing: text) }

private func parseError(_ text: String) -> CronExpressionError? {
    do {
        _ = try CronExpression(parsing: text)
        return nil
    } catch {
        return error
    }
}

/// Bits `values` of a mask.
private func bits(_ values: some Sequence<Int>) -> UInt64 { values.reduce(0) { $0 | 1 << UInt64($1) } }

/// UTC ms of a UTC date and time.
private func ms(_ year: Int64, _ month: Int, _ day: Int, _ hour: Int = 0, _ minute: Int = 0, _ second: Int = 0) -> Int64 {
    utcSeconds(year, month, day, hour, minute, second) * 1000
}

private let farLimit: Int64 = 253_402_300_799_999

/// The next `count` occurrences after `start`, chained.
private func occurrences(_ text: String, after start: Int64, in zone: ZoneRules = .utc, count: Int) throws -> [Int64] {
    let expression = try cron(text)
    var result: [Int64] = []
    var t = start
    for _ in 0 ..< count {
        guard let next = expression.nextOccurrence(after: t, in: zone, limit: farLimit) else { break }
        result.append(next)
        t = next
    }
    return result
}

/// A direct reading of the rules for five-field expressions in UTC, minute by minute: the
/// reference the bitmask search is checked against.
private struct NaiveCron {
    var fields: [Set<Int>] = []
    var dayOfMonthStar = false
    var dayOfWeekStar = false

    init(_ text: String) {
        let parts = text.split(separator: " ").map(String.init)
        let ranges = [0 ... 59, 0 ... 23, 1 ... 31, 1 ... 12, 0 ... 6]
        for (k, part) in parts.enumerated() {
            var set = Set<Int>()
            for item in part.split(separator: ",") {
                let pieces = item.split(separator: "/")
                let step = pieces.count == 2 ? Int(pieces[1])! : 1
                var low = ranges[k].lowerBound
                var high = ranges[k].upperBound
                if pieces[0] != "*" {
                    let bounds = pieces[0].split(separator: "-").map { Int($0)! }
                    low = bounds[0]
                    high = bounds.count == 2 ? bounds[1] : (pieces.count == 2 ? ranges[k].upperBound : low)
                }
                for v in stride(from: low, through: high, by: step) { set.insert(k == 4 && v == 7 ? 0 : v) }
            }
            fields.append(set)
        }
        dayOfMonthStar = parts[2] == "*"
        dayOfWeekStar = parts[4] == "*"
    }

    func matches(minuteSince epoch: Int64) -> Bool {
        let days = epoch / 1440
        let (_, month, day) = CivilCalendar.date(days: days)
        let minuteOfDay = Int(epoch % 1440)
        let weekday = CivilCalendar.weekday(days: days)
        guard fields[0].contains(minuteOfDay % 60), fields[1].contains(minuteOfDay / 60), fields[3].contains(month) else { return false }
        let byDate = fields[2].contains(day)
        let byWeekday = fields[4].contains(weekday)
        if dayOfMonthStar { return byWeekday }
        if dayOfWeekStar { return byDate }
        return byDate || byWeekday
    }
}

@Suite("CronExpression")
struct CronExpressionTests {
    // MARK: Parsing

    @Test("five fields: */15 9-17 * * 1-5")
    func fiveFields() throws {
        let e = try cron("*/15 9-17 * * 1-5")
        #expect(e.text == "*/15 9-17 * * 1-5")
        #expect(e.seconds == 1)
        #expect(e.minutes == bits([0, 15, 30, 45]))
        #expect(UInt64(e.hours) == bits(9 ... 17))
        #expect(UInt64(e.daysOfMonth) == bits(1 ... 31))
        #expect(UInt64(e.months) == bits(1 ... 12))
        #expect(UInt64(e.daysOfWeek) == bits(1 ... 5))
        #expect(!e.dayOfMonthRestricted && e.dayOfWeekRestricted && !e.lastDayOfMonth)
    }

    @Test("six fields, Spring: 0/30 * * * * ?, 0 0 12 * * MON-FRI, 0 0 0 1 * *")
    func sixFields() throws {
        let halfMinute = try cron("0/30 * * * * ?")
        #expect(halfMinute.seconds == bits([0, 30]))
        #expect(halfMinute.minutes == bits(0 ... 59))
        #expect(halfMinute.hours == UInt32(bits(0 ... 23)))
        #expect(halfMinute.daysOfWeek == 0x7F && !halfMinute.dayOfWeekRestricted && !halfMinute.dayOfMonthRestricted)

        let noon = try cron("0 0 12 * * MON-FRI")
        #expect(noon.seconds == 1 && noon.minutes == 1 && noon.hours == 1 << 12)
        #expect(UInt64(noon.daysOfWeek) == bits(1 ... 5) && noon.dayOfWeekRestricted)

        let monthly = try cron("0 0 0 1 * *")
        #expect(monthly.seconds == 1 && monthly.minutes == 1 && monthly.hours == 1 && monthly.daysOfMonth == 1 << 1)
        #expect(monthly.dayOfMonthRestricted && !monthly.dayOfWeekRestricted)
    }

    @Test("macros")
    func macros() throws {
        let expansions = [
            "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *", "@weekly": "0 0 0 * * 0",
            "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *", "@DAILY": "0 0 0 * * *",
        ]
        for (macro, expansion) in expansions {
            let parsed = try cron(macro)
            let expected = try cron(expansion)
            #expect(parsed.text == macro)
            #expect(parsed.seconds == expected.seconds && parsed.minutes == expected.minutes && parsed.hours == expected.hours)
            #expect(parsed.daysOfMonth == expected.daysOfMonth && parsed.months == expected.months && parsed.daysOfWeek == expected.daysOfWeek)
            #expect(parsed.dayOfMonthRestricted == expected.dayOfMonthRestricted && parsed.dayOfWeekRestricted == expected.dayOfWeekRestricted)
        }
        #expect(try cron("@daily").nextOccurrence(after: ms(2026, 6, 15, 12), in: .utc, limit: farLimit) == ms(2026, 6, 16))
        #expect(try cron("@weekly").nextOccurrence(after: ms(2026, 3, 4), in: .utc, limit: farLimit) == ms(2026, 3, 8))
        #expect(try cron("@yearly").nextOccurrence(after: ms(2026, 3, 4), in: .utc, limit: farLimit) == ms(2027, 1, 1))
        #expect(try cron("@hourly").nextOccurrence(after: ms(2026, 3, 4, 5, 0, 1), in: .utc, limit: farLimit) == ms(2026, 3, 4, 6))
    }

    @Test("every syntax form")
    func forms() throws {
        #expect(try cron("5 * * * *").minutes == 1 << 5)
        #expect(try cron("5-8 * * * *").minutes == bits(5 ... 8))
        #expect(try cron("10-30/7 * * * *").minutes == bits([10, 17, 24]))
        #expect(try cron("*/20 * * * *").minutes == bits([0, 20, 40]))
        #expect(try cron("5/20 * * * *").minutes == bits([5, 25, 45]))
        #expect(try cron("1,2,10-12,*/30 * * * *").minutes == bits([0, 1, 2, 10, 11, 12, 30]))
        #expect(try cron("*/60 * * * *").minutes == 1)
        #expect(try cron("0 */5 * * *").hours == UInt32(bits([0, 5, 10, 15, 20])))
        #expect(try cron("0 0 */10 * *").daysOfMonth == UInt32(bits([1, 11, 21, 31])))
        #expect(try cron("0 0 1 */4 *").months == UInt16(bits([1, 5, 9])))
        #expect(try cron("0 0 1 2/5 *").months == UInt16(bits([2, 7, 12])))
        // Names, any case; in ranges; SUN ends a range as 7.
        let named = try cron("0 0 * jan-Mar,dec sun,Sat")
        #expect(named.months == UInt16(bits([1, 2, 3, 12])) && named.daysOfWeek == UInt8(bits([0, 6])))
        #expect(try cron("0 0 * * MON-SUN").daysOfWeek == 0x7F)
        #expect(try cron("0 0 * * SUN-SAT").daysOfWeek == 0x7F)
        #expect(try cron("0 0 * * SUN").daysOfWeek == 1)
        #expect(try cron("0 0 * * sun-sun").daysOfWeek == 1)
        #expect(try cron("0 0 * * FRI-SUN").daysOfWeek == UInt8(bits([0, 5, 6])))
        #expect(try cron("0 0 * * 7").daysOfWeek == 1)
        #expect(try cron("0 0 * * 5-7").daysOfWeek == UInt8(bits([0, 5, 6])))
        #expect(try cron("0 0 * * 0-7").daysOfWeek == 0x7F)
        #expect(try cron("0 0 * * */2").daysOfWeek == UInt8(bits([0, 2, 4, 6])))
        #expect(try cron("0 0 * * 1/2").daysOfWeek == UInt8(bits([1, 3, 5])))
        #expect(try cron("0 0 * * MON/2").daysOfWeek == UInt8(bits([1, 3, 5])))
        #expect(try cron("0 0 * * 1-7/3").daysOfWeek == UInt8(bits([1, 4, 0])))
        // `?` in the day fields, alone.
        let question = try cron("0 0 ? * MON")
        #expect(!question.dayOfMonthRestricted && question.dayOfWeekRestricted && question.daysOfMonth == UInt32(bits(1 ... 31)))
        // L: the last day of the month.
        let last = try cron("0 0 L * *")
        #expect(last.lastDayOfMonth && last.daysOfMonth == 0 && last.dayOfMonthRestricted)
        let firstAndLast = try cron("0 0 1,l * *")
        #expect(firstAndLast.lastDayOfMonth && firstAndLast.daysOfMonth == 1 << 1)
        // "*/2" is a restriction (only exactly * or ? is not).
        #expect(try cron("0 0 */2 * *").dayOfMonthRestricted)
        // Whitespace: trimmed, runs of spaces and tabs between fields.
        let spaced = try cron("  0\t0   * * *\n")
        #expect(spaced.text == "0\t0   * * *" && spaced.hours == 1)
        #expect(try cron("0 0 * * *") == cron("0 0 * * *"))
    }

    @Test("errors: field, position, reason", arguments: [
        ("61 * * * *", "minute", 1, "value 61 is outside 0...59"),
        ("0 61 * * * *", "minute", 3, "value 61 is outside 0...59"),
        ("0 61 * * *", "hour", 3, "value 61 is outside 0...23"),
        ("60 * * * * *", "second", 1, "value 60 is outside 0...59"),
        ("* 24 * * *", "hour", 3, "value 24 is outside 0...23"),
        ("0 0 0 * *", "day of month", 5, "value 0 is outside 1...31"),
        ("0 0 32 * *", "day of month", 5, "value 32 is outside 1...31"),
        ("0 0 * 13 *", "month", 7, "value 13 is outside 1...12"),
        ("0 0 * 0 *", "month", 7, "value 0 is outside 1...12"),
        ("0 0 * * 8", "day of week", 9, "value 8 is outside 0...7"),
        ("0 0 1-99999999999 * *", "day of month", 7, "value 99999999999 is outside 1...31"),
        ("", "expression", 1, "empty expression"),
        ("   ", "expression", 1, "empty expression"),
        ("* * * *", "expression", 8, "expected 5 or 6 fields (or a macro), found 4"),
        ("*", "expression", 2, "expected 5 or 6 fields (or a macro), found 1"),
        ("* * * * * * *", "expression", 13, "expected 5 or 6 fields (or a macro), found 7"),
        ("@foo", "expression", 1, "unknown macro '@foo'"),
        ("@reboot", "expression", 1, "'@reboot' is not supported"),
        ("@daily *", "expression", 8, "nothing may follow a macro"),
        ("*/0 * * * *", "minute", 3, "step 0"),
        ("*/ * * * *", "minute", 3, "missing step after '/'"),
        ("*/x * * * *", "minute", 3, "bad step 'x'"),
        ("*/61 * * * *", "minute", 3, "step 61 is outside 1...60"),
        ("0 */25 * * *", "hour", 5, "step 25 is outside 1...24"),
        ("5-3 * * * *", "minute", 1, "range 5-3 is reversed (start above end)"),
        ("0 0 * NOV-FEB *", "month", 7, "range 11-2 is reversed (start above end)"),
        ("0 0 * * FRI-MON", "day of week", 9, "range 5-1 is reversed (start above end)"),
        ("0 0 * * 6-0", "day of week", 9, "range 6-0 is reversed (start above end)"),
        ("5- * * * *", "minute", 3, "missing end of range"),
        ("? * * * *", "minute", 1, "'?' is allowed only in day of month and day of week"),
        ("0 ? * * * *", "minute", 3, "'?' is allowed only in day of month and day of week"),
        ("0 0 * ? *", "month", 7, "'?' is allowed only in day of month and day of week"),
        ("0 0 ?,1 * *", "day of month", 5, "'?' must stand alone"),
        ("0 0 1,? * *", "day of month", 7, "'?' must stand alone"),
        ("0 0 * FOO *", "month", 7, "unknown name 'FOO'"),
        ("0 0 * * Monday", "day of week", 9, "unknown name 'Monday'"),
        ("x * * * *", "minute", 1, "unknown name 'x'"),
        ("0 0 * * * JAN", "day of week", 11, "unknown name 'JAN'"),
        ("% * * * *", "minute", 1, "unexpected character '%'"),
        ("5x * * * *", "minute", 2, "unexpected character 'x'"),
        ("1-* * * * *", "minute", 3, "unexpected character '*'"),
        ("** * * * *", "minute", 2, "unexpected character '*'"),
        ("-5 * * * *", "minute", 1, "unexpected character '-'"),
        ("0 0 1,,2 * *", "day of month", 7, "empty list item"),
        ("0 0 1, * *", "day of month", 7, "empty list item"),
        ("0 0 ,1 * *", "day of month", 5, "empty list item"),
        ("0 0 * * MON#2", "day of week", 12, "'#' (nth weekday) is not supported"),
        ("0 0 15W * *", "day of month", 7, "'W' (nearest weekday) is not supported"),
        ("0 0 LW * *", "day of month", 5, "'W' (nearest weekday) is not supported"),
        ("0 0 * * 5L", "day of week", 10, "'L' (last weekday) is not supported in day of week"),
        ("0 0 * * L", "day of week", 9, "'L' (last weekday) is not supported in day of week"),
        ("0 0 L-3 * *", "day of month", 6, "'L-n' (an offset from the last day) is not supported"),
        ("0 0 L/2 * *", "day of month", 6, "'L' takes no step"),
        ("0 0 1-L * *", "day of month", 7, "'L' cannot end a range"),
        ("L * * * *", "minute", 1, "unknown name 'L'"),
        ("0 0 30 2 *", "day of month", 5, "never occurs: no selected day of month exists in the selected months"),
        ("0 0 31 4,6,9,11 *", "day of month", 5, "never occurs: no selected day of month exists in the selected months"),
        ("0 0 0 30-31 FEB ?", "day of month", 7, "never occurs: no selected day of month exists in the selected months"),
    ])
    func errors(text: String, field: String, position: Int, reason: String) {
        #expect(parseError(text) == CronExpressionError(field: field, position: position, reason: reason))
    }

    @Test("error description")
    func errorDescription() {
        #expect(parseError("0 61 * * * *")?.description == "cron expression: minute at position 3: value 61 is outside 0...59")
    }

    @Test("expressions that look impossible but are not")
    func possible() throws {
        _ = try cron("0 0 29 2 *")
        _ = try cron("0 0 30 2 MON")  // day of week restricts too: Mondays of February
        _ = try cron("0 0 L 2 *")
        _ = try cron("0 0 31 1-3 *")
    }

    // MARK: Next occurrence

    @Test("seconds: 0/30 * * * * ?, strictly after, whole seconds")
    func halfMinutes() throws {
        let e = try cron("0/30 * * * * ?")
        #expect(e.nextOccurrence(after: 1000, in: .utc, limit: farLimit) == 30_000)
        #expect(e.nextOccurrence(after: 29_999, in: .utc, limit: farLimit) == 30_000)
        #expect(e.nextOccurrence(after: 30_000, in: .utc, limit: farLimit) == 60_000)
        #expect(e.nextOccurrence(after: 0, in: .utc, limit: farLimit) == 30_000)
        #expect(try cron("* * * * * *").nextOccurrence(after: 1500, in: .utc, limit: farLimit) == 2000)
        #expect(try cron("* * * * *").nextOccurrence(after: 1500, in: .utc, limit: farLimit) == 60_000)
    }

    @Test("limit: at the limit fires, past it does not")
    func limit() throws {
        let e = try cron("0 0 12 * * MON-FRI")
        let after = ms(2026, 1, 2, 13)  // Friday afternoon
        let monday = ms(2026, 1, 5, 12)
        #expect(e.nextOccurrence(after: after, in: .utc, limit: monday) == monday)
        #expect(e.nextOccurrence(after: after, in: .utc, limit: monday - 1) == nil)
        #expect(e.nextOccurrence(after: monday, in: .utc, limit: monday) == nil)
        #expect(e.nextOccurrence(after: after, in: .utc, limit: .max) == monday)
        #expect(try cron("59 59 23 31 12 *").nextOccurrence(after: ms(9999, 6, 1), in: .utc, limit: farLimit) == 253_402_300_799_000)
        #expect(try cron("0 0 0 1 1 *").nextOccurrence(after: ms(9999, 6, 1), in: .utc, limit: farLimit) == nil)
    }

    @Test("month and year ends, leap years")
    func calendarEnds() throws {
        #expect(try occurrences("0 0 0 1 * *", after: ms(2026, 12, 15), count: 2) == [ms(2027, 1, 1), ms(2027, 2, 1)])
        #expect(try occurrences("0 0 31 * *", after: ms(2026, 1, 31), count: 3) == [ms(2026, 3, 31), ms(2026, 5, 31), ms(2026, 7, 31)])
        #expect(try occurrences("0 0 29 2 *", after: ms(2026, 3, 1), count: 2) == [ms(2028, 2, 29), ms(2032, 2, 29)])
        #expect(try occurrences("0 0 29 2 *", after: ms(2096, 3, 1), count: 1) == [ms(2104, 2, 29)])
        #expect(try occurrences("0 0 L * *", after: ms(2028, 1, 31), count: 3) == [ms(2028, 2, 29), ms(2028, 3, 31), ms(2028, 4, 30)])
        #expect(try occurrences("0 0 L * *", after: ms(2027, 2, 10), count: 1) == [ms(2027, 2, 28)])
        #expect(try occurrences("0 0 L * *", after: ms(2026, 4, 30), count: 1) == [ms(2026, 5, 31)])
        #expect(try occurrences("30 23 L 12 *", after: ms(2026, 1, 1), count: 2) == [ms(2026, 12, 31, 23, 30), ms(2027, 12, 31, 23, 30)])
        #expect(try occurrences("59 59 23 * * *", after: ms(2026, 12, 31, 23, 59, 59), count: 1) == [ms(2027, 1, 1, 23, 59, 59)])
        #expect(try occurrences("* * * * * *", after: ms(2028, 2, 28, 23, 59, 59), count: 2) == [ms(2028, 2, 29), ms(2028, 2, 29, 0, 0, 1)])
    }

    @Test("weekdays: */15 9-17 * * 1-5 and 0 0 12 * * MON-FRI")
    func weekdays() throws {
        // Friday 2026-01-02 17:45 is the week's last; Monday 09:00 is next.
        #expect(try occurrences("*/15 9-17 * * 1-5", after: ms(2026, 1, 2, 17, 40), count: 3)
            == [ms(2026, 1, 2, 17, 45), ms(2026, 1, 5, 9), ms(2026, 1, 5, 9, 15)])
        #expect(try occurrences("0 0 12 * * MON-FRI", after: ms(2026, 1, 1, 12), count: 3) == [ms(2026, 1, 2, 12), ms(2026, 1, 5, 12), ms(2026, 1, 6, 12)])
        #expect(try occurrences("0 0 * * 0", after: ms(2026, 1, 1), count: 2) == [ms(2026, 1, 4), ms(2026, 1, 11)])
        #expect(try occurrences("0 0 * * 7", after: ms(2026, 1, 1), count: 2) == [ms(2026, 1, 4), ms(2026, 1, 11)])
    }

    @Test("day of month or day of week when both are restricted")
    func dayOfMonthOrWeek() throws {
        // 2026-01-01 is a Thursday: Fridays 2, 9, 16 and the 13th.
        #expect(try occurrences("0 0 13 * FRI", after: ms(2026, 1, 1), count: 4) == [ms(2026, 1, 2), ms(2026, 1, 9), ms(2026, 1, 13), ms(2026, 1, 16)])
        // One of them `*` or `?`: only the other restricts.
        #expect(try occurrences("0 0 * * FRI", after: ms(2026, 1, 1), count: 2) == [ms(2026, 1, 2), ms(2026, 1, 9)])
        #expect(try occurrences("0 0 0 13 * ?", after: ms(2026, 1, 1), count: 2) == [ms(2026, 1, 13), ms(2026, 2, 13)])
        #expect(try occurrences("0 0 0 ? * FRI", after: ms(2026, 1, 1), count: 1) == [ms(2026, 1, 2)])
        // February 30 never comes, but February's Mondays do.
        #expect(try occurrences("0 0 30 2 MON", after: ms(2026, 1, 1), count: 2) == [ms(2026, 2, 2), ms(2026, 2, 9)])
        // L with a weekday: the last day or any Sunday.
        #expect(try occurrences("0 0 L 2 SUN", after: ms(2026, 2, 20), count: 2) == [ms(2026, 2, 22), ms(2026, 2, 28)])
    }

    @Test("against a minute-by-minute reference in UTC", arguments: [
        "*/7 * * * *", "0 9-17 * * 1-5", "30 2 1,15 * *", "0 0 13 * 5", "15 10 * 2 *", "0 */6 29-31 * 0", "5,10 1-3 * 1-3 2/2",
        "0 0 31 * *", "*/13 */5 */9 */2 */3", "59 23 * * 7",
    ])
    func reference(text: String) throws {
        let e = try cron(text)
        let naive = NaiveCron(text)
        // January to April 2028 (a leap February), minute by minute.
        let start = utcSeconds(2028, 1, 1) / 60
        let end = utcSeconds(2028, 4, 1) / 60
        var expected: [Int64] = []
        for minute in start ..< end where naive.matches(minuteSince: minute) { expected.append(minute * 60_000) }
        var actual: [Int64] = []
        var t = start * 60_000 - 1
        while let next = e.nextOccurrence(after: t, in: .utc, limit: end * 60_000 - 1) {
            actual.append(next)
            t = next
        }
        #expect(actual == expected)
    }

    // MARK: Daylight-saving time

    @Test("America/New_York fall back (2026-11-01 06:00 UTC): */30 fires 01:00 EDT, 01:30 EDT, 02:00 EST")
    func newYorkFallBack() throws {
        let ny = try ZoneRules.named("America/New_York")
        #expect(try occurrences("*/30 * * * *", after: ms(2026, 11, 1, 4, 45), in: ny, count: 4)
            == [ms(2026, 11, 1, 5), ms(2026, 11, 1, 5, 30), ms(2026, 11, 1, 7), ms(2026, 11, 1, 7, 30)])
        // 01:30 happens twice that day and fires once, the first time.
        #expect(try occurrences("30 1 * * *", after: ms(2026, 10, 31, 12), in: ny, count: 2) == [ms(2026, 11, 1, 5, 30), ms(2026, 11, 2, 6, 30)])
        // From inside the repeated hour (01:15 EST), the second 01:30 is next.
        #expect(try occurrences("*/30 * * * *", after: ms(2026, 11, 1, 6, 15), in: ny, count: 2) == [ms(2026, 11, 1, 6, 30), ms(2026, 11, 1, 7)])
        // Every second through the change: nothing is repeated, nothing lost but the second pass.
        let seconds = try occurrences("* * * * * *", after: ms(2026, 11, 1, 5, 59, 58), in: ny, count: 3)
        #expect(seconds == [ms(2026, 11, 1, 5, 59, 59), ms(2026, 11, 1, 7), ms(2026, 11, 1, 7, 0, 1)])
    }

    @Test("America/New_York spring forward (2026-03-08 07:00 UTC): 02:30 does not occur that day")
    func newYorkSpringForward() throws {
        let ny = try ZoneRules.named("America/New_York")
        #expect(try occurrences("30 2 * * *", after: ms(2026, 3, 7, 8), in: ny, count: 2) == [ms(2026, 3, 9, 6, 30), ms(2026, 3, 10, 6, 30)])
        #expect(try occurrences("*/30 * * * *", after: ms(2026, 3, 8, 6, 15), in: ny, count: 3)
            == [ms(2026, 3, 8, 6, 30), ms(2026, 3, 8, 7), ms(2026, 3, 8, 7, 30)])
        // Hour 2 only: skipped on the change day.
        #expect(try occurrences("0 2 * * *", after: ms(2026, 3, 7, 8), in: ny, count: 1) == [ms(2026, 3, 9, 6)])
        #expect(try occurrences("0 * 2 * * *", after: ms(2026, 3, 8, 6, 59), in: ny, count: 1) == [ms(2026, 3, 9, 6)])
    }

    @Test("Europe/Berlin: 2026-03-29 01:00 UTC and 2026-10-25 01:00 UTC")
    func berlin() throws {
        let berlin = try ZoneRules.named("Europe/Berlin")
        #expect(try occurrences("30 2 * * *", after: ms(2026, 3, 28, 12), in: berlin, count: 2) == [ms(2026, 3, 30, 0, 30), ms(2026, 3, 31, 0, 30)])
        #expect(try occurrences("30 2 * * *", after: ms(2026, 10, 24, 12), in: berlin, count: 2) == [ms(2026, 10, 25, 0, 30), ms(2026, 10, 26, 1, 30)])
        #expect(try occurrences("0 0 12 * * MON-FRI", after: ms(2026, 10, 23, 9), in: berlin, count: 2) == [ms(2026, 10, 23, 10), ms(2026, 10, 26, 11)])
        #expect(try occurrences("@daily", after: ms(2026, 6, 15, 12), in: berlin, count: 1) == [ms(2026, 6, 15, 22)])
    }

    @Test("Australia/Sydney: DST ends 2026-04-04 16:00 UTC, starts 2026-10-03 16:00 UTC")
    func sydney() throws {
        let sydney = try ZoneRules.named("Australia/Sydney")
        // 02:30 on 2026-04-05 happens twice (AEDT then AEST): once, the first time.
        #expect(try occurrences("30 2 * * *", after: ms(2026, 4, 4), in: sydney, count: 2) == [ms(2026, 4, 4, 15, 30), ms(2026, 4, 5, 16, 30)])
        // 02:30 on 2026-10-04 does not occur.
        #expect(try occurrences("30 2 * * *", after: ms(2026, 10, 3), in: sydney, count: 2) == [ms(2026, 10, 4, 15, 30), ms(2026, 10, 5, 15, 30)])
    }

    @Test("after the table: America/New_York 2040 (footer rule), spring forward 2040-03-11")
    func newYork2040() throws {
        let ny = try ZoneRules.named("America/New_York")
        #expect(try occurrences("30 2 * * *", after: ms(2040, 3, 10, 12), in: ny, count: 1) == [ms(2040, 3, 12, 6, 30)])
        #expect(try occurrences("30 1 * * *", after: ms(2040, 11, 3, 12), in: ny, count: 2) == [ms(2040, 11, 4, 5, 30), ms(2040, 11, 5, 6, 30)])
    }

    @Test("around each 2026 change, against a minute-by-minute scan of wall times", arguments: [
        ("America/New_York", utcSeconds(2026, 3, 7)), ("America/New_York", utcSeconds(2026, 10, 31)),
        ("Europe/Berlin", utcSeconds(2026, 3, 28)), ("Europe/Berlin", utcSeconds(2026, 10, 24)),
        ("Australia/Sydney", utcSeconds(2026, 4, 3)), ("Australia/Sydney", utcSeconds(2026, 10, 2)),
        ("Australia/Lord_Howe", utcSeconds(2026, 4, 3)), ("Australia/Lord_Howe", utcSeconds(2026, 10, 2)),
    ])
    func aroundChanges(name: String, start: Int64) throws {
        let zone = try ZoneRules.named(name)
        for text in ["*/30 * * * *", "30 2 * * *", "0 * * * *", "15,45 1-3 * * *", "*/20 2 * * *", "0 0 * * *"] {
            let e = try cron(text)
            let naive = NaiveCron(text)
            // The reference: scanning UTC minutes, fire at the first instant whose wall time
            // matches and is past the wall time of the previous occurrence.
            var expected: [Int64] = []
            var lastWall = start + Int64(zone.offset(atUTC: start))
            var u = start + 60
            while u < start + 3 * 86_400 {
                let wall = u + Int64(zone.offset(atUTC: u))
                if wall > lastWall && naive.matches(minuteSince: CivilCalendar.floorDivide(wall, 60)) {
                    expected.append(u * 1000)
                    lastWall = wall
                }
                u += 60
            }
            var actual: [Int64] = []
            var t = start * 1000
            while let next = e.nextOccurrence(after: t, in: zone, limit: (start + 3 * 86_400) * 1000 - 1) {
                actual.append(next)
                t = next
            }
            #expect(actual == expected, "\(text) in \(name)")
        }
    }

    @Test("chained over a year in New York never goes back and fires once a day")
    func yearInNewYork() throws {
        let ny = try ZoneRules.named("America/New_York")
        let fired = try occurrences("30 2 * * *", after: ms(2026, 1, 1), in: ny, count: 400)
        #expect(fired.count == 400)
        #expect(zip(fired, fired.dropFirst()).allSatisfy { $0 < $1 })
        // 2026: 365 days, one of which (March 8) has no 02:30.
        #expect(fired.filter { $0 < ms(2027, 1, 1, 5) }.count == 364)
    }
}
