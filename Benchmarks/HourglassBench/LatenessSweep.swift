import Hourglass

/// `lateness --sweep`: the lateness run again and again at a rising due rate, to find the highest
/// rate at which a system keeps its p99 lateness within a bound.
///
/// Every step has the same window (`windowMs`, 1–2 s: `--timers` / 100 000 s, so `--timers` is the
/// first step's size at 100 k/s), so its timers scale with the rate (rate × window), each scheduled
/// one second ahead, with the scenario's background load rule (`--load`, or as many schedules per
/// second as timers fall due). A system stops after a step whose p99 exceeds ten times the bound
/// (it is clearly overloaded: higher rates only take longer to say the same). A step gives up
/// `drainMs` after its last deadline; timers undelivered by then count as that late.
struct SweepPlan {
    static let defaultRates = [100_000, 200_000, 400_000, 800_000, 1_600_000]
    static let boundMs = 10.0
    static let overloadFactor = 10.0
    static let drainMs: Int64 = 2000
    static let summaryScenario = "lateness sweep: max rate, p99 ≤ \(Int(boundMs)) ms"

    var rates: [Int]
    var windowMs: Int64

    init(timers: Int, rates: [Int]) {
        self.rates = rates
        windowMs = Int64(min(2000, max(1000, timers / 100)))
    }
}

/// What the sweep learned about one system.
struct SweepOutcome {
    var system: String
    var durability: String
    var best: Int? = nil
    var lastRate: Int? = nil
    var lastP99: Double? = nil
    var stoppedEarly = false
    var steps = 0
    var timers = 0
    var delivered = 0.0
    var seconds = 0.0
    var cpu = CPUSpent(total: 0, system: 0)
    var peak = 0
    var running = true
}

func latenessSweep(_ ctx: Context, emit: ([Measurement]) -> Void) async throws {
    let sweep = SweepPlan(timers: ctx.timers, rates: ctx.sweepRates)
    var outcomes = [SweepOutcome(system: "hourglass", durability: ctx.durabilityName)]
    var sqlite: SQLiteLibrary? = nil
    if ctx.peers {
        outcomes.append(SweepOutcome(system: "heap", durability: "memory"))
        let (lib, unavailable) = ctx.sqlitePeer(scenario: "lateness sweep", timers: ctx.timers)
        if let unavailable { emit([unavailable]) }
        if let lib {
            sqlite = lib
            outcomes.append(SweepOutcome(system: "sqlite", durability: ctx.durabilityName))
        }
    }
    let bound = SweepPlan.boundMs
    let overload = SweepPlan.boundMs * SweepPlan.overloadFactor
    for rate in sweep.rates {
        guard outcomes.contains(where: { $0.running }) else { break }
        let n = max(1, Int(Int64(rate) * sweep.windowMs / 1000))
        let plan = LatenessPlan(timers: n, windowMs: sweep.windowMs, loadRate: ctx.loadRate ?? rate)
        let scenario = "lateness sweep: \(formatRate(Double(rate))) due"
        status("\(scenario): generating \(n) timers and \(plan.loadTotal) background ids")
        let run = LatenessRun(scenario: scenario, plan: plan, payloadBytes: ctx.payloadBytes, seed: ctx.seed, drainMs: SweepPlan.drainMs)
        var rows: [Measurement] = []
        for k in outcomes.indices where outcomes[k].running {
            var m: Measurement
            switch outcomes[k].system {
            case "hourglass": m = try await latenessHourglass(ctx, run)
            case "heap": m = latenessHeap(ctx, run)
            default: m = try latenessSQLite(ctx, run, lib: sqlite!)
            }
            let p99 = m.p99 ?? .infinity
            let undelivered = m.extra.first { $0.0 == "undelivered" }?.1 ?? 0
            m.extra.insert(contentsOf: [("due_per_second", Double(plan.dueRate)), ("load_per_second", Double(plan.loadRate))], at: 0)
            var o = outcomes[k]
            o.steps += 1
            o.timers += n
            o.seconds += m.seconds
            o.delivered += m.throughput * m.seconds
            if let cpu = m.cpu { o.cpu = o.cpu + cpu }
            o.peak = max(o.peak, m.peakResidentBytes ?? 0)
            o.lastRate = rate
            o.lastP99 = p99
            if p99 <= bound && undelivered == 0 {
                o.best = rate
                m.notes.insert("step within the bound: p99 \(formatMilliseconds(p99)) ms ≤ \(formatMilliseconds(bound)) ms", at: 0)
            } else if p99 > overload {
                o.running = false
                o.stoppedEarly = rate != sweep.rates.last
                m.notes.insert("overloaded: p99 \(formatMilliseconds(p99)) ms > \(formatMilliseconds(overload)) ms (10× the bound)\(o.stoppedEarly ? "; the sweep stops here for \(o.system)" : "")", at: 0)
            } else {
                m.notes.insert("over the bound: p99 \(formatMilliseconds(p99)) ms > \(formatMilliseconds(bound)) ms\(undelivered > 0 ? " (\(Int(undelivered)) undelivered)" : "")", at: 0)
            }
            outcomes[k] = o
            rows.append(m)
        }
        withExtendedLifetime(run) {}
        status("")
        emit(rows)
    }

    // One row per system: the highest rate within the bound.
    var summary: [Measurement] = []
    for o in outcomes where o.steps > 0 {
        var m = Measurement(scenario: SweepPlan.summaryScenario, system: o.system, durability: o.durability, timers: o.timers,
                            payloadBytes: ctx.payloadBytes, seconds: o.seconds, throughput: o.delivered / max(o.seconds, 1e-9))
        m.setCPU(o.cpu)
        m.peakResidentBytes = o.peak
        if o.system == "hourglass" { m.callers = ctx.callers }
        m.extra = [
            ("max_rate_within_bound", o.best.map(Double.init) ?? .nan),
            ("bound_ms", bound),
            ("highest_rate_run", Double(o.lastRate ?? 0)),
            ("steps_run", Double(o.steps)),
        ]
        let reached = o.best.map { "\(formatRate(Double($0))) due" } ?? "none of the rates run (the lowest, \(formatRate(Double(sweep.rates.first ?? 0))), already exceeded it)"
        m.notes.append("highest rate whose p99 lateness stayed ≤ \(formatMilliseconds(bound)) ms: \(reached)")
        if let last = o.lastRate, let p99 = o.lastP99 {
            m.notes.append(o.stoppedEarly
                ? "stopped after \(formatRate(Double(last))): p99 \(formatMilliseconds(p99)) ms > \(formatMilliseconds(overload)) ms"
                : "ran every rate up to \(formatRate(Double(last))) (p99 there \(formatMilliseconds(p99)) ms)")
        }
        m.notes.append("steps of \(sweep.windowMs) ms of deadlines (timers = rate × window), each scheduled 1 s ahead; background load \(ctx.loadRate.map { "\($0)/s (--load)" } ?? "as many schedules per second as timers due"); a step gives up \(SweepPlan.drainMs) ms after its last deadline")
        m.notes.append("timers (due), seconds and CPU: summed over the \(o.steps) step(s) run; throughput: their deliveries over their seconds")
        summary.append(m)
    }
    emit(summary)
}
