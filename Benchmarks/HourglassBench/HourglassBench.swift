import ArgumentParser

@main
struct HourglassBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hourglass-bench",
        abstract: "Throughput, lateness and recovery of Hourglass, side by side with the peers users would pick.")

    @Option(help: "Scenario: wheel.")
    var scenario: String = "wheel"

    @Option(help: "Pending timers.")
    var timers: Int = 1_000_000

    @Option(help: "Operations in the steady-state phases (wheel scenario).")
    var operations: Int = 10_000_000

    @Option(help: "Payload bytes per timer.")
    var payload: Int = 32

    @Flag(name: .customLong("no-peers"), help: "Measure Hourglass only.")
    var noPeers = false

    @Option(help: "Workload seed.")
    var seed: UInt64 = 1

    mutating func run() throws {
        switch scenario {
        case "wheel":
            let results = runWheelScenario(pending: timers, operations: operations, payloadBytes: payload, seed: seed, peers: !noPeers)
            for r in results {
                let wheel = results.first { $0.system == "wheel" && $0.name == r.name }
                let ratio = wheel.map { $0.throughput / r.throughput } ?? 1
                print("\(r.name.padded(36)) \(r.system.padded(6)) \(formatRate(r.throughput).padded(12)) \(format2(r.seconds * 1e9 / Double(r.operations))) ns/op  wheel ×\(format2(ratio)) \(r.note)")
            }
        default:
            throw ValidationError("unknown scenario \(scenario)")
        }
    }
}
