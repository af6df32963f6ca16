import HourglassCore
import HourglassStorage
import HourglassTestSupport
import HourglassTesting
import Testing

// Helpers shared by the recovery suites (RecoveryTests, ChainRecoveryTests).

let segmentLength = 1 << 20
let created: Int64 = 1_763_791_200_000
let testClock: @Sendable () -> Int64 = { created }

/// Where a frame went, and what it held.
struct FrameInfo {
    var segment: UInt64
    var offset: Int
    var length: Int
    var firstSequence: UInt64
    var records: [LogRecord]
    var sequences: Range<UInt64> { firstSequence ..< firstSequence + UInt64(records.count) }
    var end: Int { offset + length }
}

/// What a recovery found.
struct Recovered {
    var directory: any StorageDirectory
    var tail: LogTail
    var report: RecoveryReport
    var records: [LogRecord]
    var sequences: [UInt64]
}

func recover(_ path: String, salvage: Bool = false) throws(StorageError) -> Recovered {
    let directory = try PosixFileSystem().openDirectory(path)
    var report = RecoveryReport()
    var records: [LogRecord] = []
    var sequences: [UInt64] = []
    let tail = try LogRecovery(directory: directory, salvage: salvage).run(report: &report) { view, sequence in
        records.append(LogRecord(view))
        sequences.append(sequence)
    }
    return Recovered(directory: directory, tail: tail, report: report, records: records, sequences: sequences)
}

/// Continues the log after `recovered` with one frame per element of `frames`, then closes.
/// Writes one frame per element of `frames`. With `synced` (the default) each frame is synced
/// before the next is written, as under `always`: every frame is durable, so damage to one
/// followed by later frames is corruption. Without it, nothing is synced until the end: the
/// frames are a never-synced tail, which a crash may lose in any order.
///
/// The writer ends as in a crash right after its last sync (no close mark), unless `clean`: a
/// clean close ends the log with an empty frame whose durable sequence covers everything.
func write(
    after recovered: Recovered, _ frames: [[LogRecord]], background: Bool = false, segmentLength: Int = segmentLength,
    synced: Bool = true, clean: Bool = false, chained: Bool = false
) throws -> [FrameInfo] {
    let writer = try LogWriter(directory: recovered.directory, segmentLength: segmentLength, tail: recovered.tail,
                               prepareInBackground: background, clock: testClock)
    // The rows below pin the decisions over unchained frames (each decodes alone); the chain's
    // own rows (`chained: true`) pin what a chain changes.
    writer.chainsFrames = chained
    var infos: [FrameInfo] = []
    for frame in frames {
        let first = writer.nextSequence
        for record in frame { writer.records.append(record) }
        let before = writer.bytesWritten
        if synced { try writer.sync() }
        #expect(try writer.flush())
        let length = writer.bytesWritten - before
        let position = writer.position
        infos.append(FrameInfo(segment: position.segment, offset: position.offset - length, length: length,
                               firstSequence: first, records: frame))
    }
    if clean {
        try writer.close()
    } else {
        try writer.sync()
        writer.abandon()
    }
    return infos
}

/// A new log in `path` (recovering the empty directory first), one frame per element of `frames`.
func writeLog(
    _ path: String, _ frames: [[LogRecord]], background: Bool = false, segmentLength: Int = segmentLength,
    synced: Bool = true, clean: Bool = false, chained: Bool = false
) throws -> [FrameInfo] {
    let recovered = try recover(path)
    #expect(recovered.tail.segment == nil)
    return try write(after: recovered, frames, background: background, segmentLength: segmentLength, synced: synced, clean: clean, chained: chained)
}

/// Expects `actual == expected` and describes a difference briefly (records can be large).
func expectRecords(
    _ actual: [LogRecord], _ expected: [LogRecord], _ comment: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual != expected else { return }
    let firstDifference = (0 ..< min(actual.count, expected.count)).first { actual[$0] != expected[$0] } ?? min(actual.count, expected.count)
    let got = firstDifference < actual.count ? "\(actual[firstDifference])" : "nothing"
    let wanted = firstDifference < expected.count ? "\(expected[firstDifference])" : "nothing"
    Issue.record("\(comment()) records differ: \(actual.count) recovered, \(expected.count) expected; at index \(firstDifference): \(got) instead of \(wanted)",
                 sourceLocation: sourceLocation)
}

func randomBytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
    (0 ..< (count + 7) / 8).flatMap { _ -> [UInt8] in
        let word = random.next()
        return (0 ..< 8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
    }.prefix(count).map { $0 }
}

/// `count` frames of `perFrame` records of every type; schedules carry `payload` bytes, random
/// (LZ4 stores the frame as is) or repeated JSON (compressed).
func makeFrames(
    _ count: Int, perFrame: Int, payload: Int = 40, compressible: Bool = false, seed: UInt64 = 1, from start: Int = 0
) -> [[LogRecord]] {
    var random = SeededRandom(seed: seed &+ UInt64(start))
    let json = Array(#"{"customer":"c-42","action":"remind"}"#.utf8)
    var frames: [[LogRecord]] = []
    var n = start
    for _ in 0 ..< count {
        var frame: [LogRecord] = []
        for _ in 0 ..< perFrame {
            let id = Array("t-\(n)".utf8)
            let previous = Array("t-\(max(0, n - 1))".utf8)
            let record: LogRecord
            switch n % 10 {
            case 3: record = .cancel(id: previous)
            case 5: record = .fire(id: previous, attempt: UInt32(n % 7 + 1))
            case 7: record = .retry(id: previous, deadline: created + Int64(n) * 3, attempt: 2)
            case 9: record = .ack(id: previous)
            default:
                var bytes = compressible ? Array((0 ..< (payload / json.count + 1)).flatMap { _ in json }.prefix(payload)) : randomBytes(payload, &random)
                if !bytes.isEmpty { bytes[bytes.count - 1] |= 1 }  // so the frame does not end in a zero byte
                record = .schedule(id: id, deadline: created + Int64(n) * 1000, attempt: 1, payload: bytes)
            }
            frame.append(record)
            n += 1
        }
        frames.append(frame)
    }
    return frames
}

/// Frames large enough that `count` of them span several 1 MiB segments (about 84 KiB each,
/// random payloads: twelve fit a segment).
func bigFrames(_ count: Int, from start: Int = 0) -> [[LogRecord]] {
    makeFrames(count, perFrame: 10, payload: 14 << 10, seed: 99, from: start)
}

extension TemporaryDirectory {
    func segment(_ number: UInt64) -> String { appending(SegmentName.name(number)) }
}

func all(_ frames: [FrameInfo]) -> [LogRecord] { frames.flatMap(\.records) }
func sequences(_ frames: [FrameInfo]) -> [UInt64] { frames.flatMap { Array($0.sequences) } }

/// Expects recovery of `path` to fail with `.corruption` naming `file` at `offset`, and to leave
/// every file as it was (refusing to open must not change anything).
func expectCorruption(
    _ directory: TemporaryDirectory, file: String, offset: Int, reason: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let before = directory.files().map { readFile(directory.appending($0)) }
    do {
        let recovered = try recover(directory.path)
        Issue.record("recovery succeeded (\(recovered.report)); expected corruption at \(file):\(offset)", sourceLocation: sourceLocation)
    } catch {
        guard case let .corruption(actualFile, actualOffset, actualReason) = error else {
            Issue.record("expected corruption, got \(error)", sourceLocation: sourceLocation)
            return
        }
        #expect(actualFile == file, sourceLocation: sourceLocation)
        #expect(actualOffset == Int64(offset), "\(actualReason)", sourceLocation: sourceLocation)
        #expect(actualReason.contains(reason), "\(actualReason)", sourceLocation: sourceLocation)
        #expect(actualReason.contains("salvage"), "the error says how to go on: \(actualReason)", sourceLocation: sourceLocation)
    }
    let after = directory.files().map { readFile(directory.appending($0)) }
    #expect(before == after, "a refused recovery changed files", sourceLocation: sourceLocation)
}

/// A valid segment header for `number`, as bytes.
func segmentHeader(_ number: UInt64, firstSequence: UInt64, length: Int = segmentLength) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: LogFormat.segmentHeaderLength)
    bytes.withUnsafeMutableBytes {
        SegmentHeader(segmentNumber: number, firstSequence: firstSequence, segmentLength: UInt64(length),
                      createdMilliseconds: created).write(to: $0.baseAddress!)
    }
    return bytes
}

func zeros(_ count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }

/// The sequence numbers the dropped entries say were lost, in order.
func lost(_ dropped: [RecoveryReport.Dropped]) -> [UInt64] {
    dropped.flatMap { Array($0.firstSequence ..< $0.firstSequence + UInt64($0.records)) }
}

/// `count` one-record frames of the benchmark's order timers (16-byte ids, 128-byte JSON).
func orderFrames(_ count: Int, perFrame: Int = 1, from start: Int = 0) -> [[LogRecord]] {
    var payloads = BenchOrderPayloads(seed: 42)
    var random = SeededRandom(seed: 7)
    let records: [LogRecord] = (0 ..< start + count * perFrame).map { i in
        .schedule(id: benchOrderID(i), deadline: created + 1_800_000 + Int64(random.next() % 60_000), attempt: 1, payload: payloads.next(order: i))
    }
    return (0 ..< count).map { Array(records[start + $0 * perFrame ..< start + ($0 + 1) * perFrame]) }
}

extension SegmentHeader.ParseResult {
    var validVersion: UInt8? { if case let .valid(header) = self { return header.version } else { return nil } }
}
