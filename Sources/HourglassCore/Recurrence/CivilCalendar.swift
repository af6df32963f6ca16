/// The proleptic Gregorian calendar as day numbers: days since 1970-01-01, Howard Hinnant's
/// `days_from_civil` and `civil_from_days` (exact for every Int64 year this library meets, no
/// loops, no tables).
package enum CivilCalendar {
    package static let secondsPerDay: Int64 = 86_400

    /// Days since 1970-01-01 of `year`-`month`-`day` (month 1...12, day 1...31; a day past the
    /// month's end counts on into the next month).
    @inline(__always)
    package static func days(year: Int64, month: Int, day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date of `days` since 1970-01-01.
    @inline(__always)
    package static func date(days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, Int(month), Int(day))
    }

    /// The day of the week of `days` since 1970-01-01: 0 is Sunday ... 6 is Saturday.
    @inline(__always)
    package static func weekday(days: Int64) -> Int {
        Int(days >= -4 ? (days + 4) % 7 : (days + 5) % 7 + 6)
    }

    @inline(__always)
    package static func isLeapYear(_ year: Int64) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    /// Days in `month` (1...12) of `year`.
    @inline(__always)
    package static func daysInMonth(year: Int64, month: Int) -> Int {
        if month == 2 { return isLeapYear(year) ? 29 : 28 }
        return month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31
    }

    /// `value` divided by `divisor` (positive), rounded towards minus infinity.
    @inline(__always)
    package static func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
        let q = value / divisor
        return value % divisor < 0 ? q - 1 : q
    }
}
