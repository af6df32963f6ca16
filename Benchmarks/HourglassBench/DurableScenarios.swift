import Hourglass
#if canImport(Glibc)
import Glibc
#endif

/// One measured result, in the fields `--json` prints.
struct Measurement {
    var scenario: String
    var system: String
    var durability: String
    var timers: Int
    var payloadBytes: Int
    var seconds: Double
    var p50: Double? = nil
    var p99: Double? = nil
    var max: Double? = nil
    var diskBytesPerTimer: Double? = nil
    var memoryBytesPerTimer: Double? = nil
    var allocationsPerTimer: Double? = nil
    var notes: [String] = []

    var throughput: Double { Double(timers) / seconds }
}

/// A workload: ids, deadlines spread over the next hour (30-minute order timeouts with
/// jitter), realistic order payloads.
struct ScheduleWorkload {
    let ids: [TimerID]
    let deadlines: [Deadline]
    let payloads: [[UInt8]]

    init(count: Int, payloadBytes: Int, seed: UInt64, now: Int64) {
        var random = WorkloadRandom(seed: seed)
        var payloadMaker = OrderPayloads(seed: seed, size: payloadBytes)
        var ids: [TimerID] = []
        var deadlines: [Deadline] = []
        var payloads: [[UInt8]] = []
        ids.reserveCapacity(count)
        deadlines.reserveCapacity(count)
        payloads.reserveCapacity(count)
        for i in 0 ..< count {
            ids.append(TimerID("ord-\(i)"))
            deadlines.append(Deadline(millisecondsSinceEpoch: now + 1_800_000 + Int64(random.next() % 1_800_000)))
            payloads.append(payloadMaker.next(order: i))
        }
        self.ids = ids
        self.deadlines = deadlines
        self.payloads = payloads
    }

    /// The size of a SCHEDULE record of timer `i` before compression.
    func recordBytes(_ i: Int) -> Int { 1 + 1 + ids[i].bytes.count + 6 + 1 + 2 + payloads[i].count }
}

/// A fresh directory for a scenario, under `base`.
func scenarioDirectory(base: String, name: String) -> String {
    let path = "\(base)/hourglass-bench-\(name)-\(getpid())"
    _ = removeTree(path)
    return path
}

@discardableResult
func removeTree(_ path: String) -> Bool {
    var info = stat()
    guard lstat(path, &info) == 0 else { return false }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        if let handle = opendir(path) {
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { removeTree(path + "/" + name) }
            }
            closedir(handle)
        }
        return rmdir(path) == 0
    }
    return unlink(path) == 0
}

/// Durable schedule throughput: `callers` tasks schedule `timers` timers between them, each
/// `batch` timers per call (1: one call per timer), into a directory engine; then the same
/// directory is reopened to measure replay.
func runScheduleScenario(
    timers: Int, payloadBytes: Int, durability: Configuration.Durability, callers: Int, batch: Int,
    seed: UInt64, base: String, measureReplay: Bool
) async throws -> [Measurement] {
    let path = scenarioDirectory(base: base, name: "schedule")
    defer { removeTree(path) }
    let clock = SystemClock()
    let workload = ScheduleWorkload(count: timers, payloadBytes: payloadBytes, seed: seed, now: clock.now())
    var configuration = Configuration.directory(path, durability: durability)
    configuration.checkpointLogBytes = 1 << 40  // measure the log alone
    let engine = try await HourglassEngine.open(configuration, clock: clock)
    let progress = Progress(label: "schedule \(durability)", total: timers)

    let start = monotonicNanoseconds()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for caller in 0 ..< callers {
            group.addTask {
                var i = caller * batch
                while i < timers {
                    let end = min(i + batch, timers)
                    if batch == 1 {
                        try await engine.schedule(id: workload.ids[i], at: workload.deadlines[i], payload: workload.payloads[i])
                    } else {
                        try await engine.schedule((i ..< end).map {
                            TimerRequest(id: workload.ids[$0], deadline: workload.deadlines[$0], payload: workload.payloads[$0])
                        })
                    }
                    progress.add(end - i)
                    i += callers * batch
                }
            }
        }
        try await group.waitForAll()
    }
    let seconds = Double(monotonicNanoseconds() - start) / 1e9
    progress.finish()
    let stats = await engine.stats()
    try await engine.close()
    let rawRecordBytes = (0 ..< timers).reduce(0) { $0 + workload.recordBytes($1) }

    var schedule = Measurement(
        scenario: "schedule", system: "hourglass", durability: "\(durability)", timers: timers, payloadBytes: payloadBytes, seconds: seconds)
    schedule.diskBytesPerTimer = Double(stats.logBytesWritten) / Double(timers)
    schedule.notes.append("callers \(callers), batch \(batch)")
    schedule.notes.append("record \(rawRecordBytes / timers) B raw -> \(Int(schedule.diskBytesPerTimer!)) B in the log (ratio \(format2(Double(stats.logRawBytesWritten) / Double(max(stats.logBytesWritten, 1)))))")
    schedule.notes.append("\(stats.framesWritten) frames (\(timers / max(stats.framesWritten, 1)) timers each), \(stats.syncs) syncs")
    var results = [schedule]

    if measureReplay {
        // Reopen: replay every record of the log into a fresh wheel.
        dropPageCacheHint(path)
        let openStart = monotonicNanoseconds()
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        let openSeconds = Double(monotonicNanoseconds() - openStart) / 1e9
        let records = reopened.recoveryReport.records
        let pending = await reopened.stats().pending
        try await reopened.close()
        precondition(pending == timers, "replay recovered \(pending) of \(timers) timers")
        var replay = Measurement(
            scenario: "recover", system: "hourglass", durability: "\(durability)", timers: records, payloadBytes: payloadBytes, seconds: openSeconds)
        replay.notes.append("open = lock + replay of \(records) records + wheel rebuild")
        results.append(replay)
    }
    return results
}

/// Nothing to do without privileges; kept as the place to drop caches when running as root.
func dropPageCacheHint(_ path: String) {}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A progress bar on stderr for long phases (silent when stderr is not a terminal).
final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private var done = 0
    private var lastPrinted = 0
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let enabled = isatty(2) != 0

    init(label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
        pthread_mutex_init(lock, nil)
    }

    func add(_ count: Int) {
        guard enabled else { return }
        pthread_mutex_lock(lock)
        done += count
        let percent = done * 100 / total
        if percent != lastPrinted {
            lastPrinted = percent
            let filled = percent / 4
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 25 - filled)
            writeStandardError("\r\(label) [\(bar)] \(percent)%")
        }
        pthread_mutex_unlock(lock)
    }

    func finish() {
        guard enabled else { return }
        writeStandardError("\r\u{1B}[K")
    }
}

/// Writes to file descriptor 2 (the `stderr` global is not concurrency-safe in Swift 6).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
