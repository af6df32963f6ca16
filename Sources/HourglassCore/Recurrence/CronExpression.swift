/// A parsed cron expression: which wall times of a time zone a recurring timer fires at.
///
/// Forms:
/// - five fields, Unix cron: `minute hour day-of-month month day-of-week` (second 0);
/// - six fields, Spring / Quartz: `second minute hour day-of-month month day-of-week`;
/// - a macro: `@yearly` and `@annually` (`0 0 0 1 1 *`), `@monthly` (`0 0 0 1 * *`), `@weekly`
///   (`0 0 0 * * 0`), `@daily` and `@midnight` (`0 0 0 * * *`), `@hourly` (`0 0 * * * *`).
///
/// Fields are separated by spaces or tabs. Values: second 0-59, minute 0-59, hour 0-23, day of
/// month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT, where 0 and 7 are both Sunday
/// (as Unix cron and Spring; Quartz numbers 1-7 from Sunday, so a Quartz "1" is Monday here).
/// Names are case-insensitive; SUN at the end of a range is 7 (MON-SUN is Monday to Sunday).
///
/// Each field is a comma-separated list of items: `*` (every value), `a`, `a-b` (a to b; a start
/// above the end is an error, ranges do not wrap), `*/n` (every n-th value from the field's
/// minimum), `a/n` (a, a+n, ... up to the field's maximum), `a-b/n`. `?` is allowed in day of
/// month and day of week only, alone, and means `*`. `L` in day of month is the month's last
/// day. For day of week, `*` and `a/n` run over 0-6; 7 is reached only when written.
///
/// Day of month and day of week: when both are restricted (neither is exactly `*` or `?`), a day
/// matches if either matches (Vixie cron: "0 0 13 * FRI" fires on every 13th and every Friday);
/// when one is `*` or `?`, only the other restricts.
///
/// Rejected, with the field, the 1-based position in `text` and a reason: wrong field counts,
/// unknown macros and names, values out of range, steps of 0 or above the field's size, reversed
/// ranges, `?` elsewhere than in the day fields, `W`, `#`, `L` in day of week and `L-n`
/// (unsupported), and expressions that can never match ("0 0 30 2 *").
package struct CronExpression: Sendable, Hashable {
    /// The text as given (trimmed).
    package let text: String
    /// Bit s is set when second s matches.
    package let seconds: UInt64
    /// Bit m is set when minute m matches.
    package let minutes: UInt64
    /// Bit h is set when hour h matches.
    package let hours: UInt32
    /// Bit d (1...31) is set when day d of the month matches.
    package let daysOfMonth: UInt32
    /// Bit m (1...12) is set when month m matches.
    package let months: UInt16
    /// Bit d (0...6, 0 = Sunday) is set when that weekday matches.
    package let daysOfWeek: UInt8
    /// Whether `L`, the month's last day, is in the day-of-month field.
    package let lastDayOfMonth: Bool
    /// Whether the day-of-month field is other than `*` or `?`.
    package let dayOfMonthRestricted: Bool
    /// Whether the day-of-week field is other than `*` or `?`.
    package let dayOfWeekRestricted: Bool

    /// Parses the five-field Unix form (minute hour day-of-month month day-of-week; seconds are 0)
    /// or the six-field form with seconds first (Spring / Quartz: second minute hour dom month dow),
    /// and the macros @yearly @annually @monthly @weekly @daily @midnight @hourly.
    package init(parsing text: String) throws(CronExpressionError) {
        let trimmed = CronExpression.trimmed(text)
        let characters = Array(trimmed)
        var fields = CronExpression.splitFields(characters)
        if fields.isEmpty {
            throw CronExpressionError(field: "expression", position: 1, reason: "empty expression")
        }
        if characters[fields[0].start] == "@" {
            if fields.count > 1 {
                throw CronExpressionError(field: "expression", position: fields[1].start + 1, reason: "nothing may follow a macro")
            }
            let macro = String(characters[fields[0].start ..< fields[0].end])
            guard let expansion = CronExpression.macros[macro.lowercased()] else {
                let reason = macro.lowercased() == "@reboot" ? "'@reboot' is not supported" : "unknown macro '\(macro)'"
                throw CronExpressionError(field: "expression", position: 1, reason: reason)
            }
            // Parse the expansion, but report nothing against it: it is always valid.
            let parsed = try! CronExpression(parsing: expansion)
            self = parsed.retexted(trimmed)
            return
        }
        guard fields.count == 5 || fields.count == 6 else {
            let position = fields.count < 5 ? characters.count + 1 : fields[6].start + 1
            throw CronExpressionError(field: "expression", position: position,
                                      reason: "expected 5 or 6 fields (or a macro), found \(fields.count)")
        }
        if fields.count == 5 { fields.insert(FieldRange(start: -1, end: -1), at: 0) }
        self.text = trimmed

        func parse(_ index: Int, _ kind: Field) throws(CronExpressionError) -> FieldParser.Result {
            let range = fields[index]
            if range.start < 0 { return FieldParser.Result(mask: 1, lastDay: false, unrestricted: false) }
            var parser = FieldParser(characters: characters, start: range.start, end: range.end, field: kind)
            return try parser.parse()
        }
        let second = try parse(0, .second)
        let minute = try parse(1, .minute)
        let hour = try parse(2, .hour)
        let dayOfMonth = try parse(3, .dayOfMonth)
        let month = try parse(4, .month)
        let dayOfWeek = try parse(5, .dayOfWeek)

        seconds = second.mask
        minutes = minute.mask
        hours = UInt32(truncatingIfNeeded: hour.mask)
        daysOfMonth = UInt32(truncatingIfNeeded: dayOfMonth.mask)
        months = UInt16(truncatingIfNeeded: month.mask)
        // 7 is Sunday, bit 0.
        daysOfWeek = UInt8(truncatingIfNeeded: (dayOfWeek.mask | dayOfWeek.mask >> 7) & 0x7F)
        lastDayOfMonth = dayOfMonth.lastDay
        dayOfMonthRestricted = !dayOfMonth.unrestricted
        dayOfWeekRestricted = !dayOfWeek.unrestricted

        // With day of week unrestricted, some selected day must exist in some selected month
        // (February counted with 29 days).
        if dayOfMonthRestricted && !dayOfWeekRestricted && !lastDayOfMonth {
            var occurs = false
            for m in 1 ... 12 where months >> m & 1 != 0 {
                let length = m == 2 ? 29 : CivilCalendar.daysInMonth(year: 2001, month: m)
                if UInt64(daysOfMonth) & (UInt64(1) << (length + 1) - 2) != 0 { occurs = true }
            }
            if !occurs {
                throw CronExpressionError(field: Field.dayOfMonth.name, position: fields[3].start + 1,
                                          reason: "never occurs: no selected day of month exists in the selected months")
            }
        }
    }

    /// This expression with `text` in place of its own (a macro keeps its name).
    private func retexted(_ text: String) -> CronExpression {
        CronExpression(text: text, seconds: seconds, minutes: minutes, hours: hours, daysOfMonth: daysOfMonth, months: months,
                       daysOfWeek: daysOfWeek, lastDayOfMonth: lastDayOfMonth, dayOfMonthRestricted: dayOfMonthRestricted,
                       dayOfWeekRestricted: dayOfWeekRestricted)
    }

    private init(text: String, seconds: UInt64, minutes: UInt64, hours: UInt32, daysOfMonth: UInt32, months: UInt16,
                 daysOfWeek: UInt8, lastDayOfMonth: Bool, dayOfMonthRestricted: Bool, dayOfWeekRestricted: Bool) {
        self.text = text
        self.seconds = seconds
        self.minutes = minutes
        self.hours = hours
        self.daysOfMonth = daysOfMonth
        self.months = months
        self.daysOfWeek = daysOfWeek
        self.lastDayOfMonth = lastDayOfMonth
        self.dayOfMonthRestricted = dayOfMonthRestricted
        self.dayOfWeekRestricted = dayOfWeekRestricted
    }

    static let macros: [String: String] = [
        "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *", "@weekly": "0 0 0 * * 0",
        "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *",
    ]

    static func isSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }

    static func trimmed(_ text: String) -> String {
        var characters = Substring(text)
        while let first = characters.first, isSpace(first) { characters.removeFirst() }
        while let last = characters.last, isSpace(last) { characters.removeLast() }
        return String(characters)
    }

    /// Character offsets of a field in the text: `start ..< end`.
    struct FieldRange {
        var start: Int
        var end: Int
    }

    static func splitFields(_ characters: [Character]) -> [FieldRange] {
        var fields: [FieldRange] = []
        var i = 0
        while i < characters.count {
            if isSpace(characters[i]) { i += 1; continue }
            let start = i
            while i < characters.count && !isSpace(characters[i]) { i += 1 }
            fields.append(FieldRange(start: start, end: i))
        }
        return fields
    }
}

/// Why a cron expression was rejected.
package struct CronExpressionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// "second", "minute", "hour", "day of month", "month", "day of week", or "expression" (field count, macro).
    package var field: String
    /// 1-based character position in the text where the problem starts.
    package var position: Int
    /// What is wrong: "value 61 is outside 0...59", "unknown name 'FOO'", "step 0", ...
    package var reason: String

    package init(field: String, position: Int, reason: String) {
        self.field = field
        self.position = position
        self.reason = reason
    }

    /// "cron expression: minute at position 3: value 61 is outside 0...59".
    package var description: String { "cron expression: \(field) at position \(position): \(reason)" }
}

extension CronExpression {
    /// One of the six fields: its name, its range and its value names.
    enum Field {
        case second, minute, hour, dayOfMonth, month, dayOfWeek

        var name: String {
            switch self {
            case .second: "second"
            case .minute: "minute"
            case .hour: "hour"
            case .dayOfMonth: "day of month"
            case .month: "month"
            case .dayOfWeek: "day of week"
            }
        }

        var range: ClosedRange<Int> {
            switch self {
            case .second, .minute: 0 ... 59
            case .hour: 0 ... 23
            case .dayOfMonth: 1 ... 31
            case .month: 1 ... 12
            case .dayOfWeek: 0 ... 7
            }
        }

        /// The range `*` and `a/n` run over (day of week stops at 6: 7 is Sunday again).
        var starRange: ClosedRange<Int> { self == .dayOfWeek ? 0 ... 6 : range }

        /// Names, upper case, of the values from `range.lowerBound` (month) or 0 (day of week).
        var names: [String] {
            switch self {
            case .month: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
            case .dayOfWeek: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
            default: []
            }
        }
    }

    /// Parses one field's list into a bitmask (bit v for value v).
    struct FieldParser {
        struct Result {
            var mask: UInt64
            var lastDay: Bool
            /// The field is exactly `*` or `?`.
            var unrestricted: Bool
        }

        /// A value and whether it was written as a name.
        struct Value {
            var number: Int
            var isName: Bool
            var position: Int
        }

        let characters: [Character]
        var index: Int
        let end: Int
        let field: Field

        init(characters: [Character], start: Int, end: Int, field: Field) {
            self.characters = characters
            self.index = start
            self.end = end
            self.field = field
        }

        var peek: Character? { index < end ? characters[index] : nil }

        func fail(_ reason: String, at offset: Int) -> CronExpressionError {
            CronExpressionError(field: field.name, position: offset + 1, reason: reason)
        }

        mutating func parse() throws(CronExpressionError) -> Result {
            let start = index
            let isDayField = field == .dayOfMonth || field == .dayOfWeek
            if end - start == 1 && (characters[start] == "*" || characters[start] == "?") {
                if characters[start] == "?" && !isDayField {
                    throw fail("'?' is allowed only in day of month and day of week", at: start)
                }
                let range = field.starRange
                return Result(mask: CronExpression.FieldParser.bits(range.lowerBound, range.upperBound, step: 1), lastDay: false, unrestricted: true)
            }
            var result = Result(mask: 0, lastDay: false, unrestricted: false)
            while true {
                try item(into: &result)
                guard let c = peek else { return result }
                guard c == "," else { throw fail(unexpected(c), at: index) }
                index += 1
                if peek == nil { throw fail("empty list item", at: index) }
            }
        }

        func unexpected(_ c: Character) -> String {
            if c == "#" && field == .dayOfWeek { return "'#' (nth weekday) is not supported" }
            if (c == "W" || c == "w") && field == .dayOfMonth { return "'W' (nearest weekday) is not supported" }
            if (c == "L" || c == "l") && field == .dayOfWeek { return "'L' (last weekday) is not supported in day of week" }
            if c == "?" { return field == .dayOfMonth || field == .dayOfWeek ? "'?' must stand alone" : "'?' is allowed only in day of month and day of week" }
            return "unexpected character '\(c)'"
        }

        /// One list item: `*`, `L`, `a`, `a-b`, each optionally `/n`.
        mutating func item(into result: inout Result) throws(CronExpressionError) {
            let itemStart = index
            guard let c = peek else { throw fail("empty list item", at: index) }
            var low: Int
            var high: Int
            var isSingle = false
            if c == "," { throw fail("empty list item", at: index) }
            if c == "*" {
                index += 1
                low = field.starRange.lowerBound
                high = field.starRange.upperBound
            } else if c == "?" {
                throw fail(unexpected(c), at: index)
            } else {
                let first = try value()
                if field == .dayOfMonth && first.isName && first.number == CronExpression.FieldParser.lastDayMarker {
                    if peek == "-" { throw fail("'L-n' (an offset from the last day) is not supported", at: index) }
                    if peek == "/" { throw fail("'L' takes no step", at: index) }
                    result.lastDay = true
                    return
                }
                low = first.number
                high = first.number
                isSingle = true
                if peek == "-" {
                    index += 1
                    guard peek != nil && peek != "," && peek != "/" else { throw fail("missing end of range", at: index) }
                    var last = try value()
                    if field == .dayOfMonth && last.isName { throw fail("'L' cannot end a range", at: last.position) }
                    // SUN ends a range as 7: MON-SUN.
                    if field == .dayOfWeek && last.isName && last.number == 0 && low > 0 { last.number = 7 }
                    if low > last.number {
                        throw fail("range \(low)-\(last.number) is reversed (start above end)", at: itemStart)
                    }
                    high = last.number
                    isSingle = false
                }
            }
            var step = 1
            if peek == "/" {
                index += 1
                let stepStart = index
                var digits = 0
                var number = 0
                while let d = peek, let v = d.wholeNumberValue, d.isASCII {
                    if digits < 9 { number = number * 10 + v }
                    digits += 1
                    index += 1
                }
                if digits == 0 {
                    if let d = peek, d != "," { throw fail("bad step '\(d)'", at: index) }
                    throw fail("missing step after '/'", at: stepStart)
                }
                let size = field.starRange.count
                if number == 0 { throw fail("step 0", at: stepStart) }
                if digits > 9 || number > size {
                    throw fail("step \(String(characters[stepStart ..< index])) is outside 1...\(size)", at: stepStart)
                }
                step = number
                if isSingle { high = field.starRange.upperBound < low ? low : field.starRange.upperBound }
            }
            result.mask |= CronExpression.FieldParser.bits(low, high, step: step)
        }

        /// The value a name of `L` stands for in day of month.
        static let lastDayMarker = -1

        /// A number or a name, checked against the field's range.
        mutating func value() throws(CronExpressionError) -> Value {
            let start = index
            guard let c = peek else { throw fail("expected a value", at: index) }
            if c.isASCII, c.isNumber {
                var digits = 0
                var number = 0
                while let d = peek, d.isASCII, let v = d.wholeNumberValue {
                    if digits < 9 { number = number * 10 + v }
                    digits += 1
                    index += 1
                }
                let range = field.range
                if digits > 9 || !range.contains(number) {
                    throw fail("value \(String(characters[start ..< index])) is outside \(range.lowerBound)...\(range.upperBound)", at: start)
                }
                return Value(number: number, isName: false, position: start)
            }
            if c.isASCII, c.isLetter {
                while let d = peek, d.isASCII, d.isLetter { index += 1 }
                let word = String(characters[start ..< index])
                let upper = word.uppercased()
                if field == .dayOfMonth && upper == "L" { return Value(number: CronExpression.FieldParser.lastDayMarker, isName: true, position: start) }
                if field == .dayOfMonth && (upper == "W" || upper == "LW") { throw fail("'W' (nearest weekday) is not supported", at: start) }
                if field == .dayOfWeek && upper == "L" { throw fail("'L' (last weekday) is not supported in day of week", at: start) }
                if let k = field.names.firstIndex(of: upper) {
                    return Value(number: field == .month ? k + 1 : k, isName: true, position: start)
                }
                throw fail("unknown name '\(word)'", at: start)
            }
            throw fail(unexpected(c), at: start)
        }

        /// Bits low, low + step, ... up to high.
        static func bits(_ low: Int, _ high: Int, step: Int) -> UInt64 {
            var mask: UInt64 = 0
            var v = low
            while v <= high {
                mask |= 1 << UInt64(v)
                v += step
            }
            return mask
        }
    }
}
