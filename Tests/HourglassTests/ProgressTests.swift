import Hourglass
import HourglassTestSupport
import HourglassTesting
import Synchronization
import Testing

/// What a progress handler saw.
final class ProgressRecord: Sendable {
    private let reports = Mutex<[DirectoryProgress]>([])
    func append(_ report: DirectoryProgress) { reports.withLock { $0.append(report) } }
    var all: [DirectoryProgress] { reports.withLock { $0 } }
}

@Suite("Progress of long reads: open, inspect and verify report what they have read")
struct ProgressTests {
    static let start: Int64 = 1_763_791_200_000

    /// A directory with a checkpoint of ~3 MiB and ~3 MiB of log after it (incompressible
    /// payloads), closed.
    static func largeDirectory() async throws -> HourglassTestEngine {
        let timers = try await HourglassTestEngine.open(startingAt: Deadline(millisecondsSinceEpoch: start)) {
            $0.durability = .none
            $0.checkpointLogBytes = 1 << 30
        }
        var random = SeededRandom(seed: 42)
        func batch(_ range: Range<Int>) -> [TimerRequest] {
            range.map { i in
                TimerRequest(id: TimerID("t\(i)"), deadline: Deadline(millisecondsSinceEpoch: start + 3_600_000 + Int64(i)),
                             payload: (0 ..< 600).map { _ in UInt8(truncatingIfNeeded: random.next()) })
            }
        }
        for first in stride(from: 0, to: 5000, by: 500) { try await timers.engine.schedule(batch(first ..< first + 500)) }
        try await timers.engine.checkpoint()
        for first in stride(from: 5000, to: 10_000, by: 500) { try await timers.engine.schedule(batch(first ..< first + 500)) }
        try await timers.engine.close()
        return timers
    }

    /// Each step's reports only go up, at least a MiB apart but for the last, which is complete.
    static func expectWellFormed(_ reports: [DirectoryProgress], steps: [DirectoryProgress.Step], sourceLocation: SourceLocation = #_sourceLocation) {
        var order: [DirectoryProgress.Step] = []
        for report in reports where order.last != report.step { order.append(report.step) }
        #expect(order == steps, "steps in order", sourceLocation: sourceLocation)
        for step in steps {
            let mine = reports.filter { $0.step == step }
            #expect(mine.count >= 3, "\(step): several reports for several MiB, got \(mine)", sourceLocation: sourceLocation)
            #expect(zip(mine, mine.dropFirst()).allSatisfy { $0.completedBytes < $1.completedBytes }, "\(step) only goes up", sourceLocation: sourceLocation)
            #expect(mine.last.map { $0.completedBytes == $0.totalBytes && $0.fraction == 1 } == true, "\(step) ends complete", sourceLocation: sourceLocation)
            #expect(mine.allSatisfy { $0.totalBytes == mine[0].totalBytes && $0.totalBytes > 2 << 20 }, sourceLocation: sourceLocation)
        }
    }

    @Test("verify reports the checkpoint, then the log, up to complete")
    func verify() async throws {
        let timers = try await Self.largeDirectory()
        let path = try #require(timers.directory?.path)
        let record = ProgressRecord()
        #expect(try HourglassEngine.verify(directory: path, progress: record.append).isEmpty)
        Self.expectWellFormed(record.all, steps: [.checkpoint, .log])
        #expect(record.all.first?.path.hasSuffix(".hgc") == true)
        #expect(record.all.last?.path == path)
        try await timers.close()
    }

    @Test("inspect reports loading the checkpoint, then the log; the result is the same with or without a handler")
    func inspect() async throws {
        let timers = try await Self.largeDirectory()
        let path = try #require(timers.directory?.path)
        let record = ProgressRecord()
        let watched = try HourglassEngine.inspect(directory: path, includeTimers: true, progress: record.append)
        let plain = try HourglassEngine.inspect(directory: path, includeTimers: true)
        #expect(watched.pending == 10_000 && watched.timers == plain.timers)
        Self.expectWellFormed(record.all, steps: [.checkpoint, .log])
        try await timers.close()
    }

    @Test("open reports the log it replays (and the checkpoint's head it loads first)")
    func open() async throws {
        let timers = try await Self.largeDirectory()
        let record = ProgressRecord()
        let engine = try await HourglassEngine.open(timers.configuration, clock: timers.clock, progress: record.append)
        let log = record.all.filter { $0.step == .log }
        #expect(log.count >= 3 && log.last?.fraction == 1)
        #expect(record.all.first?.step == .checkpoint, "the head is loaded before the log is replayed")
        #expect(engine.recoveryReport.checkpointSequence != nil)
        try await engine.close()
        try await timers.close()
    }

    @Test("DirectoryProgress describes itself in MiB and percent")
    func description() {
        let report = DirectoryProgress(step: .log, path: "/d", completedBytes: 3 << 20, totalBytes: 12 << 20)
        #expect(report.fraction == 0.25)
        #expect(report.description == "log 3.0 of 12.0 MiB (25%)")
        #expect(DirectoryProgress(step: .checkpoint, path: "/d", completedBytes: 0, totalBytes: 0).fraction == 1)
    }
}
