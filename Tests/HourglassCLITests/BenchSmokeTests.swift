import Testing

// A smoke run of the benchmark executable (N = 1000, debug build): every scenario runs with
// its peers, and every `--json` line carries the fields that scripts outside the project read.
// Not a measurement: the numbers of a debug build on a busy CI machine mean nothing.

@Suite("hourglass-bench: a smoke run")
struct BenchSmokeTests {
    static let required = ["scenario", "system", "durability", "timers", "payload_bytes", "seconds", "throughput"]

    @Test("--scenario all --timers 1000 --json: every scenario, every system, every required field")
    func smoke() async throws {
        let process = try HourglassProcess(["--scenario", "all", "--timers", "1000", "--json"], binary: "hourglass-bench")
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
            // N, or what the row's throughput counts (a checkpoint's timers, a wheel phase's operations).
            #expect((row["timers"]?.int ?? 0) >= 1000, "timers in \(row)")
            #expect(row["payload_bytes"]?.int == 128, "payload_bytes in \(row)")
        }
        let scenarios = Set(rows.compactMap { $0["scenario"]?.string })
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
    }
}
