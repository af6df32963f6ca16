import Hourglass
import HourglassStorage
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

/// What every scenario is given: the options of the run.
struct Context: Sendable {
    var timers: Int
    var payloadBytes: Int
    var durability: Configuration.Durability
    var callers: Int
    var batch: Int
    var seed: UInt64
    var base: String
    var peers: Bool
    /// `--sqlite-batch`: rows per SQLite transaction and poll, instead of Hourglass's measured
    /// group-commit size.
    var sqliteBatch: Int?
    /// `--load`: background schedules per second in the lateness scenario.
    var loadRate: Int?
    /// `--sweep-rates`: timers due per second at each step of `lateness --sweep`.
    var sweepRates: [Int] = SweepPlan.defaultRates
    /// The system's SQLite, or why it is unavailable (nil with `--no-peers`).
    var sqlite: Result<SQLiteLibrary, SQLiteError>?
    /// `--partitions`: the engine's partitions (1: one single writer).
    var partitions: Int = 1

    var durabilityName: String { "\(durability)" }
    /// SQLite's synchronous setting for the policy: FULL for `always`, NORMAL otherwise.
    var fullSync: Bool { durability == .always }
    var sqliteSynchronous: String { fullSync ? "FULL" : "NORMAL" }

    func configuration(_ path: String) -> Configuration {
        var configuration = Configuration.directory(path, durability: durability)
        configuration.partitions = partitions
        return configuration
    }

    /// The SQLite library when the peer runs, or the row saying why it does not.
    func sqlitePeer(scenario: String, timers: Int) -> (SQLiteLibrary?, Measurement?) {
        switch sqlite {
        case nil: return (nil, nil)
        case let .success(lib)?: return (lib, nil)
        case let .failure(error)?:
            return (nil, .unavailable(scenario: scenario, system: "sqlite", durability: durabilityName, timers: timers,
                                      payloadBytes: payloadBytes, reason: error.message))
        }
    }

    /// Rows per SQLite transaction: `--sqlite-batch`, or Hourglass's mean group commit (requests
    /// per log frame) measured in the same scenario.
    func sqliteTransactionRows(requests: Int, frames: Int) -> Int {
        if let sqliteBatch { return sqliteBatch }
        return max(1, Int((Double(requests) / Double(max(frames, 1))).rounded()))
    }

    func sqliteBatchNote(_ rows: Int) -> String {
        sqliteBatch != nil ? "transactions of \(rows) rows (--sqlite-batch)"
            : "transactions of \(rows) rows (Hourglass's mean group commit in this scenario)"
    }
}

// MARK: Helpers

/// A fresh directory for a scenario, under `base`.
func scenarioDirectory(base: String, name: String) -> String {
    let path = "\(base)/hourglass-bench-\(name)-\(getpid())"
    _ = removeTree(path)
    return path
}

func makeDirectory(_ path: String) {
    mkdir(path, 0o755)
}



/// Bytes of the checkpoint files in an engine's directory.
func checkpointBytes(_ path: String) -> Int {
    listDirectory(path).filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".hgc") }.reduce(0) { $0 + fileSize(path + "/" + $1) }
}

/// Runs `callers` tasks that share `0 ..< count` in chunks of `batch`: caller c takes chunks
/// c, c + callers, ... in order.
func runCallers(
    count: Int, callers: Int, batch: Int, progress: Progress? = nil,
    _ body: @escaping @Sendable (Range<Int>) async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for caller in 0 ..< max(1, callers) {
            group.addTask {
                var i = caller * batch
                while i < count {
                    let end = min(i + batch, count)
                    try await body(i ..< end)
                    progress?.add(end - i)
                    i += callers * batch
                }
            }
        }
        try await group.waitForAll()
    }
}

/// Schedules every timer of `workload` as batch requests of 1024: the setup of a scenario that
/// measures something else.
func fill(_ engine: HourglassEngine, _ workload: Workload, label: String, range: Range<Int>? = nil) async throws {
    let range = range ?? 0 ..< workload.count
    let progress = Progress(label: label, total: range.count)
    try await runCallers(count: range.count, callers: 4, batch: 1024, progress: progress) { chunk in
        try await engine.schedule(chunk.map { workload.request(range.lowerBound + $0) })
    }
    progress.finish()
}

/// Rows per transaction when SQLite is filled as the setup of a scenario (not measured).
let sqliteSetupRows = 10_000

/// Inserts every timer of `workload` into SQLite in transactions of `rows`.
func fill(_ db: SQLiteTimers, _ workload: Workload, rows: Int, label: String, range: Range<Int>? = nil) throws {
    let range = range ?? 0 ..< workload.count
    let progress = Progress(label: label, total: range.count)
    var i = range.lowerBound
    while i < range.upperBound {
        let end = min(i + rows, range.upperBound)
        try db.begin()
        for j in i ..< end { try db.insert(id: workload.ids[j].bytes, due: workload.deadlines[j], payload: workload.payloads[j]) }
        try db.commit()
        progress.add(end - i)
        i = end
    }
    progress.finish()
}

/// Consumers of an engine's deliveries: each acknowledges what it gets and counts it.
struct Consumers {
    let acknowledged = Counter()
    let delivered = Counter()
    let task: Task<Void, Never>

    /// - Parameter batch: 1: each consumer takes one delivery at a time and acknowledges it with
    ///   one call; more: each takes what is waiting, up to `batch`, and acknowledges it with one
    ///   `ack(contentsOf:)`.
    init(engine: HourglassEngine, count: Int, batch: Int = 1, onAck: (@Sendable (Int) -> Void)? = nil) {
        let acknowledged = acknowledged
        let delivered = delivered
        task = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0 ..< max(1, count) {
                    group.addTask {
                        if batch > 1 {
                            for await deliveries in engine.deliveries.batches(maxCount: batch) {
                                delivered.add(deliveries.count)
                                let acked = (try? await engine.ack(contentsOf: deliveries)) ?? 0
                                if acked > 0 { onAck?(acknowledged.add(acked)) }
                            }
                            return
                        }
                        for await delivery in engine.deliveries {
                            delivered.add()
                            if (try? await engine.ack(delivery)) == true {
                                let total = acknowledged.add()
                                onAck?(total)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Notes about an engine's log over a phase.
func logNotes(_ before: EngineStats, _ after: EngineStats, requests: Int) -> [String] {
    let frames = after.framesWritten - before.framesWritten
    let syncs = after.syncs - before.syncs
    let bytes = after.logBytesWritten - before.logBytesWritten
    let raw = after.logRawBytesWritten - before.logRawBytesWritten
    var notes = ["\(frames) log frames (\(format1(Double(requests) / Double(max(frames, 1)))) requests each), \(syncs) syncs, \(formatBytes(bytes)) of log (compression \(format2(Double(raw) / Double(max(bytes, 1))))×)"]
    if after.checkpoints > before.checkpoints { notes.append("\(after.checkpoints - before.checkpoints) automatic checkpoint(s) during the phase") }
    return notes
}

// MARK: schedule

/// Durable schedule throughput: `callers` tasks schedule the workload between them, `batch`
/// timers per call.
func scheduleScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    status("schedule: generating \(n) order timers")
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: realtimeMilliseconds())
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    let userBytes = workload.userBytes
    var results: [Measurement] = []

    // Hourglass.
    let path = scenarioDirectory(base: ctx.base, name: "schedule")
    defer { removeTree(path) }
    let memoryBefore = baselineAnonymousBytes()
    resetPeakResident()
    let engine = try await HourglassEngine.open(ctx.configuration(path))
    let before = await engine.stats()
    let progress = Progress(label: "schedule: hourglass", total: n)
    let start = Mark.now()
    try await runCallers(count: n, callers: ctx.callers, batch: ctx.batch, progress: progress) { range in
        if range.count == 1 {
            let i = range.lowerBound
            try await engine.schedule(id: workload.ids[i], at: Deadline(millisecondsSinceEpoch: workload.deadlines[i]), payload: workload.payloads[i])
        } else {
            try await engine.schedule(range.map { workload.request($0) })
        }
    }
    let end = Mark.now()
    progress.finish()
    let after = await engine.stats()
    let memoryAfter = liveAnonymousBytes()
    let peak = peakResidentBytes()
    try await engine.close()
    precondition(after.pending == n, "hourglass holds \(after.pending) of \(n) timers")
    let requests = (n + ctx.batch - 1) / ctx.batch
    var m = Measurement(scenario: "schedule", system: "hourglass", durability: ctx.durabilityName, timers: n,
                        payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
    m.setCPU(from: start, to: end)
    m.callers = ctx.callers
    m.diskBytesPerTimer = Double(after.logBytesWritten - before.logBytesWritten) / Double(n)
    m.memoryBytesPerTimer = Double(memoryAfter - memoryBefore) / Double(n)
    m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
    m.peakResidentBytes = peak
    m.notes.append("\(ctx.callers) caller\(ctx.callers == 1 ? "" : "s"), \(ctx.batch) timer(s) per call")
    m.notes += logNotes(before, after, requests: requests)
    m.notes.append("memory: engine's own accounting \(format1(Double(after.memoryBytes) / Double(n))) B/timer; ids+payloads \(format1(Double(userBytes) / Double(n))) B/timer; the phase includes first-touch of the engine's tables")
    if ctx.durability == .always {
        // The physical ceiling of this run, on the same disk, right after the timed phase.
        status("schedule: msync probe")
        let probe = try SyncCeiling.measure(directory: path)
        let ceiling = probe.ceiling(callers: ctx.callers, batch: ctx.batch)
        m.extra += [
            ("msync_p50_us", probe.p50), ("msync_p99_us", probe.p99), ("msync_max_us", probe.max),
            ("ceiling_1_caller_per_s", probe.oneCallerPerSecond), ("ceiling_per_s", ceiling),
            ("ceiling_ratio", m.throughput / ceiling),
        ]
        m.notes.append("sync ceiling: \(SyncCeiling.appends) appends of \(SyncCeiling.recordBytes) B into a preallocated mmap'd file in this directory, each msync(MS_SYNC) of its page: p50 \(format1(probe.p50)) µs, p99 \(format1(probe.p99)) µs, max \(format1(probe.max)) µs; 1 caller (one call per msync) ≤ 1/p50 = \(formatRate(probe.oneCallerPerSecond)); \(ctx.callers) caller\(ctx.callers == 1 ? "" : "s") × \(ctx.batch) timer(s) (all of them in every msync) ≤ \(ctx.callers * ctx.batch)/p50 = \(formatRate(ceiling)); hourglass reached \(format2(m.throughput / ceiling))× of it")
    }
    results.append(m)
    let rows = ctx.sqliteTransactionRows(requests: n, frames: after.framesWritten - before.framesWritten)
    guard ctx.peers else { return results }

    // The heap: one thread, no lock.
    do {
        let memoryBefore = baselineAnonymousBytes()
        resetPeakResident()
        let start = Mark.now()
        var queue = DelayQueue()
        for i in 0 ..< n {
            queue.schedule(id: ownCopy(workload.ids[i].bytes), deadline: workload.deadlines[i], payload: ownCopy(workload.payloads[i]))
        }
        let end = Mark.now()
        let memoryAfter = liveAnonymousBytes()
        precondition(queue.count == n)
        var m = Measurement(scenario: "schedule", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.memoryBytesPerTimer = Double(memoryAfter - memoryBefore) / Double(n)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peakResidentBytes()
        m.notes.append("one thread, no lock, no durability; keeps its own copy of each id and payload")
        withExtendedLifetime(queue) {}
        results.append(m)
    }

    // SQLite.
    let (lib, unavailable) = ctx.sqlitePeer(scenario: "schedule", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = path + "-sqlite"
        makeDirectory(dir)
        defer { removeTree(dir) }
        let memoryBefore = baselineAnonymousBytes()
        resetPeakResident()
        let db = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        let progress = Progress(label: "schedule: sqlite", total: n)
        let start = Mark.now()
        var i = 0
        while i < n {
            let end = min(i + rows, n)
            try db.begin()
            for j in i ..< end { try db.insert(id: workload.ids[j].bytes, due: workload.deadlines[j], payload: workload.payloads[j]) }
            try db.commit()
            progress.add(end - i)
            i = end
        }
        let end = Mark.now()
        progress.finish()
        let memoryAfter = liveAnonymousBytes()
        let peak = peakResidentBytes()
        let count = try db.count()
        db.close()  // checkpoints the WAL into the database file
        precondition(count == n, "sqlite holds \(count) of \(n) timers")
        var m = Measurement(scenario: "schedule", system: "sqlite", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.diskBytesPerTimer = Double(fileSize(dir + "/timers.db")) / Double(n)
        m.memoryBytesPerTimer = Double(memoryAfter - memoryBefore) / Double(n)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peak
        m.notes.append("one writer, \(ctx.sqliteBatchNote(rows)), WAL, synchronous=\(ctx.sqliteSynchronous)")
        m.notes.append("disk: the database file after close (timers stay on disk; memory is SQLite's page cache)")
        results.append(m)
    }
    return results
}

// MARK: cancel

/// Cancel throughput: N pending timers (set up in batches, not measured), then `callers` tasks
/// cancel all of them, one call each.
func cancelScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    status("cancel: generating \(n) order timers")
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: realtimeMilliseconds())
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    var results: [Measurement] = []

    let path = scenarioDirectory(base: ctx.base, name: "cancel")
    defer { removeTree(path) }
    resetPeakResident()
    let engine = try await HourglassEngine.open(ctx.configuration(path))
    try await fill(engine, workload, label: "cancel: hourglass setup")
    let before = await engine.stats()
    let found = Counter()
    let progress = Progress(label: "cancel: hourglass", total: n)
    let start = Mark.now()
    try await runCallers(count: n, callers: ctx.callers, batch: 1, progress: progress) { range in
        if try await engine.cancel(id: workload.ids[range.lowerBound]) { found.add() }
    }
    let end = Mark.now()
    progress.finish()
    let after = await engine.stats()
    let peak = peakResidentBytes()
    try await engine.close()
    precondition(found.current == n && after.pending == 0, "hourglass cancelled \(found.current) of \(n)")
    var m = Measurement(scenario: "cancel", system: "hourglass", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
    m.setCPU(from: start, to: end)
    m.callers = ctx.callers
    m.diskBytesPerTimer = Double(after.logBytesWritten - before.logBytesWritten) / Double(n)
    m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
    m.peakResidentBytes = peak
    m.notes.append("\(ctx.callers) callers, one cancel per call; setup (schedule in batches) not measured")
    m.notes += logNotes(before, after, requests: n)
    results.append(m)
    let rows = ctx.sqliteTransactionRows(requests: n, frames: after.framesWritten - before.framesWritten)
    guard ctx.peers else { return results }

    do {
        resetPeakResident()
        var queue = DelayQueue()
        for i in 0 ..< n {
            queue.schedule(id: ownCopy(workload.ids[i].bytes), deadline: workload.deadlines[i], payload: ownCopy(workload.payloads[i]))
        }
        var cancelled = 0
        let start = Mark.now()
        for i in 0 ..< n where queue.cancel(id: workload.ids[i].bytes) { cancelled += 1 }
        let end = Mark.now()
        precondition(cancelled == n)
        var m = Measurement(scenario: "cancel", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peakResidentBytes()
        m.notes.append("one thread; lazy cancel (the id leaves the dictionary, the heap entry stays until it surfaces, memory is not freed)")
        withExtendedLifetime(queue) {}
        results.append(m)
    }

    let (lib, unavailable) = ctx.sqlitePeer(scenario: "cancel", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = path + "-sqlite"
        makeDirectory(dir)
        defer { removeTree(dir) }
        resetPeakResident()
        let db = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        try fill(db, workload, rows: sqliteSetupRows, label: "cancel: sqlite setup")
        let walBefore = db.fileBytes
        let progress = Progress(label: "cancel: sqlite", total: n)
        var cancelled = 0
        let start = Mark.now()
        var i = 0
        while i < n {
            let end = min(i + rows, n)
            try db.begin()
            for j in i ..< end where try db.cancel(id: workload.ids[j].bytes) { cancelled += 1 }
            try db.commit()
            progress.add(end - i)
            i = end
        }
        let end = Mark.now()
        progress.finish()
        let peak = peakResidentBytes()
        _ = walBefore
        db.close()
        precondition(cancelled == n, "sqlite cancelled \(cancelled) of \(n)")
        var m = Measurement(scenario: "cancel", system: "sqlite", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peak
        m.notes.append("one writer, DELETE by id, \(ctx.sqliteBatchNote(rows)), WAL, synchronous=\(ctx.sqliteSynchronous); setup not measured")
        results.append(m)
    }
    return results
}

// MARK: fire

/// N timers all due at once: the time to deliver and acknowledge every one. The timers are
/// scheduled (not measured) under a manual clock; the clock then jumps past every deadline.
func fireScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    let t0 = realtimeMilliseconds()
    status("fire: generating \(n) order timers")
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: t0)
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    let allDue = t0 + 3_600_001
    var results: [Measurement] = []

    let path = scenarioDirectory(base: ctx.base, name: "fire")
    defer { removeTree(path) }
    // Twice: consumers that acknowledge each delivery with its own call, then consumers that
    // take what is waiting (up to 1024) and acknowledge it with one `ack(contentsOf:)`.
    var framesOfFirstRun = 0
    for (scenario, batch) in [("fire", 1), ("fire-batched", 1024)] {
        removeTree(path)
        resetPeakResident()
        let clock = ManualClock(now: t0)
        let engine = try await HourglassEngine.open(ctx.configuration(path), clock: clock)
        try await fill(engine, workload, label: "\(scenario): hourglass setup")
        let before = await engine.stats()
        let latch = Latch()
        let progress = Progress(label: "\(scenario): hourglass", total: n)
        let consumers = Consumers(engine: engine, count: ctx.callers, batch: batch) { total in
            if batch == 1, total % 1024 == 0 { progress.add(1024) }
            if total == n { latch.open() }
        }
        let start = Mark.now()
        clock.set(to: allDue)
        await latch.wait()
        let end = Mark.now()
        progress.finish()
        let after = await engine.stats()
        let peak = peakResidentBytes()
        try await engine.close()
        await consumers.task.value
        precondition(after.pending == 0 && after.inFlight == 0, "hourglass: \(after.pending) pending, \(after.inFlight) in flight")
        var m = Measurement(scenario: scenario, system: "hourglass", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.callers = ctx.callers
        m.diskBytesPerTimer = Double(after.logBytesWritten - before.logBytesWritten) / Double(n)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peak
        m.notes.append(batch == 1
            ? "\(ctx.callers) consumers, each acknowledging every delivery (one ack call each); in-flight window \(Configuration.memory.maxInFlight); setup not measured"
            : "\(ctx.callers) consumers, each taking what is waiting (up to \(batch)) from deliveries.batches(maxCount:) and acknowledging it with one ack(contentsOf:); in-flight window \(Configuration.memory.maxInFlight); setup not measured")
        m.notes += logNotes(before, after, requests: n)
        results.append(m)
        if batch == 1 { framesOfFirstRun = after.framesWritten - before.framesWritten }
    }
    let rows = ctx.sqliteTransactionRows(requests: n, frames: framesOfFirstRun)
    guard ctx.peers else { return results }

    do {
        resetPeakResident()
        var queue = DelayQueue()
        for i in 0 ..< n {
            queue.schedule(id: ownCopy(workload.ids[i].bytes), deadline: workload.deadlines[i], payload: ownCopy(workload.payloads[i]))
        }
        var checksum = 0
        let start = Mark.now()
        let fired = queue.popDue(through: allDue) { item in checksum &+= item.payload.count }
        let end = Mark.now()
        precondition(fired == n && checksum > 0)
        var m = Measurement(scenario: "fire", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peakResidentBytes()
        m.notes.append("one thread pops every due timer and hands it over; nothing to acknowledge")
        results.append(m)
    }

    let (lib, unavailable) = ctx.sqlitePeer(scenario: "fire", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = path + "-sqlite"
        makeDirectory(dir)
        defer { removeTree(dir) }
        resetPeakResident()
        let db = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        try fill(db, workload, rows: sqliteSetupRows, label: "fire: sqlite setup")
        let progress = Progress(label: "fire: sqlite", total: n)
        var checksum = 0
        var fired = 0
        let start = Mark.now()
        while true {
            let got = try db.poll(now: allDue, limit: rows) { _, _, payload in checksum &+= payload.count }
            fired += got
            progress.add(got)
            if got == 0 { break }
        }
        let end = Mark.now()
        progress.finish()
        let peak = peakResidentBytes()
        db.close()
        precondition(fired == n && checksum > 0, "sqlite fired \(fired) of \(n)")
        var m = Measurement(scenario: "fire", system: "sqlite", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
        m.setCPU(from: start, to: end)
        m.allocationsPerTimer = Double(start.allocations(to: end)) / Double(n)
        m.peakResidentBytes = peak
        m.notes.append("one poller: SELECT due rows ORDER BY due LIMIT \(rows), DELETE each, COMMIT, until none is due (\(rows): Hourglass's mean frame in this scenario, or --sqlite-batch); synchronous=\(ctx.sqliteSynchronous); setup not measured")
        results.append(m)
    }
    return results
}

// MARK: mixed

/// The order story, compressed: orders arrive over an hour of clock time (the manual clock moves
/// with the orders scheduled), each with a 30-minute timeout; 70% are paid shortly after and
/// their timer cancelled; the rest fire and are acknowledged. Throughput is orders per second.
func mixedScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    let t0 = realtimeMilliseconds()
    let window: Int64 = 3_600_000
    let timeout: Int64 = 1_800_000
    status("mixed: generating \(n) orders")
    let workload = Workload(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed) { i, _ in
        t0 + Int64(i) * window / Int64(n) + timeout
    }
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    var random = WorkloadRandom(seed: ctx.seed ^ 0x9A1D)
    let paid: [Bool] = (0 ..< n).map { _ in random.next() % 100 < 70 }
    let paidCount = paid.filter { $0 }.count
    let firedCount = n - paidCount
    let end = t0 + window + timeout + 1
    /// A paid order's timer is cancelled by its caller after `lag` more orders of its own.
    let lag = 2
    let callers = max(1, ctx.callers)
    var results: [Measurement] = []

    let path = scenarioDirectory(base: ctx.base, name: "mixed")
    defer { removeTree(path) }
    resetPeakResident()
    let clock = ManualClock(now: t0)
    let engine = try await HourglassEngine.open(ctx.configuration(path), clock: clock)
    let before = await engine.stats()
    let scheduled = Counter()
    let cancelsFound = Counter()
    let finished = StopFlag()
    let progress = Progress(label: "mixed: hourglass", total: n)
    let consumers = Consumers(engine: engine, count: callers)
    let assignments: [[Int]] = (0 ..< callers).map { Array(stride(from: $0, to: n, by: callers)) }
    let start = Mark.now()
    // The clock follows the orders: after k orders, t0 + k/n of the hour.
    let driver = Task {
        while !finished.isSet {
            clock.set(to: t0 + Int64(scheduled.current) * window / Int64(n))
            try? await Task.sleep(for: .milliseconds(1))
        }
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
        for caller in 0 ..< callers {
            group.addTask {
                let mine = assignments[caller]
                for (k, i) in mine.enumerated() {
                    try await engine.schedule(id: workload.ids[i], at: Deadline(millisecondsSinceEpoch: workload.deadlines[i]), payload: workload.payloads[i])
                    scheduled.add()
                    progress.add(1)
                    if k >= lag, paid[mine[k - lag]], try await engine.cancel(id: workload.ids[mine[k - lag]]) { cancelsFound.add() }
                }
                for i in mine.suffix(lag) where paid[i] {
                    if try await engine.cancel(id: workload.ids[i]) { cancelsFound.add() }
                }
            }
        }
        try await group.waitForAll()
    }
    finished.set()
    await driver.value
    clock.set(to: end)
    var after = await engine.stats()
    while after.pending > 0 || after.inFlight > 0 {
        try await Task.sleep(for: .milliseconds(1))
        after = await engine.stats()
    }
    let stop = Mark.now()
    progress.finish()
    let peak = peakResidentBytes()
    try await engine.close()
    await consumers.task.value
    let requests = n + paidCount + consumers.acknowledged.current
    var m = Measurement(scenario: "mixed", system: "hourglass", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: stop))
    m.setCPU(from: start, to: stop)
    m.callers = ctx.callers
    m.diskBytesPerTimer = Double(after.logBytesWritten - before.logBytesWritten) / Double(n)
    m.allocationsPerTimer = Double(start.allocations(to: stop)) / Double(n)
    m.peakResidentBytes = peak
    m.notes.append("\(n) schedules, \(paidCount) cancels (\(cancelsFound.current) found), \(consumers.delivered.current) deliveries, \(consumers.acknowledged.current) acks (expected \(firedCount)); \(callers) callers and \(callers) consumers")
    m.notes += logNotes(before, after, requests: requests)
    results.append(m)
    let rows = ctx.sqliteTransactionRows(requests: requests, frames: after.framesWritten - before.framesWritten)
    guard ctx.peers else { return results }

    // The peers: one thread runs the same operations, interleaved as the callers' would be on
    // average (a paid order is cancelled lag × callers orders after it was created).
    let globalLag = lag * callers
    do {
        resetPeakResident()
        var queue = DelayQueue()
        var fired = 0
        var cancels = 0
        let start = Mark.now()
        for i in 0 ..< n {
            queue.schedule(id: ownCopy(workload.ids[i].bytes), deadline: workload.deadlines[i], payload: ownCopy(workload.payloads[i]))
            if i >= globalLag, paid[i - globalLag], queue.cancel(id: workload.ids[i - globalLag].bytes) { cancels += 1 }
            fired += queue.popDue(through: t0 + Int64(i + 1) * window / Int64(n)) { _ in }
        }
        for i in max(0, n - globalLag) ..< n where paid[i] {
            if queue.cancel(id: workload.ids[i].bytes) { cancels += 1 }
        }
        fired += queue.popDue(through: end) { _ in }
        let stop = Mark.now()
        var m = Measurement(scenario: "mixed", system: "heap", durability: "memory", timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: stop))
        m.setCPU(from: start, to: stop)
        m.allocationsPerTimer = Double(start.allocations(to: stop)) / Double(n)
        m.peakResidentBytes = peakResidentBytes()
        m.notes.append("one thread; \(cancels) cancels found, \(fired) fired (expected \(firedCount))")
        results.append(m)
    }

    let (lib, unavailable) = ctx.sqlitePeer(scenario: "mixed", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = path + "-sqlite"
        makeDirectory(dir)
        defer { removeTree(dir) }
        resetPeakResident()
        let db = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        let progress = Progress(label: "mixed: sqlite", total: n)
        var fired = 0
        var cancels = 0
        var pending = 0  // operations in the open transaction
        let start = Mark.now()
        func pollAll(_ now: Int64) throws {
            while true {
                let got = try db.poll(now: now, limit: rows) { _, _, _ in }
                fired += got
                if got < rows { break }
            }
        }
        try db.begin()
        for i in 0 ..< n {
            try db.insert(id: workload.ids[i].bytes, due: workload.deadlines[i], payload: workload.payloads[i])
            pending += 1
            if i >= globalLag, paid[i - globalLag] {
                if try db.cancel(id: workload.ids[i - globalLag].bytes) { cancels += 1 }
                pending += 1
            }
            if pending >= rows {
                try db.commit()
                try pollAll(t0 + Int64(i + 1) * window / Int64(n))
                progress.add(rows)
                pending = 0
                try db.begin()
            }
        }
        for i in max(0, n - globalLag) ..< n where paid[i] {
            if try db.cancel(id: workload.ids[i].bytes) { cancels += 1 }
        }
        try db.commit()
        try pollAll(end)
        let stop = Mark.now()
        progress.finish()
        let peak = peakResidentBytes()
        db.close()
        var m = Measurement(scenario: "mixed", system: "sqlite", durability: ctx.durabilityName, timers: n, payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: stop))
        m.setCPU(from: start, to: stop)
        m.allocationsPerTimer = Double(start.allocations(to: stop)) / Double(n)
        m.peakResidentBytes = peak
        m.notes.append("one connection: \(ctx.sqliteBatchNote(rows)) of inserts and deletes, the poller after each commit; \(cancels) cancels found, \(fired) fired (expected \(firedCount)); synchronous=\(ctx.sqliteSynchronous)")
        results.append(m)
    }
    return results
}
