import ArgumentParser
import Hourglass

@main
struct HourglassBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hourglass-bench",
        abstract: "Throughput, lateness, memory and recovery of Hourglass, side by side with the peers users would pick.",
        discussion: """
            Scenarios: \(HourglassBench.scenarios.joined(separator: ", ")), or all. Peers: heap (swift-collections' Heap \
            as an in-memory delay queue) and sqlite (the system's libsqlite3, loaded at run time: a timer table \
            polled by due time). See Docs/BENCHMARKS.md.
            """)

    static let scenarios = ["schedule", "fire", "cancel", "mixed", "lateness", "recover", "checkpoint", "wheel", "log", "cron", "recurring", "replicated"]

    @Option(help: "Scenario: schedule, fire, cancel, mixed, lateness, recover, checkpoint, wheel, log, cron, recurring, or all.")
    var scenario: String = "all"

    @Option(help: "Timers (pending timers for the wheel scenario; next-occurrence calls per expression for the cron scenario).")
    var timers: Int = 1_000_000

    @Option(help: "Operations in the steady-state phases of the wheel scenario (default: 10 × timers).")
    var operations: Int? = nil

    @Option(help: "Payload bytes per timer (realistic order JSON, padded or cut to this size).")
    var payload: Int = 128

    @Option(help: "Durability policy: always, interval:MS or none.")
    var durability: String = "interval:10"

    @Option(help: "Concurrent callers (and consumers) of the engine.")
    var callers: Int = 64

    @Option(help: "Partitions of the engine: with more than 1, the schedule, fire, cancel and mixed scenarios run Hourglass twice, with 1 partition and with this many, side by side.")
    var partitions: Int = 1

    @Option(help: "Timers per schedule call in the schedule scenario (1: one call per timer).")
    var batch: Int = 1

    @Option(name: .customLong("sqlite-batch"), help: "Rows per SQLite transaction and poll (default: Hourglass's mean group commit in the same scenario).")
    var sqliteBatch: Int? = nil

    @Option(help: "Background schedules per second in the lateness scenario (default: as many as timers fall due per second).")
    var load: Int? = nil

    @Flag(help: "lateness: raise the due rate step by step (--sweep-rates) and report the highest rate whose p99 stays within 10 ms.")
    var sweep = false

    @Option(name: .customLong("sweep-rates"), help: "lateness --sweep: timers due per second at each step, comma-separated.")
    var sweepRates: String = SweepPlan.defaultRates.map(String.init).joined(separator: ",")

    func parsedSweepRates() throws -> [Int] {
        let rates = sweepRates.split(separator: ",").map { Int($0.trimmingCharacters(in: " ")) }
        guard !rates.isEmpty, rates.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--sweep-rates must be positive integers separated by commas")
        }
        return rates.map { $0! }
    }

    @Option(help: "The replicated scenario's PostgreSQL (postgres://user@host:port/database); by default it starts its own in a temporary directory.")
    var postgres: String?

    @Option(help: "Directory under which scenarios create their directories.")
    var dir: String = "/tmp"

    @Flag(name: .customLong("no-peers"), help: "Measure Hourglass only.")
    var noPeers = false

    @Flag(help: "One JSON object per line on stdout.")
    var json = false

    @Option(help: "Also write SVG charts of the results into this directory (created if missing): throughput.svg, lateness.svg, lateness-sweep.svg.")
    var plot: String? = nil

    @Option(help: "Workload seed.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Internal: run as the restarted process of the recover scenario.", visibility: .private))
    var child: String? = nil

    @Option(name: .customLong("child-dir"), help: ArgumentHelp("Internal: the directory the restarted process opens.", visibility: .private))
    var childDirectory: String? = nil

    func parsedDurability() throws -> Configuration.Durability {
        switch durability {
        case "always": return .always
        case "none": return .none
        default:
            if durability.hasPrefix("interval:"), let ms = Int(durability.dropFirst("interval:".count)), ms > 0 {
                return .interval(.milliseconds(ms))
            }
            throw ValidationError("--durability must be always, none or interval:MS")
        }
    }

    func validate() throws {
        _ = try parsedDurability()
        guard timers >= 1 else { throw ValidationError("--timers must be at least 1") }
        guard payload >= 0 && payload <= 1 << 20 else { throw ValidationError("--payload must be 0 ... 1048576") }
        guard callers >= 1 else { throw ValidationError("--callers must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let sqliteBatch, sqliteBatch < 1 { throw ValidationError("--sqlite-batch must be at least 1") }
        if let load, load < 0 { throw ValidationError("--load must be at least 0") }
        if let operations, operations < 1 { throw ValidationError("--operations must be at least 1") }
        if let plot, plot.isEmpty { throw ValidationError("--plot needs a directory") }
        _ = try parsedSweepRates()
        if sweep && scenario != "lateness" { throw ValidationError("--sweep needs --scenario lateness") }
        if partitions < 1 || partitions > 256 { throw ValidationError("--partitions must be 1 ... 256") }
        if child == nil && scenario != "all" && !HourglassBench.scenarios.contains(scenario) {
            throw ValidationError("unknown scenario \(scenario): \(HourglassBench.scenarios.joined(separator: ", ")) or all")
        }
    }

    mutating func run() async throws {
        let policy = try parsedDurability()
        if let child {
            guard let childDirectory else { throw ValidationError("--child needs --child-dir") }
            switch child {
            case "recover-hourglass": try await recoverChildHourglass(path: childDirectory, durability: policy)
            case "recover-sqlite": try recoverChildSQLite(path: childDirectory, fullSync: policy == .always)
            default: throw ValidationError("unknown child \(child)")
            }
            return
        }
        let ctx = Context(
            timers: timers, payloadBytes: payload, durability: policy, callers: callers, batch: batch, seed: seed, base: dir,
            peers: !noPeers, sqliteBatch: sqliteBatch, loadRate: load, sweepRates: try parsedSweepRates(),
            sqlite: noPeers ? nil : SQLiteLibrary.load())
        let reporter = Reporter(json: json)
        if !allocationCounting {
            writeStandardError("hourglass-bench: warning: malloc is not interposed; allocation counts will read 0\n")
        }
        if !json {
            var peers = "heap"
            switch ctx.sqlite {
            case let .success(lib)?: peers += ", sqlite \(lib.version)"
            case let .failure(error)?: peers += "; sqlite unavailable: \(error.message)"
            case nil: peers = "none"
            }
            writeStandardOutput("hourglass-bench: \(timers) timers, \(payload) B payloads, durability \(policy), \(callers) callers, seed \(seed); peers: \(peers)")
            writeStandardOutput("(throughput: operations per second; B/t: bytes per timer; allocs/t: mallocs per timer; vs hourglass: this row's throughput over Hourglass's)")
        }
        let names = scenario == "all" ? HourglassBench.scenarios : [scenario]
        for name in names {
            var results: [Measurement]
            switch name {
            case "schedule": results = try await scheduleScenario(ctx)
            case "fire": results = try await fireScenario(ctx)
            case "cancel": results = try await cancelScenario(ctx)
            case "mixed": results = try await mixedScenario(ctx)
            case "lateness" where sweep:
                try await latenessSweep(ctx) { rows in
                    status("")
                    reporter.report(rows)
                }
                results = []
            case "lateness": results = try await latenessScenario(ctx)
            case "recover": results = try await recoverScenario(ctx)
            case "checkpoint": results = try await checkpointScenario(ctx)
            case "wheel": results = wheelMeasurements(ctx)
            case "log": results = try logScenario(ctx)
            case "cron": results = cronMeasurements()
            case "recurring": results = try await recurringMeasurements()
            case "replicated": results = try await replicatedScenario(ctx, postgresURL: postgres)
            default: throw ValidationError("unknown scenario \(name)")
            }
            if partitions > 1 && ["schedule", "fire", "cancel", "mixed"].contains(name) {
                // The same scenario over a partitioned engine, beside the one-partition rows.
                var partitioned = ctx
                partitioned.partitions = partitions
                partitioned.peers = false
                partitioned.sqlite = nil
                let more: [Measurement]
                switch name {
                case "schedule": more = try await scheduleScenario(partitioned)
                case "fire": more = try await fireScenario(partitioned)
                case "cancel": more = try await cancelScenario(partitioned)
                default: more = try await mixedScenario(partitioned)
                }
                results += more.filter { $0.system == "hourglass" }.map { row in
                    var row = row
                    row.system = "hourglass ×\(partitions) partitions"
                    return row
                }
            }
            status("")
            if !results.isEmpty { reporter.report(results) }
        }
        if let plot {
            let title = "hourglass-bench --scenario \(scenario)\(sweep ? " --sweep" : ""): \(timers) timers, \(payload) B payloads, durability \(policy), \(callers) callers, seed \(seed)"
            do {
                for path in try writeCharts(reporter.all, to: plot, title: title) { writeStandardError("hourglass-bench: wrote \(path)\n") }
            } catch {
                writeStandardError("hourglass-bench: \(error)\n")
                throw ExitCode.failure
            }
        }
    }

    /// The cron scenario: next occurrences of cron expressions, ns per call (no engine, no disk).
    func cronMeasurements() -> [Measurement] {
        status("cron: \(timers) next-occurrence calls per expression")
        return runCronScenario(calls: timers, seed: seed).map { r in
            var m = Measurement(scenario: "cron: \(r.name)", system: r.system, durability: "memory", timers: r.operations,
                                payloadBytes: 0, seconds: r.seconds)
            m.setCPU(r.cpu)
            m.notes.append(r.note)
            return m
        }
    }

    /// The recurring scenario: schedule calls and live memory per timer, one-shot against series.
    func recurringMeasurements() async throws -> [Measurement] {
        status("recurring: \(timers) one-shot timers, then \(timers) every-N series, then \(timers) cron series")
        return try await runRecurringScenario(timers: timers, payloadBytes: payload).map { r in
            var m = Measurement(scenario: "recurring: \(r.name)", system: r.system, durability: "memory", timers: r.operations,
                                payloadBytes: payload, seconds: r.seconds)
            m.memoryBytesPerTimer = r.memoryBytesPerTimer
            m.setCPU(r.cpu)
            m.notes.append(r.note)
            return m
        }
    }

    func wheelMeasurements(_ ctx: Context) -> [Measurement] {
        status("wheel: \(timers) pending timers")
        let runs = runWheelScenario(pending: timers, operations: operations ?? 10 * timers, payloadBytes: payload, seed: seed, peers: !noPeers)
        return runs.map { r in
            var m = Measurement(scenario: "wheel: \(r.name)", system: r.system, durability: "memory", timers: r.operations,
                                payloadBytes: payload, seconds: r.seconds)
            m.memoryBytesPerTimer = r.memoryBytesPerTimer
            m.allocationsPerTimer = r.allocationsPerTimer
            m.setCPU(r.cpu)
            if !r.note.isEmpty { m.notes.append(r.note) }
            return m
        }
    }
}
