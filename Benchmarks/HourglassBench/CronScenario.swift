import HourglassCore

/// The `cron` scenario: next-occurrence computations of cron expressions in their zones, pure
/// code (no engine, no I/O after the zones are loaded). Each expression is chained from
/// 2026-01-01 UTC, each result the next call's start, and starts over after one year, so the
/// New York and Berlin expressions cross both daylight-saving changes; one row asks for random
/// instants of 2026 instead (no chaining: each call starts cold). Reported per call.
func runCronScenario(calls: Int, seed: UInt64) -> [WheelResult] {
    let yearStart: Int64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z
    let yearEnd: Int64 = 1_798_761_600_000  // 2027-01-01T00:00:00Z
    let limit: Int64 = 253_402_300_799_999
    let cases: [(text: String, zone: String, label: String)] = [
        ("0/30 * * * * ?", "UTC", "UTC"),
        ("0 0 12 * * MON-FRI", "Europe/Berlin", "Berlin"),
        ("30 2 * * *", "America/New_York", "New York"),
        ("*/15 9-17 * * 1-5", "Europe/Berlin", "Berlin"),
    ]
    var results: [WheelResult] = []
    var checksum: Int64 = 0
    for (text, zoneName, label) in cases {
        let expression = try! CronExpression(parsing: text)
        let zone = try! ZoneRules.named(zoneName)
        let timing = measured {
            var t = yearStart
            for _ in 0 ..< calls {
                t = expression.nextOccurrence(after: t, in: zone, limit: limit)!
                if t >= yearEnd { t = yearStart }
            }
            checksum &+= t
        }
        results.append(WheelResult(name: "\(text), \(label)", system: "cron", operations: calls, timing: timing,
                                   note: "\(format2(timing.seconds * 1e9 / Double(calls))) ns per call"))
    }
    do {
        let expression = try! CronExpression(parsing: "30 2 * * *")
        let zone = try! ZoneRules.named("America/New_York")
        var random = WorkloadRandom(seed: seed)
        let starts: [Int64] = (0 ..< 1 << 16).map { _ in yearStart + Int64(random.next() % UInt64(yearEnd - yearStart)) }
        let timing = measured {
            for i in 0 ..< calls { checksum &+= expression.nextOccurrence(after: starts[i & (starts.count - 1)], in: zone, limit: limit)! }
        }
        results.append(WheelResult(name: "30 2 * * *, New York, random starts", system: "cron", operations: calls, timing: timing,
                                   note: "\(format2(timing.seconds * 1e9 / Double(calls))) ns per call"))
    }
    do {
        let texts = cases.map(\.text)
        let parses = max(1, calls / 10)
        let timing = measured {
            for i in 0 ..< parses { checksum &+= Int64((try! CronExpression(parsing: texts[i % texts.count])).minutes & 1) }
        }
        results.append(WheelResult(name: "parse (the four in turn)", system: "cron", operations: parses, timing: timing,
                                   note: "\(format2(timing.seconds * 1e9 / Double(parses))) ns per parse"))
    }
    precondition(checksum != 1, "keeps the results alive")
    return results
}
