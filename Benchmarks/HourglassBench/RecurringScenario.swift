import Hourglass
import HourglassTesting

/// The `recurring` scenario: what a recurring series costs against a one-shot timer, through
/// the engine in memory (a manual clock: nothing fires). The same ids and payloads three times,
/// each in a fresh engine: one-shot timers, `.every` series, `.cron` series (all series of a
/// kind share one rule, as a service's series do). Reports schedule calls per second from one
/// caller and the live memory per timer (anonymous memory the process gained, over the timers).
func runRecurringScenario(timers: Int, payloadBytes: Int) async throws -> [WheelResult] {
    let ids = (0 ..< timers).map { TimerID("series-\(String(repeating: "0", count: max(0, 10 - String($0).count)))\($0)") }
    let payload = [UInt8](repeating: 0x61, count: payloadBytes)
    let start = Deadline(millisecondsSinceEpoch: 1_767_225_600_000)  // 2026-01-01T00:00:00Z
    var results: [WheelResult] = []
    // Every engine stays open until the end, so that each one's growth is its own (memory a
    // closed engine freed would be reused by the next one).
    var engines: [HourglassEngine] = []
    for kind in ["one-shot", "every 60 s", "cron 0 */5 * * * ? Europe/Berlin"] {
        let clock = ManualClock(now: start)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        let before = liveAnonymousBytes()
        let recurrence: Recurrence? = kind == "one-shot" ? nil : kind.hasPrefix("every") ? .every(.seconds(60)) : .cron("0 */5 * * * ?", timeZone: "Europe/Berlin")
        var failure: HourglassError? = nil
        let timing = await measuredAsync {
            for (i, id) in ids.enumerated() {
                do throws(HourglassError) {
                    if let recurrence {
                        try await engine.schedule(id: id, repeating: recurrence, payload: payload)
                    } else {
                        try await engine.schedule(id: id, at: Deadline(millisecondsSinceEpoch: start.millisecondsSinceEpoch + 60_000 + Int64(i % 3_600_000)), payload: payload)
                    }
                } catch {
                    failure = error
                    return
                }
            }
        }
        if let failure { throw failure }
        let stats = await engine.stats()
        let perTimer = Double(liveAnonymousBytes() - before) / Double(timers)
        precondition(stats.pending == timers, "every timer is pending")
        results.append(WheelResult(name: "schedule \(kind)", system: "hourglass", operations: timers, timing: timing,
                                   note: "\(format2(perTimer)) B live per timer (ids of 17 B, \(payloadBytes) B payloads); engine tables \(format2(Double(stats.memoryBytes) / Double(timers))) B allocated per timer",
                                   memoryBytesPerTimer: perTimer))
        engines.append(engine)
    }
    for engine in engines { try await engine.close() }
    return results
}
