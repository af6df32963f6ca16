import CBenchSupport
import HourglassCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Memory

/// Resident set size of this process in bytes (from /proc/self/statm).
func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 256)
    guard fgets(&buffer, 256, file) != nil else { return 0 }
    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let resident = Int(fields[1]) else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Anonymous resident memory (heap and anonymous mappings, not mapped files such as the log
/// segments), after handing freed malloc memory back to the system: the memory the live objects
/// of the process take.
func liveAnonymousBytes() -> Int {
    hb_malloc_trim()
    return Int(max(0, hb_proc_status_bytes("RssAnon")))
}

/// `liveAnonymousBytes()` once the process has settled: threads of a system just closed (an
/// engine's thread frees its tables as it ends) have finished, so the baseline of the next
/// system does not still count them.
func baselineAnonymousBytes() -> Int {
    sleepMicroseconds(100_000)
    return liveAnonymousBytes()
}

/// Peak resident set size (VmHWM) since the last `resetPeakResident()`.
func peakResidentBytes() -> Int { Int(max(0, hb_proc_status_bytes("VmHWM"))) }

/// Starts a new peak-resident measurement (Linux 4.0+); false when the kernel refuses.
@discardableResult
func resetPeakResident() -> Bool { hb_reset_peak_resident() == 0 }

// MARK: Allocations and time

/// A point in a run: the monotonic time, the process's CPU time and the malloc counters.
struct Mark {
    var nanoseconds: UInt64
    var allocations: UInt64
    var allocatedBytes: UInt64
    var cpu: CPUTime

    static func now() -> Mark {
        let counters = hb_malloc_snapshot()
        let cpu = CPUTime.now()
        return Mark(nanoseconds: monotonicNanoseconds(), allocations: counters.allocations, allocatedBytes: counters.bytes, cpu: cpu)
    }

    func seconds(to end: Mark) -> Double { Double(end.nanoseconds &- nanoseconds) / 1e9 }
    func allocations(to end: Mark) -> Int { Int(end.allocations &- allocations) }
    /// The CPU time the whole process (every thread) used from this mark to `end`.
    func cpu(to end: Mark) -> CPUSpent { CPUSpent(from: cpu, to: end.cpu) }
}

/// The CPU time the process has used so far: user + system of every thread
/// (`CLOCK_PROCESS_CPUTIME_ID`, nanosecond resolution), and the system part alone
/// (`getrusage(RUSAGE_SELF)`, microsecond resolution).
struct CPUTime: Sendable {
    var totalNanoseconds: UInt64
    var systemNanoseconds: UInt64

    static func now() -> CPUTime {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return CPUTime(
            totalNanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec),
            systemNanoseconds: UInt64(usage.ru_stime.tv_sec) * 1_000_000_000 + UInt64(usage.ru_stime.tv_usec) * 1000)
    }
}

/// CPU time spent over a phase (every thread of the process), in nanoseconds.
struct CPUSpent: Sendable {
    var total: Double
    var system: Double

    init(total: Double, system: Double) {
        self.total = total
        self.system = system
    }

    init(from start: CPUTime, to end: CPUTime) {
        total = Double(end.totalNanoseconds &- start.totalNanoseconds)
        system = Double(end.systemNanoseconds &- start.systemNanoseconds)
    }

    static func + (a: CPUSpent, b: CPUSpent) -> CPUSpent { CPUSpent(total: a.total + b.total, system: a.system + b.system) }
}

/// Wall time and CPU time of one measured phase.
struct Timing: Sendable {
    var seconds: Double
    var cpu: CPUSpent
}

/// Whether allocations are counted (the interposed malloc is the one the process uses).
let allocationCounting: Bool = hb_malloc_is_counting() != 0

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall-clock microseconds since the Unix epoch (the clock deadlines are on).
func realtimeMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// Wall-clock milliseconds since the Unix epoch, as `SystemClock` reads them.
func realtimeMilliseconds() -> Int64 { realtimeMicroseconds() / 1000 }

/// Sleeps this thread until the wall clock reads `milliseconds` (returns at once if it has).
func sleepUntilRealtime(milliseconds: Int64) {
    var ts = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int(milliseconds % 1000) * 1_000_000)
    while clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, nil) == EINTR {}
}

/// Sleeps this thread for `microseconds`.
func sleepMicroseconds(_ microseconds: Int) {
    var ts = timespec(tv_sec: microseconds / 1_000_000, tv_nsec: (microseconds % 1_000_000) * 1000)
    var remaining = timespec()
    while nanosleep(&ts, &remaining) == -1 && errno == EINTR { ts = remaining }
}

/// Wall time of `body` in seconds.
@inline(never)
func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = monotonicNanoseconds()
    try body()
    return Double(monotonicNanoseconds() - start) / 1e9
}

/// Wall time and process CPU time of `body`.
@inline(never)
func measured(_ body: () throws -> Void) rethrows -> Timing {
    let cpu = CPUTime.now()
    let start = monotonicNanoseconds()
    try body()
    let end = monotonicNanoseconds()
    return Timing(seconds: Double(end - start) / 1e9, cpu: CPUSpent(from: cpu, to: CPUTime.now()))
}

/// `measured` for an async body.
func measuredAsync(_ body: () async -> Void) async -> Timing {
    let cpu = CPUTime.now()
    let start = monotonicNanoseconds()
    await body()
    let end = monotonicNanoseconds()
    return Timing(seconds: Double(end - start) / 1e9, cpu: CPUSpent(from: cpu, to: CPUTime.now()))
}

// MARK: Statistics

/// Latency percentiles, in milliseconds (nearest rank).
struct Percentiles {
    var p50: Double
    var p99: Double
    var max: Double
    var count: Int

    init?(_ samples: [Double]) {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        func rank(_ q: Double) -> Double {
            let index = Int((q * Double(sorted.count)).rounded(.up)) - 1
            return sorted[Swift.max(0, Swift.min(sorted.count - 1, index))]
        }
        p50 = rank(0.50)
        p99 = rank(0.99)
        max = sorted[sorted.count - 1]
        count = sorted.count
    }
}

// MARK: Threads and waiting

/// A joinable thread, for the peers whose calls block (SQLite) or that own a thread (the heap's
/// firing thread): blocking them on Swift's cooperative pool (two threads here) would stall it.
final class BenchThread: @unchecked Sendable {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(result == 0, "cannot start a thread (errno \(result))")
    }

    func join() { pthread_join(thread, nil) }
}

/// Opens once; `wait()` returns when it is open.
final class Latch: Sendable {
    private struct State {
        var open = false
        var waiters: [UnsafeContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func open() {
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            guard !state.open else { return [] }
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var isOpen: Bool { state.withLock { $0.open } }

    func wait() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// A counter shared by tasks or threads.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    @discardableResult
    func add(_ count: Int = 1) -> Int { value.wrappingAdd(count, ordering: .relaxed).newValue }
    var current: Int { value.load(ordering: .relaxed) }
}

/// The largest value seen, shared by tasks or threads.
final class Maximum: Sendable {
    private let value = Atomic<Int>(0)
    func record(_ candidate: Int) { value.max(candidate, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

/// A value shared by tasks or threads, under a lock.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// A flag shared by tasks or threads.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Samples gathered by several tasks or threads.
final class SampleBox: Sendable {
    private let samples = Mutex<[Double]>([])
    func append(contentsOf more: [Double]) { samples.withLock { $0.append(contentsOf: more) } }
    var all: [Double] { samples.withLock { $0 } }
}

// MARK: Workload randomness

/// Deterministic generator for workloads.
typealias WorkloadRandom = SplitMix64

// MARK: Formatting

func formatRate(_ perSecond: Double) -> String {
    if !perSecond.isFinite { return "-" }
    if perSecond >= 1e6 { return format2(perSecond / 1e6) + " M/s" }
    if perSecond >= 1e3 { return format2(perSecond / 1e3) + " k/s" }
    return format2(perSecond) + " /s"
}

/// Nanoseconds for the table: "41.5", "412", "1530", "123.4 k".
func formatNanoseconds(_ value: Double) -> String {
    guard value.isFinite else { return "-" }
    if value >= 100_000 { return format1(value / 1000) + " k" }
    if value >= 100 { return "\(Int(value.rounded()))" }
    return format1(value)
}

func format2(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    let scaled = (value * 100).rounded() / 100
    return "\(scaled)"
}

/// A number with at most three significant decimals, for milliseconds.
func formatMilliseconds(_ value: Double) -> String {
    if value >= 100 { return "\(Int(value.rounded()))" }
    if value >= 10 { return format1(value) }
    let scaled = (value * 1000).rounded() / 1000
    return "\(scaled)"
}

func format1(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    return "\((value * 10).rounded() / 10)"
}

func formatBytes(_ bytes: Int) -> String {
    if bytes >= 1 << 30 { return format2(Double(bytes) / Double(1 << 30)) + " GiB" }
    if bytes >= 1 << 20 { return format1(Double(bytes) / Double(1 << 20)) + " MiB" }
    if bytes >= 1 << 10 { return format1(Double(bytes) / Double(1 << 10)) + " KiB" }
    return "\(bytes) B"
}

extension String {
    /// Left-aligned in a column of `width` characters.
    func padded(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    /// Right-aligned in a column of `width` characters.
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }

    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

func getEnvironment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// Writes to file descriptor 2 (the `stderr` global is not concurrency-safe in Swift 6).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// Writes a line to standard output at once (the results of a scenario, as it completes).
func writeStandardOutput(_ text: String) {
    var bytes = Array((text + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { if errno == EINTR { continue } else { return } }
        offset += written
    }
}

/// A progress bar on stderr for long phases (silent when stderr is not a terminal).
final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private var done = 0
    private var lastPrinted = -1
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let enabled = isatty(2) != 0

    init(label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
        pthread_mutex_init(lock, nil)
        add(0)
    }

    func add(_ count: Int) {
        guard enabled else { return }
        pthread_mutex_lock(lock)
        done += count
        let percent = min(100, done * 100 / total)
        if percent != lastPrinted {
            lastPrinted = percent
            let filled = percent / 4
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 25 - filled)
            writeStandardError("\r\u{1B}[K\(label) [\(bar)] \(percent)%")
        }
        pthread_mutex_unlock(lock)
    }

    func finish() {
        guard enabled else { return }
        writeStandardError("\r\u{1B}[K")
    }
}

/// A one-line status on stderr (terminals only), replaced by the next.
func status(_ text: String) {
    guard isatty(2) != 0 else { return }
    writeStandardError("\r\u{1B}[K" + text)
}
