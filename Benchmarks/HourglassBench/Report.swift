/// One measured result: a row of the table, a line of `--json`.
struct Measurement {
    var scenario: String
    /// `hourglass`, `heap`, `sqlite` (and `wheel` for the in-memory wheel alone).
    var system: String
    var durability: String
    var timers: Int
    var payloadBytes: Int
    var seconds: Double
    /// Operations per second; timers / seconds unless a scenario says otherwise.
    var throughput: Double
    var p50: Double? = nil
    var p99: Double? = nil
    var max: Double? = nil
    var diskBytesPerTimer: Double? = nil
    var memoryBytesPerTimer: Double? = nil
    var allocationsPerTimer: Double? = nil
    /// Peak resident set size of the process during this system's part of the scenario.
    var peakResidentBytes: Int? = nil
    /// CPU time of the whole process (user + system, every thread) during the measured phase.
    var cpu: CPUSpent? = nil
    /// The operations `cpu` is divided by (`timers` unless a scenario says otherwise).
    var cpuOperations: Int? = nil
    /// Concurrent callers of the engine, on the rows of a system driven by `--callers`.
    var callers: Int? = nil
    /// Further numbers of a scenario (`open_seconds`, `first_delivery_seconds`, ...), in order.
    var extra: [(String, Double)] = []
    /// nil when the system ran; otherwise why it did not (no SQLite library, no durability).
    var unavailable: String? = nil
    var notes: [String] = []

    init(scenario: String, system: String, durability: String, timers: Int, payloadBytes: Int, seconds: Double, throughput: Double? = nil) {
        self.scenario = scenario
        self.system = system
        self.durability = durability
        self.timers = timers
        self.payloadBytes = payloadBytes
        self.seconds = seconds
        self.throughput = throughput ?? (seconds > 0 ? Double(timers) / seconds : 0)
    }

    /// A row for a system that could not take part.
    static func unavailable(scenario: String, system: String, durability: String, timers: Int, payloadBytes: Int, reason: String) -> Measurement {
        var m = Measurement(scenario: scenario, system: system, durability: durability, timers: timers, payloadBytes: payloadBytes, seconds: 0, throughput: 0)
        m.unavailable = reason
        return m
    }

    /// Records the CPU time of the measured phase, divided by `operations` (default `timers`).
    mutating func setCPU(_ spent: CPUSpent, operations: Int? = nil) {
        cpu = spent
        cpuOperations = operations
    }

    mutating func setCPU(from start: Mark, to end: Mark, operations: Int? = nil) {
        setCPU(start.cpu(to: end), operations: operations)
    }

    /// CPU nanoseconds per operation of the measured phase (nil when not measured).
    var cpuNanosecondsPerOperation: Double? {
        guard let cpu else { return nil }
        return cpu.total / Double(Swift.max(1, cpuOperations ?? timers))
    }

    /// Cores busy on average during the phase: CPU time over wall time.
    var cpuCores: Double? {
        guard let cpu, seconds > 0 else { return nil }
        return cpu.total / 1e9 / seconds
    }

    mutating func setLatency(_ percentiles: Percentiles?) {
        p50 = percentiles?.p50
        p99 = percentiles?.p99
        max = percentiles?.max
    }

    func jsonLine() -> String {
        var fields: [(String, String)] = [
            ("scenario", quoted(scenario)), ("system", quoted(system)), ("durability", quoted(durability)),
            ("timers", "\(timers)"), ("payload_bytes", "\(payloadBytes)"),
        ]
        if let callers { fields.append(("callers", "\(callers)")) }
        if let unavailable {
            // Every line carries every required field: null where the system cannot run it.
            fields.append(("seconds", "null"))
            fields.append(("throughput", "null"))
            fields.append(("cpu_ns_per_op", "null"))
            fields.append(("available", "false"))
            fields.append(("reason", quoted(unavailable)))
        } else {
            fields.append(("seconds", number(seconds)))
            fields.append(("throughput", number(throughput)))
            // null only if a scenario forgot to measure it (the smoke test fails then).
            fields.append(("cpu_ns_per_op", cpuNanosecondsPerOperation.map(number) ?? "null"))
            if let cpuCores { fields.append(("cpu_cores", number(cpuCores))) }
            if let cpu, cpu.total > 0 { fields.append(("cpu_system_fraction", number(cpu.system / cpu.total))) }
            if let p50 { fields.append(("p50_ms", number(p50))) }
            if let p99 { fields.append(("p99_ms", number(p99))) }
            if let max { fields.append(("max_ms", number(max))) }
            if let diskBytesPerTimer { fields.append(("disk_bytes_per_timer", number(diskBytesPerTimer))) }
            if let memoryBytesPerTimer { fields.append(("memory_bytes_per_timer", number(memoryBytesPerTimer))) }
            if let allocationsPerTimer { fields.append(("allocations_per_timer", number(allocationsPerTimer))) }
            if let peakResidentBytes { fields.append(("peak_resident_bytes", "\(peakResidentBytes)")) }
            for (key, value) in extra { fields.append((key, number(value))) }
        }
        if !notes.isEmpty { fields.append(("notes", quoted(notes.joined(separator: "; ")))) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    private func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded() && abs(value) < 1e15 { return "\(Int64(value))" }
        return "\(value)"
    }

    private func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Prints results as they come: JSON lines, or the human table (its header once).
final class Reporter: @unchecked Sendable {
    let json: Bool
    private var headerPrinted = false
    /// Every row reported so far (for `--plot`).
    private(set) var all: [Measurement] = []

    init(json: Bool) { self.json = json }

    static let columns: [(String, Int)] = [
        ("scenario", 46), ("system", 10), ("N", 10), ("throughput", 12), ("CPU ns/op", 11), ("p50 ms", 9), ("p99 ms", 9), ("max ms", 9),
        ("disk B/t", 9), ("mem B/t", 9), ("allocs/t", 9), ("vs hourglass", 14),
    ]

    /// Prints the results of one scenario (the ratios are to the `hourglass` row of the same
    /// scenario name).
    func report(_ results: [Measurement]) {
        all.append(contentsOf: results)
        if json {
            for m in results { writeStandardOutput(m.jsonLine()) }
            return
        }
        if !headerPrinted {
            headerPrinted = true
            writeStandardOutput(Reporter.columns.map { $0.0.padded($0.1) }.joined())
        }
        for m in results {
            let cells: [String]
            if let reason = m.unavailable {
                cells = [m.scenario, m.system, "\(m.timers)", "n/a: " + reason]
                writeStandardOutput(zip(cells, Reporter.columns).map { $0.0.padded($0.1.1) }.joined())
                continue
            }
            let reference = results.first { $0.scenario == m.scenario && ($0.system == "hourglass" || $0.system == "wheel") && $0.unavailable == nil }
            var ratio = ""
            if let reference, m.system != reference.system {
                if m.scenario.hasPrefix("lateness") {
                    if let p99 = m.p99, let hp99 = reference.p99 { ratio = hp99 > 0 ? format2(p99 / hp99) + "× p99" : "-" }
                } else if reference.throughput > 0 {
                    ratio = format2(m.throughput / reference.throughput) + "×"
                }
            } else if reference != nil {
                ratio = "1×"
            }
            func opt(_ value: Double?) -> String { value.map(formatMilliseconds) ?? "" }
            func bytes(_ value: Double?) -> String { value.map { "\(Int($0.rounded()))" } ?? "" }
            cells = [
                m.scenario, m.system, "\(m.timers)", formatRate(m.throughput), m.cpuNanosecondsPerOperation.map(formatNanoseconds) ?? "?", opt(m.p50), opt(m.p99), opt(m.max),
                bytes(m.diskBytesPerTimer), bytes(m.memoryBytesPerTimer), m.allocationsPerTimer.map(format2) ?? "", ratio,
            ]
            writeStandardOutput(zip(cells, Reporter.columns).map { $0.0.padded($0.1.1) }.joined())
            var notes = m.notes
            func extraValue(_ value: Double) -> String {
                if !value.isFinite { return "n/a" }
                if value == value.rounded() && abs(value) < 1e15 { return "\(Int64(value))" }
                return formatMilliseconds(value)
            }
            var numbers = m.extra.map { "\($0.0) \(extraValue($0.1))" }
            if let cpu = m.cpu, let cores = m.cpuCores {
                let share = cpu.total > 0 ? Int((cpu.system / cpu.total * 100).rounded()) : 0
                numbers.append("CPU \(format1(cpu.total / 1e6)) ms over the phase (\(format2(cores)) cores busy, \(share)% system)\(m.cpuOperations.map { " per \($0) operations" } ?? "")")
            }
            if let callers = m.callers { numbers.append("callers \(callers)") }
            if let peak = m.peakResidentBytes { numbers.append("peak resident \(formatBytes(peak))") }
            if !numbers.isEmpty { notes.insert(numbers.joined(separator: ", "), at: 0) }
            for note in notes { writeStandardOutput("    " + note) }
        }
    }
}
