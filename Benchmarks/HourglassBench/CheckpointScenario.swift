import Hourglass
import HourglassStorage
#if canImport(Glibc)
import Glibc
#endif

/// Writing a checkpoint of N pending timers while callers keep scheduling: the checkpoint's
/// write rate (timers per second), the latency of the schedule calls made during it, and their
/// throughput during it against a phase of the same load without a checkpoint.
func checkpointScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    let now = realtimeMilliseconds()
    status("checkpoint: generating \(n) order timers")
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: now)
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    let baselineSeconds = 1.0
    let farFuture = now + 7_200_000
    /// The load schedules ids from a pool, so that after the first round its schedules replace
    /// timers and the engine holds N + pool timers whatever the load's speed.
    let pool = 10_000
    var results: [Measurement] = []

    do {
        let path = scenarioDirectory(base: ctx.base, name: "checkpoint")
        defer { removeTree(path) }
        resetPeakResident()
        let engine = try await HourglassEngine.open(ctx.configuration(path))
        try await fill(engine, workload, label: "checkpoint: hourglass setup")
        let next = Counter()
        // During a checkpoint (first, so that it covers the N timers and the few scheduled in
        // the 50 ms before it starts).
        status("checkpoint: hourglass, \(ctx.callers) callers scheduling during a checkpoint")
        var held = 0
        var checkpointWindow: (UInt64, UInt64) = (0, 0)
        var checkpointCPU = CPUSpent(total: 0, system: 0)
        let during = try await scheduleLoad(engine, ctx: ctx, workload: workload, pool: pool, next: next, deadline: farFuture) {
            try await Task.sleep(for: .milliseconds(50))  // the callers are in full flow
            held = await engine.stats().pending
            let cpu = CPUTime.now()
            let begin = monotonicNanoseconds()
            try await engine.checkpoint()
            checkpointWindow = (begin, monotonicNanoseconds())
            checkpointCPU = CPUSpent(from: cpu, to: CPUTime.now())
        }
        let fileBytes = checkpointBytes(path)
        // The same load without a checkpoint.
        status("checkpoint: hourglass, \(ctx.callers) callers scheduling for \(baselineSeconds) s without a checkpoint")
        let beforeBaseline = await engine.stats()
        let without = try await scheduleLoad(engine, ctx: ctx, workload: workload, pool: pool, next: next, deadline: farFuture) {
            try await Task.sleep(for: .seconds(baselineSeconds))
        }
        let afterBaseline = await engine.stats()
        let stats = await engine.stats()
        let peak = peakResidentBytes()
        try await engine.close()
        status("")
        let seconds = Double(checkpointWindow.1 - checkpointWindow.0) / 1e9
        let inWindow = during.within(checkpointWindow)
        var m = Measurement(scenario: "checkpoint", system: "hourglass", durability: ctx.durabilityName, timers: held,
                            payloadBytes: ctx.payloadBytes, seconds: seconds)
        m.setLatency(Percentiles(inWindow.latencies))
        m.setCPU(checkpointCPU, operations: held)
        m.callers = ctx.callers
        let withoutAll = without.within((0, .max))
        let withoutPercentiles = Percentiles(withoutAll.latencies)
        m.extra = [
            ("schedule_throughput_during", Double(inWindow.completed) / seconds),
            ("schedule_throughput_without", Double(withoutAll.completed) / without.seconds),
            ("schedule_p50_ms_without", withoutPercentiles?.p50 ?? -1),
            ("schedule_p99_ms_without", withoutPercentiles?.p99 ?? -1),
            ("schedule_max_ms_without", withoutPercentiles?.max ?? -1),
        ]
        m.diskBytesPerTimer = Double(fileBytes) / Double(max(held, 1))
        m.peakResidentBytes = peak
        m.notes.append("a checkpoint of \(held) timers (\(formatBytes(fileBytes))) while \(ctx.callers) callers schedule (ids from a pool of \(pool): after the first round, each replaces a timer); throughput: timers written per second; p50/p99/max: the \(inWindow.latencies.count) schedule calls in progress during it (\(inWindow.completed) completed within it)")
        m.notes.append("CPU: the whole process during the checkpoint (its thread, the engine and the \(ctx.callers) callers' load) per timer written")
        m.notes.append("without a checkpoint: \(withoutAll.completed) calls in \(format2(without.seconds)) s; engine's own timing of the checkpoint \(format1(stats.lastCheckpointMilliseconds ?? -1)) ms")
        results.append(m)
        let rows = ctx.sqliteTransactionRows(requests: withoutAll.completed, frames: afterBaseline.framesWritten - beforeBaseline.framesWritten)
        guard ctx.peers else { return results }

        results.append(.unavailable(scenario: "checkpoint", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes,
                                    reason: "in memory only: nothing to checkpoint"))
        let (lib, unavailable) = ctx.sqlitePeer(scenario: "checkpoint", timers: n)
        if let unavailable { results.append(unavailable) }
        if let lib {
            results.append(try sqliteCheckpoint(ctx, lib: lib, workload: workload, rows: rows, pool: pool, baselineSeconds: baselineSeconds, farFuture: farFuture))
        }
    }
    return results
}

/// Calls made by a load: when each started and ended (monotonic ns).
struct LoadRecord: Sendable {
    var calls: [(UInt64, UInt64)] = []
    var seconds: Double = 0

    /// The calls that completed within `window`, and the latencies (ms) of every call that was
    /// in progress during it (started before its end, ended after its start).
    func within(_ window: (UInt64, UInt64)) -> (completed: Int, latencies: [Double]) {
        let completed = calls.reduce(0) { $0 + ($1.1 >= window.0 && $1.1 <= window.1 ? 1 : 0) }
        let overlapping = calls.filter { $0.0 < window.1 && $0.1 > window.0 }
        return (completed, overlapping.map { Double($0.1 - $0.0) / 1e6 })
    }
}

/// `ctx.callers` tasks schedule far-future timers (ids from a pool of `pool`), one call each,
/// while `during` runs.
func scheduleLoad(_ engine: HourglassEngine, ctx: Context, workload: Workload, pool: Int, next: Counter, deadline: Int64,
                  during: () async throws -> Void) async throws -> LoadRecord {
    let stop = StopFlag()
    let record = Locked(LoadRecord())
    let n = workload.count
    let start = monotonicNanoseconds()
    let load = Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0 ..< max(1, ctx.callers) {
                group.addTask {
                    var calls: [(UInt64, UInt64)] = []
                    while !stop.isSet {
                        let i = next.add() - 1
                        let begin = monotonicNanoseconds()
                        try await engine.schedule(id: TimerID(bytes: orderID(prefix: "ck-", i % pool)), at: Deadline(millisecondsSinceEpoch: deadline),
                                                  payload: workload.payloads[i % n])
                        calls.append((begin, monotonicNanoseconds()))
                    }
                    record.withLock { [calls] in $0.calls += calls }
                }
            }
            try await group.waitForAll()
        }
    }
    do {
        try await during()
    } catch {
        stop.set()
        _ = try? await load.value
        throw error
    }
    stop.set()
    try await load.value
    var result = record.value
    result.seconds = Double(monotonicNanoseconds() - start) / 1e9
    return result
}

/// SQLite's counterpart: the WAL holds N timers (automatic checkpoints off while it fills);
/// `PRAGMA wal_checkpoint(PASSIVE)` copies them into the database while a writer keeps
/// inserting in transactions of `rows`.
func sqliteCheckpoint(_ ctx: Context, lib: SQLiteLibrary, workload: Workload, rows: Int, pool: Int, baselineSeconds: Double, farFuture: Int64) throws -> Measurement {
    let n = workload.count
    let dir = scenarioDirectory(base: ctx.base, name: "checkpoint-sqlite")
    makeDirectory(dir)
    defer { removeTree(dir) }
    resetPeakResident()
    let writer = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
    try writer.execute("PRAGMA wal_autocheckpoint=0")
    try fill(writer, workload, rows: sqliteSetupRows, label: "checkpoint: sqlite setup")
    let checkpointer = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
    let next = Counter()

    /// Runs the writer on a thread of its own while `during` runs on this one.
    func load(_ during: () throws -> Void) throws -> (LoadRecord, Int) {
        let stop = StopFlag()
        let record = Locked(LoadRecord())
        let failure = Locked<String?>(nil)
        let inserted = Counter()
        let start = monotonicNanoseconds()
        let thread = BenchThread {
            var calls: [(UInt64, UInt64)] = []
            do throws(SQLiteError) {
                while !stop.isSet {
                    let begin = monotonicNanoseconds()
                    try writer.begin()
                    for _ in 0 ..< rows {
                        let i = next.add() - 1
                        try writer.insert(id: orderID(prefix: "ck-", i % pool), due: farFuture, payload: workload.payloads[i % n])
                    }
                    try writer.commit()
                    let end = monotonicNanoseconds()
                    inserted.add(rows)
                    // Every row of the transaction waited for its commit.
                    for _ in 0 ..< rows { calls.append((begin, end)) }
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            record.withLock { [calls] in $0.calls = calls }
        }
        var duringError: Error? = nil
        do { try during() } catch { duringError = error }
        stop.set()
        thread.join()
        if let duringError { throw duringError }
        if let message = failure.value { throw BenchError("sqlite writer: \(message)") }
        var result = record.value
        result.seconds = Double(monotonicNanoseconds() - start) / 1e9
        return (result, inserted.current)
    }

    status("checkpoint: sqlite writer during wal_checkpoint(PASSIVE)")
    var held = 0
    var walBytes = 0
    var window: (UInt64, UInt64) = (0, 0)
    var checkpointCPU = CPUSpent(total: 0, system: 0)
    let (during, _) = try load {
        sleepMicroseconds(50_000)
        held = try checkpointer.count()
        walBytes = checkpointer.fileBytes.wal
        let cpu = CPUTime.now()
        let begin = monotonicNanoseconds()
        try checkpointer.walCheckpoint("PASSIVE")
        window = (begin, monotonicNanoseconds())
        checkpointCPU = CPUSpent(from: cpu, to: CPUTime.now())
    }
    let databaseBytes = checkpointer.fileBytes.database
    status("checkpoint: sqlite writer for \(baselineSeconds) s without a checkpoint")
    let (without, _) = try load { sleepMicroseconds(Int(baselineSeconds * 1e6)) }
    status("")
    let peak = peakResidentBytes()
    checkpointer.close()
    writer.close()
    let seconds = Double(window.1 - window.0) / 1e9
    let inWindow = during.within(window)
    let withoutAll = without.within((0, .max))
    let withoutPercentiles = Percentiles(withoutAll.latencies)
    var m = Measurement(scenario: "checkpoint", system: "sqlite", durability: ctx.durabilityName, timers: held, payloadBytes: ctx.payloadBytes, seconds: seconds)
    m.setLatency(Percentiles(inWindow.latencies))
    m.setCPU(checkpointCPU, operations: held)
    m.extra = [
        ("schedule_throughput_during", Double(inWindow.completed) / seconds),
        ("schedule_throughput_without", Double(withoutAll.completed) / without.seconds),
        ("schedule_p50_ms_without", withoutPercentiles?.p50 ?? -1),
        ("schedule_p99_ms_without", withoutPercentiles?.p99 ?? -1),
        ("schedule_max_ms_without", withoutPercentiles?.max ?? -1),
    ]
    m.diskBytesPerTimer = Double(databaseBytes) / Double(max(held, 1))
    m.peakResidentBytes = peak
    m.notes.append("wal_checkpoint(PASSIVE) of a WAL holding \(held) rows (\(formatBytes(walBytes)); wal_autocheckpoint=0 while it filled) into the database while one writer upserts (ids from a pool of \(pool)) in \(ctx.sqliteBatchNote(rows)); latency of a row: its transaction's")
    m.notes.append("CPU: the whole process during the checkpoint (the checkpointer and the writer's load) per row copied")
    m.notes.append("disk: the database file after the checkpoint, per row (the WAL held \(format1(Double(walBytes) / Double(max(held, 1)))) B/row)")
    return m
}
