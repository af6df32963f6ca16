extension CronExpression {
    /// The latest instant searched, UTC ms (about year 1 141 000): a larger `limit` is this.
    static let searchCeiling: Int64 = 1 << 55

    /// The first instant strictly after `milliseconds` (UTC ms since the Unix epoch) whose wall time in
    /// `zone` matches, in ms (always a whole second); nil when there is none at or before `limit`
    /// (UTC ms).
    ///
    /// Wall time: let w be the wall time of `milliseconds` in `zone`. The result is the first
    /// instant, after `milliseconds`, of the smallest matching wall time after w that exists:
    /// - a wall time in a gap (spring forward: 02:30 on the US March change day) does not occur,
    ///   so it does not fire that day;
    /// - a wall time that occurs twice (fall back) fires once, at its first occurrence, and
    ///   successive occurrences never go back in wall time: "*/30 * * * *" across the New York
    ///   fall-back fires 01:00 EDT, 01:30 EDT, then 02:00 EST; the repeated hour 01:00-01:59 EST
    ///   does not fire again;
    /// - only when `milliseconds` itself lies in the repeated hour's second pass is the second
    ///   occurrence of a wall time taken (its first has passed).
    ///
    /// Cost: a few bit scans per field and three to eight offset lookups per candidate wall time;
    /// months, days, hours and minutes that cannot match are skipped whole.
    package func nextOccurrence(after milliseconds: Int64, in zone: ZoneRules, limit: Int64) -> Int64? {
        let after = CivilCalendar.floorDivide(milliseconds, 1000)
        let last = CivilCalendar.floorDivide(min(limit, CronExpression.searchCeiling), 1000)
        guard after < last else { return nil }
        // No offset reaches 26 hours: wall times past this are past `last` wherever they map.
        let wallBound = last + 26 * 3600
        var wall = after + Int64(zone.offset(atUTC: after))
        while let candidate = nextWallTime(after: wall, notAfter: wallBound) {
            let instants = zone.instants(atLocal: candidate)
            var chosen: Int64?
            if let first = instants.first, first > after {
                chosen = first
            } else if let second = instants.second, second > after {
                chosen = second
            }
            if let chosen { return chosen <= last ? chosen * 1000 : nil }
            wall = candidate
        }
        return nil
    }

    /// The smallest matching wall time (local seconds since 1970-01-01 local midnight) after
    /// `wall`, or nil when there is none at or before `bound`. Pure calendar: no zone.
    package func nextWallTime(after wall: Int64, notAfter bound: Int64) -> Int64? {
        let start = wall + 1
        let startDays = CivilCalendar.floorDivide(start, CivilCalendar.secondsPerDay)
        let secondOfDay = Int(start - startDays * CivilCalendar.secondsPerDay)
        var (year, month, day) = CivilCalendar.date(days: startDays)
        var hour = secondOfDay / 3600
        var minute = secondOfDay / 60 % 60
        var second = secondOfDay % 60
        let monthMask = UInt64(months)
        let hourMask = UInt64(hours)
        // The month whose first day and day mask are at hand.
        var maskYear: Int64 = .min
        var maskMonth = 0
        var monthStart: Int64 = 0
        var dayMask: UInt64 = 0
        while true {
            if monthMask >> UInt64(month) & 1 == 0 {
                if let next = CronExpression.nextBit(monthMask, from: month) {
                    month = next
                } else {
                    year += 1
                    month = monthMask.trailingZeroBitCount
                }
                day = 1; hour = 0; minute = 0; second = 0
            }
            if year != maskYear || month != maskMonth {
                maskYear = year
                maskMonth = month
                monthStart = CivilCalendar.days(year: year, month: month, day: 1)
                if monthStart * CivilCalendar.secondsPerDay > bound { return nil }
                dayMask = days(year: year, month: month, firstDay: monthStart)
            }
            guard let d = CronExpression.nextBit(dayMask, from: day) else {
                month += 1
                if month > 12 { month = 1; year += 1 }
                day = 1; hour = 0; minute = 0; second = 0
                continue
            }
            if d != day { day = d; hour = 0; minute = 0; second = 0 }
            guard let h = CronExpression.nextBit(hourMask, from: hour) else {
                day += 1; hour = 0; minute = 0; second = 0
                continue
            }
            if h != hour { hour = h; minute = 0; second = 0 }
            guard let m = CronExpression.nextBit(minutes, from: minute) else {
                hour += 1; minute = 0; second = 0
                continue
            }
            if m != minute { minute = m; second = 0 }
            guard let s = CronExpression.nextBit(seconds, from: second) else {
                minute += 1; second = 0
                continue
            }
            let result = (monthStart + Int64(day - 1)) * CivilCalendar.secondsPerDay + Int64(hour * 3600 + minute * 60 + s)
            return result <= bound ? result : nil
        }
    }

    /// The matching days of `month` of `year` (bit d for day d), whose first day is `firstDay`
    /// (days since 1970-01-01): the day-of-month and day-of-week rule.
    @inline(__always)
    func days(year: Int64, month: Int, firstDay: Int64) -> UInt64 {
        let length = CivilCalendar.daysInMonth(year: year, month: month)
        let valid = (UInt64(1) << UInt64(length + 1)) - 2
        var byDate = UInt64(daysOfMonth)
        if lastDayOfMonth { byDate |= UInt64(1) << UInt64(length) }
        if !dayOfWeekRestricted { return byDate & valid }
        // Rotate the weekdays so that bit k is the weekday of day k + 1, then repeat it every 7
        // bits (0x10204081 has bits 0, 7, 14, 21, 28).
        let first = UInt64(CivilCalendar.weekday(days: firstDay))
        let week = UInt64(daysOfWeek)
        let rotated = (week >> first | week << (7 - first)) & 0x7F
        let byWeekday = (rotated &* 0x1020_4081) << 1
        if !dayOfMonthRestricted { return byWeekday & valid }
        return (byDate | byWeekday) & valid
    }

    /// The lowest set bit of `mask` at or above `from`.
    @inline(__always)
    static func nextBit(_ mask: UInt64, from: Int) -> Int? {
        guard from < 64 else { return nil }
        let rest = mask &>> UInt64(from)
        return rest == 0 ? nil : from + rest.trailingZeroBitCount
    }
}
