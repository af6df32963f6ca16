import ArgumentParser
import Hourglass

@main
struct HourglassBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hourglass-bench",
        abstract: "Throughput, lateness and recovery of Hourglass, side by side with the peers users would pick.")

    @Option(help: "Scenario: wheel, schedule, recover, all.")
    var scenario: String = "all"

    @Option(help: "Timers (pending timers for the wheel scenario).")
    var timers: Int = 1_000_000

    @Option(help: "Operations in the steady-state phases of the wheel scenario.")
    var operations: Int = 10_000_000

    @Option(help: "Payload bytes per timer.")
    var payload: Int = 128

    @Option(help: "Durability policy: always, interval:MS or none.")
    var durability: String = "interval:10"

    @Option(help: "Concurrent callers.")
    var callers: Int = 64

    @Option(help: "Timers per schedule call (1: one call per timer).")
    var batch: Int = 1

    @Option(help: "Directory under which scenarios create their directories.")
    var dir: String = "/tmp"

    @Flag(name: .customLong("no-peers"), help: "Measure Hourglass only.")
    var noPeers = false

    @Flag(help: "One JSON object per line on stdout.")
    var json = false

    @Option(help: "Workload seed.")
    var seed: UInt64 = 1

    func parsedDurability() throws -> Configuration.Durability {
        switch durability {
        case "always": return .always
        case "none": return .none
        default:
            if durability.hasPrefix("interval:"), let ms = Int(durability.dropFirst("interval:".count)), ms > 0 {
                return .interval(milliseconds: ms)
            }
            throw ValidationError("--durability must be always, none or interval:MS")
        }
    }

    mutating func run() async throws {
        let policy = try parsedDurability()
        var results: [Measurement] = []
        let scenarios = scenario == "all" ? ["wheel", "schedule"] : [scenario]
        for name in scenarios {
            switch name {
            case "wheel":
                for r in runWheelScenario(pending: timers, operations: operations, payloadBytes: payload, seed: seed, peers: !noPeers) {
                    var m = Measurement(scenario: "wheel: \(r.name)", system: r.system, durability: "memory", timers: r.operations, payloadBytes: payload, seconds: r.seconds)
                    if !r.note.isEmpty { m.notes.append(r.note) }
                    results.append(m)
                }
            case "schedule", "recover":
                results += try await runScheduleScenario(
                    timers: timers, payloadBytes: payload, durability: policy, callers: callers, batch: batch,
                    seed: seed, base: dir, measureReplay: true)
            default:
                throw ValidationError("unknown scenario \(name)")
            }
        }
        report(results)
    }

    func report(_ results: [Measurement]) {
        if json {
            for m in results { print(m.jsonLine()) }
            return
        }
        print("scenario".padded(40) + "system".padded(10) + "durability".padded(14) + "N".padded(11) + "throughput".padded(14) + "ratio")
        for m in results {
            let hourglass = results.first { $0.scenario == m.scenario && $0.system == "hourglass" }
            let ratio = hourglass.map { format2($0.throughput / m.throughput) + "×" } ?? ""
            print(m.scenario.padded(40) + m.system.padded(10) + m.durability.padded(14) + "\(m.timers)".padded(11)
                  + formatRate(m.throughput).padded(14) + ratio)
            for note in m.notes { print("    " + note) }
        }
    }
}

extension Measurement {
    func jsonLine() -> String {
        var fields: [(String, String)] = [
            ("scenario", quoted(scenario)), ("system", quoted(system)), ("durability", quoted(durability)),
            ("timers", "\(timers)"), ("payload_bytes", "\(payloadBytes)"), ("seconds", "\(seconds)"),
            ("throughput", "\(throughput)"),
        ]
        if let p50 { fields.append(("p50_ms", "\(p50)")) }
        if let p99 { fields.append(("p99_ms", "\(p99)")) }
        if let max { fields.append(("max_ms", "\(max)")) }
        if let diskBytesPerTimer { fields.append(("disk_bytes_per_timer", "\(diskBytesPerTimer)")) }
        if let memoryBytesPerTimer { fields.append(("memory_bytes_per_timer", "\(memoryBytesPerTimer)")) }
        if let allocationsPerTimer { fields.append(("allocations_per_timer", "\(allocationsPerTimer)")) }
        if !notes.isEmpty { fields.append(("notes", quoted(notes.joined(separator: "; ")))) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    private func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
