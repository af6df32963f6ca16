import CBenchSupport
import Hourglass
import HourglassStorage
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

/// Restart: a directory of N pending timers (a checkpoint of 90% of them, then the last 10% in
/// the log after it; 1% of the timers overdue by the time it is reopened) is closed and
/// reopened in a fresh process (this executable, run again), which reports the time for `open`
/// to return, to the first overdue delivery, and until every timer is held, and the memory
/// then. The memory the same timers took before the restart is measured in this process.
func recoverScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    let real = realtimeMilliseconds()
    let builderNow = real - 600_000  // the builder runs ten minutes "ago" (a manual clock)
    status("recover: generating \(n) order timers")
    let workload = Workload(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed) { i, random in
        i % 100 == 0
            ? builderNow + 1000 + Int64(random.next() % 60_000)  // overdue after the restart
            : real + 1_800_000 + Int64(random.next() % 1_800_000)
    }
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    let overdue = (n + 99) / 100
    let checkpointed = n * 9 / 10
    var results: [Measurement] = []

    // Hourglass.
    do {
        let path = scenarioDirectory(base: ctx.base, name: "recover")
        // HOURGLASS_BENCH_KEEP=1 keeps the directory, to reopen it again by hand (under a profiler):
        // hourglass-bench --child recover-hourglass --child-dir PATH --timers N
        defer { if getenv("HOURGLASS_BENCH_KEEP") == nil { removeTree(path) } else { writeStandardError("recover: kept \(path)\n") } }
        let memoryBefore = baselineAnonymousBytes()
        let engine = try await HourglassEngine.open(ctx.configuration(path), clock: ManualClock(now: builderNow))
        try await fill(engine, workload, label: "recover: hourglass setup (checkpointed part)", range: 0 ..< checkpointed)
        status("recover: hourglass checkpoint of \(checkpointed) timers")
        try await engine.checkpoint()
        try await fill(engine, workload, label: "recover: hourglass setup (log part)", range: checkpointed ..< n)
        let stats = await engine.stats()
        let memoryHeld = liveAnonymousBytes() - memoryBefore
        try await engine.close()
        precondition(stats.pending == n, "hourglass holds \(stats.pending) of \(n)")
        let diskBytes = checkpointBytes(path) + stats.logBytesSinceCheckpoint
        status("recover: hourglass restart")
        let child = try runChild(["--child", "recover-hourglass", "--child-dir", path, "--durability", ctx.durabilityName,
                                  "--timers", "\(n)"])
        status("")
        let held = Int(child["held"] ?? 0)
        let loaded = child["loaded_seconds"] ?? 0
        var m = Measurement(scenario: "recover", system: "hourglass", durability: ctx.durabilityName, timers: n,
                            payloadBytes: ctx.payloadBytes, seconds: loaded, throughput: Double(held) / max(loaded, 1e-9))
        m.extra = [
            ("open_seconds", child["open_seconds"] ?? -1),
            ("first_delivery_seconds", child["first_delivery_seconds"] ?? -1),
            ("memory_before_restart_bytes_per_timer", Double(memoryHeld) / Double(n)),
            ("replay_records_per_second", (child["log_records"] ?? 0) / max(child["log_replay_seconds"] ?? 0, 1e-9)),
        ]
        m.diskBytesPerTimer = Double(diskBytes) / Double(n)
        m.memoryBytesPerTimer = (child["memory_bytes"] ?? 0) / Double(max(held, 1))
        m.allocationsPerTimer = (child["allocations"] ?? 0) / Double(max(held, 1))
        m.peakResidentBytes = child["peak_resident_bytes"].map { Int($0) }
        m.setCPU(CPUSpent(total: child["cpu_ns"] ?? 0, system: child["cpu_system_ns"] ?? 0), operations: max(held, 1))
        m.notes.append("\(checkpointed) timers in the checkpoint, \(n - checkpointed) in the log after it (\(formatBytes(checkpointBytes(path) == 0 ? 0 : stats.logBytesSinceCheckpoint))); \(overdue) overdue at the restart")
        m.notes.append("replay: the \(Int(child["log_records"] ?? 0)) log records after the checkpoint read and applied by open in \(format1((child["log_replay_seconds"] ?? 0) * 1000)) ms")
        m.notes.append("seconds: open until every timer is held (the checkpoint fully loaded); throughput: timers held / seconds; reopened in a fresh process, page cache warm; CPU: the reopened process from open until loaded, per timer held")
        m.notes.append("memory: anonymous resident memory of the reopened process over its baseline, per timer held (\(held)); before the restart: the same measured while the builder held them")
        m.notes.append("engine's own accounting after recovery: \(format1((child["engine_memory_bytes"] ?? 0) / Double(max(held, 1)))) B/timer; \(Int(child["delivered"] ?? 0)) overdue delivered by then")
        if held != n { m.notes.append("WARNING: \(held) of \(n) timers held after recovery") }
        results.append(m)
    }
    guard ctx.peers else { return results }

    results.append(.unavailable(scenario: "recover", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes,
                                reason: "in memory only: nothing survives a restart"))

    let (lib, unavailable) = ctx.sqlitePeer(scenario: "recover", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = scenarioDirectory(base: ctx.base, name: "recover-sqlite")
        makeDirectory(dir)
        defer { removeTree(dir) }
        let memoryBefore = baselineAnonymousBytes()
        let db = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        let rows = sqliteSetupRows
        try fill(db, workload, rows: rows, label: "recover: sqlite setup (checkpointed part)", range: 0 ..< checkpointed)
        try db.walCheckpoint("TRUNCATE")
        try fill(db, workload, rows: rows, label: "recover: sqlite setup (WAL part)", range: checkpointed ..< n)
        let memoryHeld = liveAnonymousBytes() - memoryBefore
        db.close()
        let diskBytes = fileSize(dir + "/timers.db") + fileSize(dir + "/timers.db-wal")
        status("recover: sqlite restart")
        let child = try runChild(["--child", "recover-sqlite", "--child-dir", dir, "--durability", ctx.durabilityName, "--timers", "\(n)"])
        status("")
        let ready = child["loaded_seconds"] ?? 0
        let held = Int(child["held"] ?? 0)
        var m = Measurement(scenario: "recover", system: "sqlite", durability: ctx.durabilityName, timers: n,
                            payloadBytes: ctx.payloadBytes, seconds: ready, throughput: Double(held) / max(ready, 1e-9))
        m.extra = [
            ("open_seconds", child["open_seconds"] ?? -1),
            ("first_delivery_seconds", child["first_delivery_seconds"] ?? -1),
            ("memory_before_restart_bytes_per_timer", Double(memoryHeld) / Double(n)),
            ("replay_records_per_second", (child["log_records"] ?? 0) / max(child["log_replay_seconds"] ?? 0, 1e-9)),
        ]
        m.diskBytesPerTimer = Double(diskBytes) / Double(n)
        m.memoryBytesPerTimer = (child["memory_bytes"] ?? 0) / Double(max(held, 1))
        m.allocationsPerTimer = (child["allocations"] ?? 0) / Double(max(held, 1))
        m.peakResidentBytes = child["peak_resident_bytes"].map { Int($0) }
        m.setCPU(CPUSpent(total: child["cpu_ns"] ?? 0, system: child["cpu_system_ns"] ?? 0), operations: max(held, 1))
        m.notes.append("seconds: open + the first poll (SQLite reads rows on demand: nothing is loaded, every timer is reachable once it answers); rows per transaction \(rows); closing the builder's connection checkpointed its WAL")
        if held != n { m.notes.append("WARNING: \(held) of \(n) rows after the restart") }
        results.append(m)
    }
    return results
}

/// Runs this executable with `arguments` and returns the numbers of the JSON object it prints.
func runChild(_ arguments: [String]) throws -> [String: Double] {
    let argv = (["hourglass-bench"] + arguments).map { strdup($0) }
    defer { for arg in argv { free(arg) } }
    let capacity = 1 << 16
    var buffer = [CChar](repeating: 0, count: capacity)
    let status = (argv + [nil]).withUnsafeBufferPointer { args in
        hb_run_self(args.baseAddress, &buffer, capacity)
    }
    let output = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard status == 0 else { throw BenchError("the restarted process failed (status \(status)): \(output)") }
    return parseNumbers(output)
}

/// The numeric fields of a flat JSON object.
func parseNumbers(_ text: String) -> [String: Double] {
    var result: [String: Double] = [:]
    let body = text.trimmingCharacters(in: "{}\n ")
    for field in body.split(separator: ",") {
        let parts = field.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { continue }
        let key = parts[0].trimmingCharacters(in: "\" ")
        if let value = Double(parts[1].trimmingCharacters(in: " ")) { result[key] = value }
    }
    return result
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let drop = Set(set)
        var slice = Substring(self)
        while let first = slice.first, drop.contains(first) { slice.removeFirst() }
        while let last = slice.last, drop.contains(last) { slice.removeLast() }
        return String(slice)
    }
}

// MARK: The restarted process

/// Reopens an engine directory and reports, as one JSON object on stdout, how long opening
/// took, when the first (overdue) delivery came, when every timer was held, and the memory.
func recoverChildHourglass(path: String, durability: Configuration.Durability) async throws {
    let baseline = liveAnonymousBytes()
    resetPeakResident()
    let configuration = Configuration.directory(path, durability: durability)
    let start = Mark.now()
    let engine = try await HourglassEngine.open(configuration)
    let opened = Mark.now()
    let firstDelivery = Maximum()
    let delivered = Counter()
    let acknowledged = Counter()
    let consumer = Task {
        for await delivery in engine.deliveries {
            if firstDelivery.current == 0 { firstDelivery.record(Int(monotonicNanoseconds())) }
            delivered.add()
            if (try? await engine.ack(delivery)) == true { acknowledged.add() }
        }
    }
    // Poll every 10 ms (each poll is a request that takes a turn of the engine); the engine
    // reports when it finished loading, measured from the start of `open`.
    var stats = await engine.stats()
    while stats.loading {
        try await Task.sleep(for: .milliseconds(10))
        stats = await engine.stats()
    }
    let loadedNanoseconds = stats.fullyLoadedMilliseconds.map { start.nanoseconds + UInt64($0 * 1e6) } ?? opened.nanoseconds
    let end = Mark.now()
    let waitUntil = monotonicNanoseconds() + 60_000_000_000
    while firstDelivery.current == 0 && monotonicNanoseconds() < waitUntil {
        try await Task.sleep(for: .milliseconds(1))
    }
    let memory = liveAnonymousBytes() - baseline
    let allocations = start.allocations(to: end)
    let cpu = start.cpu(to: end)
    let peak = peakResidentBytes()
    stats = await engine.stats()
    let held = stats.pending + stats.inFlight + stats.acknowledged
    try await engine.close()
    await consumer.value
    let first = firstDelivery.current > 0 ? Double(UInt64(firstDelivery.current) - start.nanoseconds) / 1e9 : -1
    writeStandardOutput("{\"open_seconds\":\(start.seconds(to: opened)),\"first_delivery_seconds\":\(first),"
        + "\"loaded_seconds\":\(Double(loadedNanoseconds - start.nanoseconds) / 1e9),\"memory_bytes\":\(memory),"
        + "\"engine_memory_bytes\":\(stats.memoryBytes),\"allocations\":\(allocations),\"held\":\(held),"
        + "\"delivered\":\(delivered.current),\"peak_resident_bytes\":\(peak),"
        + "\"log_records\":\(engine.recoveryReport.applied),\"log_replay_seconds\":\(stats.logReplayMilliseconds / 1000),"
        + "\"cpu_ns\":\(cpu.total),\"cpu_system_ns\":\(cpu.system)}")
}

/// The same for SQLite: open, then the poller's first query.
func recoverChildSQLite(path: String, fullSync: Bool) throws {
    guard case let .success(lib) = SQLiteLibrary.load() else { throw BenchError("no SQLite") }
    let baseline = liveAnonymousBytes()
    resetPeakResident()
    let start = Mark.now()
    let db = try SQLiteTimers(lib: lib, path: path + "/timers.db", fullSync: fullSync)
    let opened = Mark.now()
    var first: UInt64 = 0
    var delivered = 0
    delivered = try db.poll(now: realtimeMilliseconds(), limit: 1000) { _, _, _ in
        if first == 0 { first = monotonicNanoseconds() }
    }
    let end = Mark.now()
    let cpu = start.cpu(to: end)
    let memory = liveAnonymousBytes() - baseline
    let peak = peakResidentBytes()
    let held = try db.count() + delivered
    db.close()
    writeStandardOutput("{\"open_seconds\":\(start.seconds(to: opened)),\"first_delivery_seconds\":\(first > 0 ? Double(first - start.nanoseconds) / 1e9 : -1),"
        + "\"loaded_seconds\":\(start.seconds(to: end)),\"memory_bytes\":\(memory),\"allocations\":\(start.allocations(to: end)),"
        + "\"held\":\(held),\"delivered\":\(delivered),\"peak_resident_bytes\":\(peak),"
        + "\"cpu_ns\":\(cpu.total),\"cpu_system_ns\":\(cpu.system)}")
}
