import HourglassStorage
#if canImport(Glibc)
import Glibc
#endif

/// The physical ceiling of `--durability always`: how long one `msync(MS_SYNC)` of a small
/// append takes on the disk the scenario writes to.
///
/// The probe writes through the engine's own file layer (`PosixFileSystem`, which HourglassStorage
/// exposes as `package`): a file preallocated with `fallocate` and mapped `MAP_SHARED`, as a log
/// segment is; each append copies `recordBytes` into the mapping just after the previous one, then
/// `sync(offset:length:)` msyncs the touched page, as the log writer does after a group commit.
struct SyncCeiling {
    static let appends = 200
    static let recordBytes = 150

    /// Latency of each msync, in microseconds, in the order they ran.
    var samples: [Double]
    var p50: Double
    var p99: Double
    var max: Double

    /// Runs the probe in `directory` (a file of its own, removed afterwards).
    static func measure(directory: String, appends: Int = SyncCeiling.appends, recordBytes: Int = SyncCeiling.recordBytes) throws -> SyncCeiling {
        let dir = try PosixFileSystem().openDirectory(directory)
        let name = "msync-probe-\(getpid()).tmp"
        let length = Swift.max(1 << 20, (appends * recordBytes + 8191) / 4096 * 4096)
        let file = try dir.createFile(name, length: length)
        defer {
            file.close()
            try? dir.remove(name)
        }
        // A buffer of our own rather than a closure over an array: a typed-throws closure here
        // crashes the 6.3.1 optimizer.
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(1, recordBytes), alignment: 8)
        defer { record.deallocate() }
        record.initializeMemory(as: UInt8.self, repeating: 0x5A)
        var samples: [Double] = []
        samples.reserveCapacity(appends)
        for k in 0 ..< appends {
            record[0] = UInt8(truncatingIfNeeded: k)
            let offset = k * recordBytes
            try file.write(UnsafeRawBufferPointer(rebasing: record[0 ..< recordBytes]), at: offset)
            let start = monotonicNanoseconds()
            try file.sync(offset: offset, length: recordBytes)
            samples.append(Double(monotonicNanoseconds() - start) / 1000)
        }
        let ms = Percentiles(samples)!  // Percentiles is unit-agnostic: these are µs
        return SyncCeiling(samples: samples, p50: ms.p50, p99: ms.p99, max: ms.max)
    }

    /// Calls per second one caller can make when each call waits for one msync: 1 / p50.
    var oneCallerPerSecond: Double { 1e6 / p50 }

    /// Timers per second `callers` callers can make, each call carrying `batch` timers, when all
    /// of them share every msync (one group commit per msync): callers × batch / p50.
    func ceiling(callers: Int, batch: Int) -> Double { Double(callers * batch) * 1e6 / p50 }
}
