import Foundation
import HourglassTestSupport
import HourglassTesting
import Testing

// A smoke run of the benchmark executable (N = 1000, debug build): every scenario runs with
// its peers, and every `--json` line carries the fields that scripts outside the project read.
// Not a measurement: the numbers of a debug build on a busy CI machine mean nothing.

@Suite("hourglass-bench: a smoke run", .serialized)
struct BenchSmokeTests {
    static let required = ["scenario", "system", "durability", "timers", "payload_bytes", "seconds", "throughput", "cpu_ns_per_op"]

    /// Runs the benchmark with `arguments`; checks it exits 0 and prints only JSON lines.
    static func run(_ arguments: [String]) async throws -> (rows: [[String: JSON]], report: String) {
        let process = try HourglassProcess(arguments, binary: "hourglass-bench")
        let status = try await process.finish(timeout: .seconds(600))
        let report = "status \(status)\n--- stdout:\n\(process.stdout.prefix(4000))\n--- stderr:\n\(process.stderr.suffix(4000))"
        #expect(status == 0, "\(report)")
        #expect(process.parsed.allSatisfy { $0 != nil }, "every stdout line is a JSON object: \(report)")
        return (process.events, report)
    }

    /// `cpu_ns_per_op`: a positive number on every row that ran, null on a row that could not.
    static func checkCPU(_ row: [String: JSON]) {
        if row["available"] != .bool(false) {
            #expect((row["cpu_ns_per_op"]?.number ?? 0) > 0, "cpu_ns_per_op in \(row)")
        } else {
            #expect(row["cpu_ns_per_op"] == .null, "cpu_ns_per_op is null on an unavailable row: \(row)")
        }
    }

    /// The chart `name` written by `--plot`: an SVG document with a bar or point per row.
    static func chart(_ directory: TemporaryDirectory, _ name: String) -> String {
        String(decoding: readFile(directory.appending(name)), as: UTF8.self)
    }

    @Test("--scenario all --timers 1000 --json --plot DIR: every scenario, every system, every required field; the charts")
    func smoke() async throws {
        let charts = TemporaryDirectory("bench-plot")
        defer { charts.remove() }
        let plotDirectory = charts.appending("charts")
        let process = try HourglassProcess(["--scenario", "all", "--timers", "1000", "--json", "--plot", plotDirectory], binary: "hourglass-bench")
        let status = try await process.finish(timeout: .seconds(600))
        let report = "status \(status)\n--- stdout:\n\(process.stdout.prefix(4000))\n--- stderr:\n\(process.stderr.suffix(4000))"
        #expect(status == 0, "\(report)")
        #expect(process.parsed.allSatisfy { $0 != nil }, "every stdout line is a JSON object: \(report)")
        let rows = process.events
        for row in rows {
            for field in Self.required {
                #expect(row[field] != nil, "\(field) missing in \(row)")
            }
            let available = row["available"] != .bool(false)
            if available {
                #expect((row["seconds"]?.number ?? -1) >= 0, "seconds in \(row)")
                #expect((row["throughput"]?.number ?? 0) > 0, "throughput in \(row)")
            } else {
                #expect(row["throughput"] == .null && row["reason"]?.string != nil, "an unavailable row says why: \(row)")
            }
            Self.checkCPU(row)
            // N, or what the row's throughput counts (a checkpoint's timers, a wheel phase's operations).
            if row["scenario"]?.string?.hasPrefix("cron:") == true {
                // Pure computations: N next-occurrence calls (N / 10 parses), no timers, no payloads.
                #expect((row["timers"]?.int ?? 0) >= 100, "calls in \(row)")
                #expect(row["payload_bytes"]?.int == 0, "payload_bytes in \(row)")
            } else if row["scenario"]?.string == "replicated: takeover" {
                // The crashed node's share of the N pending timers (about a third).
                #expect((row["timers"]?.int ?? 0) >= 100, "timers in \(row)")
                #expect((row["first_overdue_fire_max_ms"]?.number ?? -1) > 0, "the takeover's figure in \(row)")
            } else {
                #expect((row["timers"]?.int ?? 0) >= 1000, "timers in \(row)")
                #expect(row["payload_bytes"]?.int == 128, "payload_bytes in \(row)")
            }
        }
        let scenarios = Set(rows.compactMap { $0["scenario"]?.string })
        #expect(scenarios.filter { $0.hasPrefix("cron: ") }.count == 6, "the cron scenario's rows: \(scenarios.sorted())")
        #expect(scenarios.filter { $0.hasPrefix("recurring: ") }.count == 3, "the recurring scenario's rows: \(scenarios.sorted())")
        #expect(scenarios.isSuperset(of: ["replicated: schedule", "replicated: takeover"]), "the replicated scenario's rows: \(scenarios.sorted())")
        for scenario in ["schedule", "fire", "cancel", "mixed", "lateness", "recover", "checkpoint"] {
            #expect(scenarios.contains(scenario), "no \(scenario) row")
            for system in ["hourglass", "heap", "sqlite"] {
                #expect(rows.contains { $0["scenario"]?.string == scenario && $0["system"]?.string == system }, "no \(system) row for \(scenario)")
            }
        }
        let lateness = rows.filter { $0["scenario"]?.string == "lateness" && $0["system"]?.string == "hourglass" }
        #expect(lateness.allSatisfy { $0["p50_ms"] != nil && $0["p99_ms"] != nil && $0["max_ms"] != nil }, "lateness percentiles: \(lateness)")
        let schedule = rows.filter { $0["scenario"]?.string == "schedule" && $0["system"]?.string == "hourglass" }
        #expect(schedule.allSatisfy { $0["disk_bytes_per_timer"] != nil && $0["allocations_per_timer"] != nil }, "schedule bytes and allocations: \(schedule)")
        #expect(schedule.allSatisfy { $0["callers"]?.int == 64 }, "schedule callers: \(schedule)")
        #expect(schedule.allSatisfy { $0["msync_p50_us"] == nil }, "no sync ceiling outside --durability always: \(schedule)")

        // --plot: throughput per scenario and system, and the lateness percentiles; no sweep ran.
        #expect(fileNames(in: plotDirectory) == ["lateness.svg", "throughput.svg"])
        let throughput = Self.chart(charts, "charts/throughput.svg")
        #expect(throughput.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\"") && throughput.hasSuffix("</svg>\n"))
        let plotted = rows.filter { $0["available"] != .bool(false) && $0["scenario"]?.string?.hasPrefix("lateness") == false }
        #expect(throughput.components(separatedBy: "</title></rect>").count - 1 == plotted.count, "one bar per row that ran")
        for scenario in ["schedule", "fire", "cancel", "mixed", "recover", "checkpoint"] {
            #expect(throughput.contains(">\(scenario)</text>"), "\(scenario) in throughput.svg")
        }
        #expect(throughput.contains("<title>schedule, hourglass: "), "bars say what they are")
        let latenessChart = Self.chart(charts, "charts/lateness.svg")
        for system in ["hourglass", "heap"] {
            #expect(latenessChart.contains(">\(system)</text>") && latenessChart.contains("<title>\(system), p99: p99 "), "\(system) in lateness.svg")
        }
        #expect(process.stderr.contains("hourglass-bench: wrote \(plotDirectory)/throughput.svg"))
    }

    @Test("--scenario schedule --durability always --callers 1: the sync ceiling, one caller")
    func syncCeiling() async throws {
        let (rows, report) = try await Self.run(["--scenario", "schedule", "--durability", "always", "--callers", "1", "--timers", "1000", "--no-peers", "--json"])
        #expect(rows.count == 1, "one row: \(report)")
        guard let row = rows.first else { return }
        Self.checkCPU(row)
        #expect(row["scenario"]?.string == "schedule" && row["system"]?.string == "hourglass" && row["durability"]?.string == "always", "\(row)")
        #expect(row["callers"]?.int == 1, "callers in \(row)")
        #expect((row["throughput"]?.number ?? 0) > 0, "throughput in \(row)")
        let p50 = row["msync_p50_us"]?.number ?? 0
        let p99 = row["msync_p99_us"]?.number ?? 0
        #expect(p50 > 0 && p99 >= p50 && (row["msync_max_us"]?.number ?? 0) >= p99, "msync percentiles in \(row)")
        let one = row["ceiling_1_caller_per_s"]?.number ?? 0
        let ceiling = row["ceiling_per_s"]?.number ?? 0
        #expect(one > 0 && abs(ceiling - one) <= one * 1e-9, "with one caller of one timer, the ceiling is 1/p50: \(row)")
        let ratio = row["ceiling_ratio"]?.number ?? 0
        #expect(ratio > 0 && abs(ratio - (row["throughput"]?.number ?? 0) / ceiling) <= ratio * 1e-6, "ceiling_ratio = throughput / ceiling_per_s: \(row)")
        #expect(row["notes"]?.string?.contains("1 caller,") == true, "the notes say 1 caller: \(row)")
    }

    @Test("--scenario lateness --sweep at tiny rates: a row per step and system, then the highest rate within the bound")
    func latenessSweep() async throws {
        let charts = TemporaryDirectory("bench-plot")
        defer { charts.remove() }
        let (rows, report) = try await Self.run(["--scenario", "lateness", "--sweep", "--sweep-rates", "500,1000", "--timers", "1000", "--json", "--plot", charts.path])
        let sweepChart = Self.chart(charts, "lateness-sweep.svg")
        #expect(sweepChart.contains("<polyline") && sweepChart.contains("bound: p99 ≤ 10"), "lateness-sweep.svg: \(sweepChart.prefix(300))")
        #expect(sweepChart.contains("<title>hourglass: \(500.0) /s due"), "a point per step: \(sweepChart.prefix(2000))")
        let summaryName = "lateness sweep: max rate, p99 ≤ 10 ms"
        for system in ["hourglass", "heap", "sqlite"] {
            let steps = rows.filter { $0["system"]?.string == system && $0["scenario"]?.string?.hasPrefix("lateness sweep: ") == true && $0["scenario"]?.string != summaryName }
            let summary = rows.filter { $0["system"]?.string == system && $0["scenario"]?.string == summaryName }
            if rows.contains(where: { $0["system"]?.string == system && $0["available"] == .bool(false) }) { continue }  // no SQLite here
            #expect(!steps.isEmpty && summary.count == 1, "\(system): steps and one summary: \(report)")
            for row in steps + summary {
                for field in Self.required { #expect(row[field] != nil, "\(field) missing in \(row)") }
                Self.checkCPU(row)
            }
            for row in steps {
                #expect(row["p50_ms"]?.number != nil && row["p99_ms"]?.number != nil && row["max_ms"]?.number != nil, "step percentiles: \(row)")
                #expect([500, 1000].contains(row["due_per_second"]?.int ?? 0), "due_per_second in \(row)")
                #expect(row["due_per_second"]?.int == row["load_per_second"]?.int, "the background load follows the due rate: \(row)")
            }
            if let row = summary.first {
                let best = row["max_rate_within_bound"]
                #expect(best == .null || [500, 1000].contains(best?.int ?? 0), "max_rate_within_bound in \(row)")
                #expect((row["steps_run"]?.int ?? 0) == steps.count && row["bound_ms"]?.int == 10, "steps_run and bound_ms in \(row)")
            }
        }
    }
}
