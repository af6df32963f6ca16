import Hourglass
import HourglassCore
import HourglassStorage
#if canImport(Glibc)
import Glibc
#endif

/// The log writer alone, as the engine drives it: `flush()` of one record per frame (a lone
/// caller's schedule) and of 1000 per frame (a group commit), over the workload's order timers.
/// Reports bytes of log per timer and the CPU time of one flush (encode, LZ4, CRC-32C, the copy
/// into the mapping), measured on the thread's CPU clock (record encoding and page faults on
/// the fresh segment included) and around `flush()` alone; no sync.
func logScenario(_ ctx: Context) throws -> [Measurement] {
    let n = max(ctx.timers, 1000)
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: realtimeMilliseconds())
    var results: [Measurement] = []
    for perFrame in [1, 1000] {
        status("log: \(n) timers, \(perFrame) per frame")
        let dir = scenarioDirectory(base: ctx.base, name: "log-\(perFrame)")
        makeDirectory(dir)
        defer { removeTree(dir) }
        let directory = try PosixFileSystem().openDirectory(dir)
        var report = RecoveryReport()
        let tail = try LogRecovery(directory: directory).run(report: &report) { _, _ in }
        let writer = try LogWriter(directory: directory, segmentLength: 64 << 20, tail: tail, clock: { realtimeMilliseconds() })
        let cpuStart = threadCPUNanoseconds()
        let processCPU = CPUTime.now()
        let start = monotonicNanoseconds()
        var flushNanoseconds: UInt64 = 0
        var i = 0
        while i < n {
            let end = min(n, i + perFrame)
            for k in i ..< end {
                workload.ids[k].bytes.withUnsafeBytes { id in
                    workload.payloads[k].withUnsafeBytes { payload in
                        writer.records.schedule(id: id, deadline: workload.deadlines[k], attempt: 1, payload: payload)
                    }
                }
            }
            let before = monotonicNanoseconds()
            try writer.flush()
            flushNanoseconds += monotonicNanoseconds() - before
            i = end
        }
        let cpu = threadCPUNanoseconds() - cpuStart
        let spent = CPUSpent(from: processCPU, to: CPUTime.now())
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        var m = Measurement(scenario: "log: \(perFrame) record\(perFrame == 1 ? "" : "s") per frame", system: "hourglass", durability: "none",
                            timers: n, payloadBytes: ctx.payloadBytes, seconds: seconds)
        m.diskBytesPerTimer = Double(writer.bytesWritten) / Double(n)
        m.setCPU(spent, operations: n)
        m.extra.append(("cpu_ns_per_flush", Double(cpu) / Double(writer.framesWritten)))
        m.extra.append(("cpu_ns_per_timer", Double(cpu) / Double(n)))
        // flush() alone (frame build, LZ4, CRC-32C, copy into the mapping), on the monotonic
        // clock (vDSO: ~20 ns of it is the clock reads).
        m.extra.append(("flush_ns", Double(flushNanoseconds) / Double(writer.framesWritten)))
        m.notes.append("record encoding included; \(writer.framesWritten) frames, \(writer.bytesWritten) B of \(writer.rawBytesWritten) B raw")
        writer.abandon()
        results.append(m)
    }
    return results
}

private func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
