import HourglassCore
import HourglassStorage
import HourglassTestSupport
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Helpers

private let segmentLength = 1 << 20
private let created: Int64 = 1_763_791_200_000
private let testClock: @Sendable () -> Int64 = { created }

/// Where a frame went, and what it held.
private struct FrameInfo {
    var segment: UInt64
    var offset: Int
    var length: Int
    var firstSequence: UInt64
    var records: [LogRecord]
    var sequences: Range<UInt64> { firstSequence ..< firstSequence + UInt64(records.count) }
    var end: Int { offset + length }
}

/// What a recovery found.
private struct Recovered {
    var directory: any StorageDirectory
    var tail: LogTail
    var report: RecoveryReport
    var records: [LogRecord]
    var sequences: [UInt64]
}

private func recover(_ path: String, salvage: Bool = false) throws(StorageError) -> Recovered {
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
private func write(
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
private func writeLog(
    _ path: String, _ frames: [[LogRecord]], background: Bool = false, segmentLength: Int = segmentLength,
    synced: Bool = true, clean: Bool = false, chained: Bool = false
) throws -> [FrameInfo] {
    let recovered = try recover(path)
    #expect(recovered.tail.segment == nil)
    return try write(after: recovered, frames, background: background, segmentLength: segmentLength, synced: synced, clean: clean, chained: chained)
}

/// Expects `actual == expected` and describes a difference briefly (records can be large).
private func expectRecords(
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

private func randomBytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
    (0 ..< (count + 7) / 8).flatMap { _ -> [UInt8] in
        let word = random.next()
        return (0 ..< 8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
    }.prefix(count).map { $0 }
}

/// `count` frames of `perFrame` records of every type; schedules carry `payload` bytes, random
/// (LZ4 stores the frame as is) or repeated JSON (compressed).
private func makeFrames(
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
private func bigFrames(_ count: Int, from start: Int = 0) -> [[LogRecord]] {
    makeFrames(count, perFrame: 10, payload: 14 << 10, seed: 99, from: start)
}

private extension TemporaryDirectory {
    func segment(_ number: UInt64) -> String { appending(SegmentName.name(number)) }
}

private func all(_ frames: [FrameInfo]) -> [LogRecord] { frames.flatMap(\.records) }
private func sequences(_ frames: [FrameInfo]) -> [UInt64] { frames.flatMap { Array($0.sequences) } }

/// Expects recovery of `path` to fail with `.corruption` naming `file` at `offset`, and to leave
/// every file as it was (refusing to open must not change anything).
private func expectCorruption(
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
private func segmentHeader(_ number: UInt64, firstSequence: UInt64, length: Int = segmentLength) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: LogFormat.segmentHeaderLength)
    bytes.withUnsafeMutableBytes {
        SegmentHeader(segmentNumber: number, firstSequence: firstSequence, segmentLength: UInt64(length),
                      createdMilliseconds: created).write(to: $0.baseAddress!)
    }
    return bytes
}

private func zeros(_ count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }

/// The sequence numbers the dropped entries say were lost, in order.
private func lost(_ dropped: [RecoveryReport.Dropped]) -> [UInt64] {
    dropped.flatMap { Array($0.firstSequence ..< $0.firstSequence + UInt64($0.records)) }
}

// MARK: Tests

@Suite("Log recovery: the decision table of Docs/RECOVERY.md")
struct RecoveryTests {
    @Test("row 1: an empty directory starts a new log at segment 1, sequence 1")
    func row1EmptyDirectory() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let recovered = try recover(directory.path)
        #expect(recovered.tail.segment == nil)
        #expect(recovered.tail.spares.isEmpty)
        #expect(recovered.tail.segments.isEmpty)
        #expect(recovered.tail.nextSequence == 1)
        #expect(recovered.report == RecoveryReport())
        #expect(recovered.records.isEmpty)

        // The first frame is FORMAT.md's worked example, at offset 64 of segment 1.
        let writer = try LogWriter(directory: recovered.directory, segmentLength: segmentLength, tail: recovered.tail,
                                   prepareInBackground: false, clock: testClock)
        #expect(writer.nextSequence == 1)
        #expect(writer.position == (segment: 1, offset: 64))
        Array("order-1".utf8).withUnsafeBytes { id in
            Array(#"{"a":1}"#.utf8).withUnsafeBytes { payload in
                writer.records.schedule(id: id, deadline: 1_763_791_200_000, attempt: 1, payload: payload)
            }
        }
        Array("order-2".utf8).withUnsafeBytes { writer.records.cancel(id: $0) }
        try writer.flush()
        try writer.close()
        #expect(directory.files() == [SegmentName.name(1)])
        let file = readFile(directory.segment(1))
        #expect(file.count == segmentLength)
        #expect(file.withUnsafeBytes { SegmentHeader.parse($0) }
                == .valid(SegmentHeader(segmentNumber: 1, firstSequence: 1, segmentLength: UInt64(segmentLength), createdMilliseconds: created)))
        // FORMAT.md's worked example: a compact frame, then the close mark at 112.
        let documented: [UInt8] = [0x68, 0x00, 0x02, 0x21, 0x10, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0xDF, 0x3D, 0x87, 0x9E]
        #expect(Array(file[64 ..< 79]) == documented)
        // The close mark: an empty chained frame at 112 whose durable sequence (3) covers both records.
        #expect(Array(file[112 ..< 123]) == [0x68, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00])
        #expect(file[127...].allSatisfy { $0 == 0 })

        let reopened = try recover(directory.path)
        #expect(reopened.records == [
            .schedule(id: Array("order-1".utf8), deadline: 1_763_791_200_000, attempt: 1, payload: Array(#"{"a":1}"#.utf8)),
            .cancel(id: Array("order-2".utf8)),
        ])
        #expect(reopened.sequences == [1, 2])
        #expect(reopened.report.segments == 1 && reopened.report.frames == 2, "the frame and the close mark")
        #expect(reopened.report.records == 2 && reopened.report.applied == 2)
        #expect(reopened.report.tornTail == nil && reopened.report.dropped.isEmpty)
        #expect(reopened.tail.segment?.number == 1)
        #expect(reopened.tail.segment?.writeOffset == 127)
        #expect(reopened.tail.nextSequence == 3)
        #expect(reopened.tail.segments.map(\.number) == [1] && reopened.tail.segments.map(\.firstSequence) == [1])
    }

    @Test("row 2: frames end in zeros (clean close): everything is replayed and the log continues after the last frame")
    func row2CleanClose() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let first = try writeLog(directory.path, makeFrames(5, perFrame: 7))
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(first))
        #expect(recovered.sequences == Array(1 ... 35))
        #expect(recovered.report.segments == 1 && recovered.report.frames == 5)
        #expect(recovered.report.records == 35 && recovered.report.applied == 35)
        #expect(recovered.report.tornTail == nil && recovered.report.dropped.isEmpty)
        #expect(recovered.tail.segment?.number == 1)
        #expect(recovered.tail.segment?.writeOffset == first.last!.end)
        #expect(recovered.tail.nextSequence == 36)

        let second = try write(after: recovered, makeFrames(3, perFrame: 4, compressible: true, from: 35))
        #expect(second.first?.offset == first.last!.end)
        #expect(second.first?.firstSequence == 36)
        let again = try recover(directory.path)
        expectRecords(again.records, all(first) + all(second))
        #expect(again.sequences == Array(1 ... 47))
        #expect(again.report.frames == 8 && again.report.tornTail == nil)
    }

    @Test("row 2: a crash between writes loses only what was never written into the log")
    func row2CrashBetweenWrites() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = makeFrames(4, perFrame: 5)
        var written: [FrameInfo] = []
        do {
            let recovered = try recover(directory.path)
            let writer = try LogWriter(directory: recovered.directory, segmentLength: segmentLength, tail: recovered.tail,
                                       prepareInBackground: false, clock: testClock)
            for (i, frame) in frames.enumerated() {
                let first = writer.nextSequence
                for record in frame { writer.records.append(record) }
                if i == 3 { break }  // the last batch is never flushed: the "crash" comes first
                let before = writer.bytesWritten
                try writer.flush()
                if i == 1 { try writer.sync() }  // frame 2 is written but not synced: in the page cache
                written.append(FrameInfo(segment: 1, offset: writer.position.offset - (writer.bytesWritten - before),
                                         length: writer.bytesWritten - before, firstSequence: first, records: frame))
            }
            // The writer goes away without close.
        }
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(written))
        #expect(recovered.sequences == Array(1 ... 15))
        #expect(recovered.report.tornTail == nil)
        #expect(recovered.tail.segment?.writeOffset == written.last!.end)
        #expect(recovered.tail.nextSequence == 16)
    }

    @Test("row 2: a log spanning several 1 MiB segments is read in full and continues in the newest")
    func row2SegmentRollover() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(40), background: true)
        let segments = Set(frames.map(\.segment)).sorted()
        #expect(segments == [1, 2, 3, 4])
        // No frame straddles segments; each segment's header starts where the previous ended.
        for frame in frames { #expect(frame.offset >= 64 && frame.end <= segmentLength) }
        for number in segments {
            let file = readFile(directory.segment(number))
            #expect(file.count == segmentLength)
            let firstFrame = frames.first { $0.segment == number }!
            #expect(file.withUnsafeBytes { SegmentHeader.parse($0) }
                    == .valid(SegmentHeader(segmentNumber: number, firstSequence: firstFrame.firstSequence,
                                            segmentLength: UInt64(segmentLength), createdMilliseconds: created)))
            #expect(firstFrame.offset == 64)
            let last = frames.last { $0.segment == number }!
            #expect(file[last.end...].allSatisfy { $0 == 0 })
        }
        // The writer prepared the next segment ahead of time: a spare.
        #expect(directory.files().contains(SegmentName.name(5)))

        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames))
        #expect(recovered.sequences == Array(1 ... 400))
        #expect(recovered.report.segments == 4 && recovered.report.frames == 40 && recovered.report.records == 400)
        #expect(recovered.report.tornTail == nil && recovered.report.dropped.isEmpty)
        #expect(recovered.tail.segment?.number == 4)
        #expect(recovered.tail.segment?.writeOffset == frames.last!.end)
        #expect(recovered.tail.segments.map(\.number) == [1, 2, 3, 4])
        #expect(recovered.tail.segments.map(\.firstSequence) == segments.map { n in frames.first { $0.segment == n }!.firstSequence })

        let more = try write(after: recovered, bigFrames(12, from: 400), background: true)
        #expect(more.first?.segment == 4 && more.first?.offset == frames.last!.end)
        #expect(more.last?.segment == 5)
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames) + all(more))
        #expect(again.sequences == Array(1 ... 520))
        #expect(again.report.segments == 5 && again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 3: an incomplete last frame is a torn tail, cut at every byte offset")
    func row3TornTailEveryOffset() throws {
        // The last frame is compressed in one run and stored as is in the other. Small (64 KiB)
        // segments keep the hundreds of recoveries quick; nothing here depends on the size.
        let small = 64 << 10
        var random = SeededRandom(seed: 23)
        for compressible in [false, true] {
            let directory = TemporaryDirectory()
            defer { directory.remove() }
            let lastRecords: [LogRecord] = compressible
                ? makeFrames(1, perFrame: 4, compressible: true, from: 12)[0]
                : [.schedule(id: Array("last".utf8), deadline: created, attempt: 3, payload: randomBytes(90, &random).map { $0 | 1 })]
            let frames = try writeLog(directory.path, makeFrames(3, perFrame: 4) + [lastRecords], segmentLength: small)
            let last = frames.last!
            let path = directory.segment(1)
            let pristine = Array(readFile(path)[0 ..< last.end + 4096])
            let lastFrame = Array(pristine[last.offset ..< last.end])
            #expect((lastFrame[1] == 1) == compressible, "a compact, unchained frame: flags in byte 1")
            let kept = Array(frames.dropLast())
            for cut in 0 ..< last.length {
                patchFile(path, at: 0, with: pristine)
                patchFile(path, at: last.offset + cut, with: zeros(last.length - cut))
                let survives = lastFrame[cut...].allSatisfy { $0 == 0 }  // what was zeroed was zero already
                let recovered = try recover(directory.path)
                let expected = survives ? frames : kept
                expectRecords(recovered.records, all(expected), "cut at \(cut)")
                #expect(recovered.sequences == sequences(expected), "cut at \(cut)")
                #expect(recovered.report.dropped.isEmpty)
                if survives || cut == 0 {
                    #expect(recovered.report.tornTail == nil, "cut at \(cut)")
                } else {
                    let torn = try #require(recovered.report.tornTail, "cut at \(cut): no torn tail reported")
                    #expect(torn.file == path)
                    #expect(torn.offset == Int64(last.offset), "cut at \(cut)")
                    #expect(torn.bytes == lastFrame[0 ..< cut].lastIndex { $0 != 0 }! + 1, "cut at \(cut)")
                    #expect(!torn.reason.isEmpty)
                }
                let end = survives ? last.end : last.offset
                #expect(recovered.tail.segment?.number == 1)
                #expect(recovered.tail.segment?.writeOffset == end, "cut at \(cut)")
                #expect(recovered.tail.nextSequence == (survives ? last.sequences.upperBound : last.firstSequence))
                // The torn bytes are gone from the file.
                #expect(readFile(path)[end ..< last.end + 4096].allSatisfy { $0 == 0 }, "cut at \(cut)")

                // The log continues where the torn frame was; the next recovery sees old and new.
                let newer = try write(after: recovered, [[.cancel(id: Array("after-\(cut)".utf8)), .ack(id: [1])]], segmentLength: small)
                #expect(newer[0].offset == end && newer[0].firstSequence == recovered.tail.nextSequence)
                let again = try recover(directory.path)
                expectRecords(again.records, all(expected) + all(newer), "cut at \(cut)")
                #expect(again.sequences == Array(1 ... UInt64(again.records.count)))
                #expect(again.report.tornTail == nil && again.report.dropped.isEmpty, "cut at \(cut)")
            }
        }
    }

    @Test("row 3: a torn first frame of the newest of several segments is cut, and the log continues there")
    func row3TornTailNewestSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(25))
        let last = frames.last!
        #expect(last.segment == 3 && last.offset == 64)
        // Cut it half way through its body.
        patchFile(directory.segment(3), at: last.offset + last.length / 2, with: zeros(last.length - last.length / 2))
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames.dropLast()))
        #expect(recovered.report.tornTail?.file == directory.segment(3))
        #expect(recovered.report.tornTail?.offset == 64)
        #expect(recovered.report.tornTail?.bytes == last.length / 2)
        #expect(recovered.report.segments == 3)
        #expect(recovered.tail.segment?.number == 3 && recovered.tail.segment?.writeOffset == 64)
        let newer = try write(after: recovered, bigFrames(2, from: 900))
        #expect(newer.map(\.segment) == [3, 3] && newer[0].offset == 64 && newer[0].firstSequence == last.firstSequence)
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames.dropLast()) + all(newer))
        #expect(again.sequences == Array(1 ... 260))
        #expect(again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 4: a complete last frame that fails its checksum is a torn tail")
    func row4LastFrameChecksum() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(4, perFrame: 6))
        let last = frames.last!
        let path = directory.segment(1)
        let pristine = Array(readFile(path)[0 ..< last.end + 4096])
        // A flipped bit in the body, in the checksum field, in the sequence number, in the last byte.
        for (offset, bit) in [(last.offset + 40, 0), (last.offset + 36, 7), (last.offset + 16, 1), (last.end - 1, 6)] {
            patchFile(path, at: 0, with: pristine)
            patchFile(path, at: offset, with: [pristine[offset] ^ (1 << UInt8(bit))])
            let recovered = try recover(directory.path)
            expectRecords(recovered.records, all(frames.dropLast()), "flip at \(offset)")
            let torn = try #require(recovered.report.tornTail)
            #expect(torn.file == path && torn.offset == Int64(last.offset))
            #expect(torn.bytes == last.length, "the whole frame is cut (it ends in a non-zero byte)")
            // A flipped sequence number can also make the header impossible (its durable sequence
            // then lies after its first).
            #expect(torn.reason.contains("checksum") || torn.reason.contains("impossible frame length"), "\(torn.reason)")
            #expect(recovered.report.dropped.isEmpty)
            #expect(recovered.tail.segment?.writeOffset == last.offset)
            #expect(recovered.tail.nextSequence == last.firstSequence)
            #expect(readFile(path)[last.offset...].allSatisfy { $0 == 0 })
        }
        let recovered = try recover(directory.path)
        let newer = try write(after: recovered, makeFrames(1, perFrame: 3, from: 500))
        #expect(newer[0].offset == last.offset && newer[0].firstSequence == last.firstSequence)
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames.dropLast()) + all(newer))
        #expect(again.sequences == Array(1 ... 21))
        #expect(again.report.tornTail == nil)
    }

    @Test("row 5: non-zero bytes after the last frame, none of them a valid frame, are a torn tail")
    func row5GarbageAfterLastFrame() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(3, perFrame: 5))
        let end = frames.last!.end
        let path = directory.segment(1)
        let pristine = Array(readFile(path)[0 ..< end + 8192])
        var random = SeededRandom(seed: 17)
        // A frame header with nothing sound after it, 100 random bytes, a few bytes far out, a
        // second copy of the last frame with a bad checksum further on.
        var copy = Array(pristine[frames.last!.offset ..< end])
        copy[copy.count - 1] ^= 0x10
        let cases: [(at: Int, bytes: [UInt8])] = [
            (end, Array(pristine[frames[0].offset ..< frames[0].offset + 32])),
            (end, randomBytes(100, &random).map { $0 | 1 }),
            (end + 5000, [1, 2, 3]),
            (end + 40, copy),
            (segmentLength - 7, [9, 9, 9, 9, 9, 9, 9]),
        ]
        for (at, bytes) in cases {
            patchFile(path, at: 0, with: pristine)
            patchFile(path, at: at, with: bytes)
            let recovered = try recover(directory.path)
            expectRecords(recovered.records, all(frames), "garbage at \(at)")
            let torn = try #require(recovered.report.tornTail, "garbage at \(at)")
            #expect(torn.file == path && torn.offset == Int64(end), "garbage at \(at)")
            #expect(torn.bytes == at + bytes.lastIndex { $0 != 0 }! + 1 - end, "garbage at \(at)")
            #expect(recovered.report.dropped.isEmpty)
            #expect(recovered.tail.segment?.writeOffset == end)
            #expect(recovered.tail.nextSequence == 16)
            #expect(readFile(path)[end...].allSatisfy { $0 == 0 }, "garbage at \(at)")
        }
        let recovered = try recover(directory.path)
        #expect(recovered.report.tornTail == nil)
        let newer = try write(after: recovered, makeFrames(1, perFrame: 2, from: 100))
        #expect(newer[0].offset == end)
        expectRecords(try recover(directory.path).records, all(frames) + all(newer))
    }

    @Test("row 6: a bad frame followed by a valid frame in the same segment is corruption; salvage skips it and reports it")
    func row6SameSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(5, perFrame: 6))
        let bad = frames[2]
        let path = directory.segment(1)
        patchFile(path, at: bad.offset + 50, with: [readFile(path)[bad.offset + 50] ^ 0x04])
        expectCorruption(directory, file: path, offset: bad.offset, reason: "checksum mismatch")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.offset != bad.offset }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        #expect(salvaged.report.tornTail == nil)
        #expect(salvaged.report.dropped.count == 1)
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == path)
        #expect(dropped.offset == Int64(bad.offset))
        #expect(dropped.bytes == bad.length)
        #expect(dropped.firstSequence == bad.firstSequence)
        #expect(dropped.records == bad.records.count)
        #expect(dropped.reason.contains("checksum mismatch"))
        #expect(salvaged.report.frames == 4 && salvaged.report.records == 24 && salvaged.report.applied == 24)
        #expect(salvaged.tail.segment?.writeOffset == frames.last!.end)
        #expect(salvaged.tail.nextSequence == 31)
        #expect(salvaged.report.description.contains("DROPPED"))
    }

    @Test("row 6: a hole (a frame gone to zeros) followed by valid frames in the newest segment is corruption; salvage skips the hole")
    func row6HoleInNewestSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(5, perFrame: 6))
        let hole = frames[2]
        let path = directory.segment(1)
        patchFile(path, at: hole.offset, with: zeros(hole.length))
        expectCorruption(directory, file: path, offset: hole.offset, reason: "a valid frame at \(SegmentName.name(1)):\(frames[3].offset)")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.offset != hole.offset }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        #expect(salvaged.report.dropped.count == 1)
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == path && dropped.offset == Int64(hole.offset) && dropped.bytes == hole.length)
        #expect(dropped.firstSequence == hole.firstSequence && dropped.records == hole.records.count)
        #expect(salvaged.report.segments == 1 && salvaged.report.frames == 4)
        #expect(salvaged.tail.segment?.number == 1 && salvaged.tail.segment?.writeOffset == frames.last!.end)
        #expect(salvaged.tail.nextSequence == 31)
        #expect(salvaged.tail.segments.map(\.number) == [1], "each segment once")
    }

    @Test("row 6': a hole followed by frames that do not prove it durable is a torn tail: a power loss wrote pages back out of order")
    func row6PrimeUnprovenHole() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Never synced until the end: every frame records durable sequence 1.
        let frames = try writeLog(directory.path, makeFrames(5, perFrame: 6), synced: false)
        let hole = frames[2]
        let path = directory.segment(1)
        patchFile(path, at: hole.offset, with: zeros(hole.length))
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(Array(frames[0 ..< 2])))
        let torn = try #require(recovered.report.tornTail)
        #expect(torn.file == path && torn.offset == Int64(hole.offset))
        #expect(torn.bytes == frames.last!.end - hole.offset, "the frames after the hole go with it")
        #expect(recovered.report.dropped.isEmpty)
        #expect(recovered.tail.segment?.writeOffset == hole.offset && recovered.tail.nextSequence == hole.firstSequence)
        #expect(readFile(path)[hole.offset ..< frames.last!.end].allSatisfy { $0 == 0 }, "the cut tail is zeroed")

        // The same hole after a clean close is corruption: the close mark proves every frame durable.
        let closed = TemporaryDirectory()
        defer { closed.remove() }
        let cleanFrames = try writeLog(closed.path, makeFrames(5, perFrame: 6), synced: false, clean: true)
        patchFile(closed.segment(1), at: cleanFrames[2].offset, with: zeros(cleanFrames[2].length))
        expectCorruption(closed, file: closed.segment(1), offset: cleanFrames[2].offset, reason: "a valid frame at \(SegmentName.name(1)):\(cleanFrames[3].offset)")
    }

    @Test("row 6: a hole (a frame gone to zeros) followed by valid frames in an older segment is corruption at the hole; salvage keeps the frames after it")
    func row6HoleInOlderSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(20))
        let inSegment1 = frames.filter { $0.segment == 1 }
        #expect(inSegment1.count > 4 && Set(frames.map(\.segment)) == [1, 2])
        let hole = inSegment1[2]
        let path = directory.segment(1)
        patchFile(path, at: hole.offset, with: zeros(hole.length))
        expectCorruption(directory, file: path, offset: hole.offset, reason: "a valid frame")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.sequences != hole.sequences }
        expectRecords(salvaged.records, all(kept), "the valid frames after the hole are kept: \(salvaged.report)")
        #expect(lost(salvaged.report.dropped) == Array(hole.sequences), "only the hole's records are lost")
        #expect(salvaged.report.dropped.first?.file == path)
        #expect(salvaged.report.dropped.first?.offset == Int64(hole.offset))
    }

    @Test("row 6: a flipped bit in any header field or in the body of a frame in the middle of the log is corruption, not a torn tail")
    func row6EveryBitOfAMiddleFrame() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Frames 0 and 2 compressed, 1 and 3 stored as is.
        let frames = try writeLog(directory.path, [
            makeFrames(1, perFrame: 6, compressible: true)[0], makeFrames(1, perFrame: 6, from: 6)[0],
            makeFrames(1, perFrame: 6, compressible: true, from: 12)[0], makeFrames(1, perFrame: 6, from: 18)[0],
        ])
        let path = directory.segment(1)
        let pristine = Array(readFile(path)[0 ..< frames.last!.end + 64])
        for middle in [frames[1], frames[2]] {
            var positions: [(Int, Int)] = []
            for byte in 0 ..< LogFormat.frameHeaderLength { for bit in 0 ..< 8 { positions.append((byte, bit)) } }
            for byte in stride(from: 32, to: middle.length, by: 3) { positions.append((byte, byte % 8)) }
            positions.append((middle.length - 1, 0))
            for (byte, bit) in positions {
                let offset = middle.offset + byte
                patchFile(path, at: offset, with: [pristine[offset] ^ (1 << UInt8(bit))])
                do {
                    let recovered = try recover(directory.path)
                    Issue.record("frame at \(middle.offset), byte \(byte) bit \(bit): recovered \(recovered.report)")
                } catch {
                    guard case let .corruption(file, at, reason) = error else {
                        Issue.record("byte \(byte) bit \(bit): \(error)")
                        continue
                    }
                    #expect(file == path)
                    #expect(at == Int64(middle.offset), "byte \(byte) bit \(bit): \(reason)")
                    #expect(reason.contains("a valid frame at"), "\(reason)")
                }
                patchFile(path, at: 0, with: pristine)
            }
        }
        expectRecords(try recover(directory.path).records, all(frames))
    }

    @Test("row 6: a bad frame followed by a valid frame in a later segment is corruption; salvage resumes there")
    func row6LaterSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(30))
        #expect(Set(frames.map(\.segment)) == [1, 2, 3])
        let bad = frames.last { $0.segment == 1 }!
        let path = directory.segment(1)
        patchFile(path, at: bad.offset + 1000, with: [readFile(path)[bad.offset + 1000] ^ 0x80])
        expectCorruption(directory, file: path, offset: bad.offset, reason: "\(SegmentName.name(2)):64")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.sequences != bad.sequences }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        #expect(salvaged.report.dropped.count == 1)
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == path && dropped.offset == Int64(bad.offset))
        #expect(dropped.bytes == segmentLength - bad.offset, "the rest of the segment")
        #expect(dropped.firstSequence == bad.firstSequence && dropped.records == bad.records.count)
        #expect(salvaged.report.frames == 29 && salvaged.report.records == 290)
        #expect(salvaged.report.segments == 3, "all three segments were read")
        #expect(salvaged.tail.segment?.number == 3 && salvaged.tail.segment?.writeOffset == frames.last!.end)
        #expect(salvaged.tail.segments.map(\.number) == [1, 2, 3])
    }

    @Test("row 7: a valid frame that is not the next in sequence is treated as a bad frame")
    func row7OutOfSequence() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(4, perFrame: 5, compressible: true))
        let target = frames[1]
        let path = directory.segment(1)
        let pristine = readFile(path)
        for wrongFirst in [target.firstSequence + 100, frames[0].firstSequence, target.firstSequence + 1] {
            // The same records, sealed as a valid frame that claims other sequence numbers.
            var decoder = FrameDecoder()
            var encoder = SegmentFrameEncoder()
            let frameBytes = Array(pristine[target.offset ..< target.end])
            let context = FrameContext(version: LogFormat.version, baseSequence: 1)
            let replaced: [UInt8] = try frameBytes.withUnsafeBytes { raw in
                let frame = try decoder.decode(raw, context: context).get()
                encoder.encode(body: frame.body, firstSequence: wrongFirst, recordCount: frame.header.recordCount,
                               durableSequence: frame.header.durableSequence, context: context, mayChain: false)
                return Array(encoder.frame.bytes)
            }
            try #require(replaced.count == target.length)
            patchFile(path, at: 0, with: pristine)
            patchFile(path, at: target.offset, with: replaced)
            expectCorruption(directory, file: path, offset: target.offset, reason: "the frame starts at sequence \(wrongFirst), expected \(target.firstSequence)")

            let salvaged = try recover(directory.path, salvage: true)
            let kept = [frames[0], frames[2], frames[3]]
            expectRecords(salvaged.records, all(kept), "first \(wrongFirst)")
            #expect(salvaged.sequences == sequences(kept))
            #expect(salvaged.report.dropped.count == 1)
            let dropped = try #require(salvaged.report.dropped.first)
            #expect(dropped.file == path && dropped.offset == Int64(target.offset) && dropped.bytes == target.length)
            #expect(dropped.firstSequence == target.firstSequence && dropped.records == target.records.count)
        }
    }

    @Test("row 8: a bad frame at the end of an older segment is corruption, as newer segments have headers")
    func row8OlderSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(20))
        #expect(Set(frames.map(\.segment)) == [1, 2])
        let bad = frames.last { $0.segment == 1 }!
        let path = directory.segment(1)
        let pristine1 = readFile(path)
        // Cut like a torn write: the frame's second half is zeros.
        patchFile(path, at: bad.offset + bad.length / 2, with: zeros(bad.length - bad.length / 2))
        expectCorruption(directory, file: path, offset: bad.offset, reason: "checksum mismatch")

        // With segment 1 repaired and segment 2 holding only its header (its frames gone to
        // zeros), segment 1's frames are all read.
        let inSegment2 = frames.filter { $0.segment == 2 }
        patchFile(directory.segment(2), at: 64, with: zeros(inSegment2.last!.end - 64))
        let pristine2 = readFile(directory.segment(2))
        patchFile(path, at: 0, with: pristine1)
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames.filter { $0.segment == 1 }))

        // When no valid frame follows the damaged one, segment 2's header still tells: it was
        // started once the damaged frame was durable, so this is corruption too.
        patchFile(path, at: bad.offset + bad.length / 2, with: zeros(bad.length - bad.length / 2))
        writeFile(directory.segment(2), pristine2)
        expectCorruption(directory, file: path, offset: bad.offset, reason: "\(SegmentName.name(2)) was started once sequence")
    }

    @Test("row 9: blank segments after the newest are spares, reused for the next segments")
    func row9Spares() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(3, perFrame: 5), background: true)
        // The writer prepared segment 2; make a second spare as the preparer would.
        do {
            let storage = try PosixFileSystem().openDirectory(directory.path)
            try storage.createFile(SegmentName.name(3), length: segmentLength).close()
        }
        #expect(directory.files() == [1, 2, 3].map { SegmentName.name($0) })
        #expect(readFile(directory.segment(2)).allSatisfy { $0 == 0 })

        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames))
        #expect(recovered.report.segments == 1 && recovered.report.tornTail == nil && recovered.report.dropped.isEmpty)
        #expect(recovered.tail.segment?.number == 1 && recovered.tail.segment?.writeOffset == frames.last!.end)
        #expect(recovered.tail.segments.map(\.number) == [1])
        #expect(recovered.tail.spares == [2, 3], "LogTail.spares: the spare segments after the newest")

        // The writer rolls over into segments 2 and 3.
        let more = try write(after: recovered, bigFrames(26, from: 15), background: true)
        #expect(Set(more.map(\.segment)) == [1, 2, 3])
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames) + all(more))
        #expect(again.sequences == Array(1 ... 275))
        #expect(again.report.segments == 3 && again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 9: a directory holding only spares starts the log in the first of them")
    func row9OnlySpares() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        do {
            let storage = try PosixFileSystem().openDirectory(directory.path)
            for number in [1, 2] as [UInt64] { try storage.createFile(SegmentName.name(number), length: segmentLength).close() }
        }
        let recovered = try recover(directory.path)
        #expect(recovered.tail.segment == nil)
        #expect(recovered.tail.spares == [1, 2])
        #expect(recovered.tail.nextSequence == 1)
        #expect(recovered.report.frames == 0 && recovered.report.records == 0 && recovered.report.segments == 0 && recovered.report.dropped.isEmpty && recovered.report.tornTail == nil)
        let frames = try write(after: recovered, makeFrames(2, perFrame: 3))
        #expect(frames.map(\.segment) == [1, 1] && frames[0].offset == 64)
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames))
        #expect(again.sequences == Array(1 ... 6))
        #expect(again.report.segments == 1 && again.report.tornTail == nil)
    }

    @Test("row 10: the newest segment's damaged header with nothing durable after it is torn: the segment goes")
    func row10TornSegmentHeader() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(3, perFrame: 5), background: true)
        #expect(directory.files().contains(SegmentName.name(2)))
        // The crash hit while segment 2's header was being written: its first 40 bytes made it.
        let header = segmentHeader(2, firstSequence: 16)
        let partial = Array(header[0 ..< 40])
        patchFile(directory.segment(2), at: 0, with: partial)
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames))
        let torn = try #require(recovered.report.tornTail)
        #expect(torn.file == directory.segment(2) && torn.offset == 0)
        #expect(torn.bytes == partial.lastIndex { $0 != 0 }! + 1)
        #expect(torn.reason.contains("checksum"), "\(torn.reason)")
        #expect(recovered.report.dropped.isEmpty)
        #expect(!directory.files().contains(SegmentName.name(2)), "the torn segment is removed; the writer prepares a new one")
        #expect(recovered.tail.spares.isEmpty)
        #expect(recovered.tail.nextSequence == 16)

        let more = try write(after: recovered, makeFrames(2, perFrame: 4, from: 15))
        #expect(more.map(\.segment) == [1, 1] && more[0].offset == frames.last!.end && more[0].firstSequence == 16,
                "the log goes on in segment 1, where it ended")
        let again = try recover(directory.path)
        expectRecords(again.records, all(frames) + all(more))
        #expect(again.sequences == Array(1 ... 23))
        #expect(again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 10: the oldest segment's header lost to a power loss, with a newer segment that proves nothing durable, is torn at the log's start")
    func row10LostOldestHeader() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Nothing synced: segment 2's header records durable sequence 1.
        let frames = try writeLog(directory.path, bigFrames(20), synced: false)
        #expect(Set(frames.map(\.segment)) == [1, 2])
        patchFile(directory.segment(1), at: 0, with: zeros(64))
        let recovered = try recover(directory.path)
        #expect(recovered.records.isEmpty)
        let torn = try #require(recovered.report.tornTail)
        #expect(torn.file == directory.segment(1) && torn.offset == 0, "\(torn)")
        #expect(recovered.report.dropped.isEmpty)
        #expect(recovered.tail.nextSequence == 1)
        #expect(!directory.files().contains(SegmentName.name(2)), "the segment started after the cut goes")

        // The log starts again and reads back.
        let more = try write(after: recovered, makeFrames(2, perFrame: 4))
        let again = try recover(directory.path)
        expectRecords(again.records, all(more))
        #expect(again.sequences == Array(1 ... 8))
        #expect(again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 11: a damaged segment header with data after it is corruption; salvage reports the header and keeps the segment's valid frames")
    func row11DamagedHeaderMiddle() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(30))
        patchFile(directory.segment(2), at: 45, with: [0x5A])  // the creation time: the checksum fails
        expectCorruption(directory, file: directory.segment(2), offset: 0, reason: "checksum mismatch")

        let salvaged = try recover(directory.path, salvage: true)
        // Only the 64-byte header is damaged: every frame after it is still read.
        expectRecords(salvaged.records, all(frames))
        #expect(salvaged.sequences == sequences(frames))
        #expect(salvaged.report.tornTail == nil)
        let dropped = salvaged.report.dropped
        #expect(dropped.count == 1)
        #expect(dropped.first?.file == directory.segment(2))
        #expect(dropped.first?.offset == 0)
        #expect(dropped.first?.reason.contains("checksum mismatch") == true)
        #expect(lost(dropped).isEmpty, "no record was lost with the header")
        #expect(dropped.first?.bytes == 64, "the damaged header is what was skipped")
        #expect(salvaged.tail.segment?.number == 3)
    }

    @Test("row 11: a damaged header of the newest segment with valid frames after it is corruption; salvage keeps the frames")
    func row11DamagedHeaderNewest() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(16))
        #expect(Set(frames.map(\.segment)) == [1, 2])
        patchFile(directory.segment(2), at: 20, with: [0x77])  // the segment number
        expectCorruption(directory, file: directory.segment(2), offset: 0, reason: "checksum mismatch")

        let salvaged = try recover(directory.path, salvage: true)
        expectRecords(salvaged.records, all(frames))
        let dropped = salvaged.report.dropped
        #expect(dropped.map(\.file) == [directory.segment(2)])
        #expect(dropped.map(\.offset) == [0])
        #expect(lost(dropped).isEmpty)
        #expect(dropped.first?.bytes == 64)
        // The log goes on in that segment: nothing recreates it (that would erase its frames).
        #expect(salvaged.tail.segment?.number == 2)
    }

    @Test("row 11: an all-zero header of the newest segment with valid frames after it is corruption, and salvage accounts for it")
    func row11ZeroedHeaderNewest() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(16))
        let inSegment1 = frames.filter { $0.segment == 1 }
        #expect(Set(frames.map(\.segment)) == [1, 2])
        patchFile(directory.segment(2), at: 0, with: zeros(64))
        // The damage is segment 2's header: its frames are not silently ignored.
        expectCorruption(directory, file: directory.segment(2), offset: 0, reason: "all zeros but frames follow")
        #expect(inSegment1.count > 0)

        let salvaged = try recover(directory.path, salvage: true)
        for entry in salvaged.report.dropped {
            #expect(entry.bytes >= 0, "a negative byte count: \(entry)")
            #expect(entry.offset >= 0)
        }
        #expect(lost(salvaged.report.dropped).isEmpty, "no record was lost: \(salvaged.report)")
        expectRecords(salvaged.records, all(frames))
        #expect(salvaged.sequences == Array(1 ... 160))
        #expect(salvaged.tail.nextSequence == 161)
        // The log continues after the records just read, not over them: what salvage kept is
        // still there for the next open.
        let more = try write(after: salvaged, [[.cancel(id: Array("after".utf8))]])
        #expect(more[0].firstSequence == 161)
        let again = try recover(directory.path, salvage: true)
        expectRecords(again.records, all(frames) + all(more), "\(again.report)")
    }

    @Test("row 12: a missing segment number between two segments is corruption; salvage reports it")
    func row12MissingSegment() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(30))
        #expect(Set(frames.map(\.segment)) == [1, 2, 3])
        try PosixFileSystem().openDirectory(directory.path).remove(SegmentName.name(2))
        expectCorruption(directory, file: directory.segment(3), offset: 0, reason: "segments 2 ..< 3 are missing")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.segment != 2 }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        let dropped = salvaged.report.dropped
        #expect(!dropped.isEmpty)
        #expect(dropped.allSatisfy { $0.file == directory.segment(3) && $0.offset == 0 && $0.bytes == 0 })
        #expect(dropped.contains { $0.reason.contains("segments 2 ..< 3 are missing") })
        #expect(lost(dropped) == sequences(frames.filter { $0.segment == 2 }))
        #expect(salvaged.tail.segment?.number == 3 && salvaged.tail.segments.map(\.number) == [1, 3])
    }

    @Test("row 13: a segment whose first sequence number is not where the previous ended is corruption; salvage reports the lost numbers")
    func row13SequenceGap() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(30))
        // Segment 1's last frame is gone (zeros): segment 2 starts after records nobody can read.
        let gone = frames.last { $0.segment == 1 }!
        patchFile(directory.segment(1), at: gone.offset, with: zeros(gone.length))
        let second = frames.first { $0.segment == 2 }!
        expectCorruption(directory, file: directory.segment(2), offset: 0,
                         reason: "the segment starts at sequence \(second.firstSequence), expected \(gone.firstSequence)")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = frames.filter { $0.sequences != gone.sequences }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        #expect(salvaged.report.dropped.count == 1)
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == directory.segment(2) && dropped.offset == 0 && dropped.bytes == 0)
        #expect(dropped.firstSequence == gone.firstSequence && dropped.records == gone.records.count)
        #expect(salvaged.report.segments == 3)
    }

    @Test("row 14: a segment header naming another segment number or size than its file is corruption")
    func row14HeaderMismatch() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, bigFrames(30))
        let path = directory.segment(2)
        let first = frames.first { $0.segment == 2 }!.firstSequence
        let pristine = Array(readFile(path)[0 ..< 64])
        #expect(pristine == segmentHeader(2, firstSequence: first))

        patchFile(path, at: 0, with: segmentHeader(7, firstSequence: first))
        expectCorruption(directory, file: path, offset: 0, reason: "the header says segment 7")
        patchFile(path, at: 0, with: segmentHeader(2, firstSequence: first, length: 2 * segmentLength))
        expectCorruption(directory, file: path, offset: 0, reason: "of \(2 * segmentLength) bytes")
        patchFile(path, at: 0, with: pristine)
        expectRecords(try recover(directory.path).records, all(frames))
        // A file cut short.
        #expect(truncate(path, off_t(segmentLength / 2)) == 0)
        expectCorruption(directory, file: path, offset: 0, reason: "the file is \(SegmentName.name(2)) of \(segmentLength / 2) bytes")
    }

    @Test("row 15: an all-zero segment header before segments with data is corruption")
    func row15BlankBeforeData() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        _ = try writeLog(directory.path, bigFrames(30))
        patchFile(directory.segment(2), at: 0, with: zeros(64))
        expectCorruption(directory, file: directory.segment(2), offset: 0, reason: "all zeros")
    }

    @Test("row 16: wal-*.log.tmp files (interrupted preparations) are deleted")
    func row16TemporaryFiles() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, makeFrames(2, perFrame: 3))
        let storage = try PosixFileSystem().openDirectory(directory.path)
        try storage.createFile(SegmentName.name(2) + ".tmp", length: 4096).close()
        try storage.createFile(SegmentName.name(9) + ".tmp", length: 16).close()
        patchFile(directory.appending(SegmentName.name(2) + ".tmp"), at: 0, with: [1, 2, 3])
        try storage.createFile("notes.txt", length: 10).close()
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(frames))
        #expect(directory.files() == ["notes.txt", SegmentName.name(1)])
        // Nothing of them comes back.
        _ = try write(after: recovered, [])
        #expect(!directory.files().contains { $0.hasSuffix(".tmp") })
    }

    @Test("row 17: another holder of the directory's lock makes a second lock fail with .locked")
    func row17Locked() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let first = try PosixFileSystem().openDirectory(directory.path)
        let second = try PosixFileSystem().openDirectory(directory.path)
        try first.lock()
        #expect(throws: StorageError.locked(path: directory.path)) { try second.lock() }
        #expect(directory.files().contains("LOCK"))
        // Still held: a third try fails too; once released, the other can take it.
        #expect(throws: StorageError.locked(path: directory.path)) { try second.lock() }
        first.unlock()
        try second.lock()
        #expect(throws: StorageError.locked(path: directory.path)) { try first.lock() }
        second.unlock()
    }
}

// MARK: Format version 2: chains, compact frames, version 1 directories

/// `count` one-record frames of the benchmark's order timers (16-byte ids, 128-byte JSON).
private func orderFrames(_ count: Int, perFrame: Int = 1, from start: Int = 0) -> [[LogRecord]] {
    var payloads = BenchOrderPayloads(seed: 42)
    var random = SeededRandom(seed: 7)
    let records: [LogRecord] = (0 ..< start + count * perFrame).map { i in
        .schedule(id: benchOrderID(i), deadline: created + 1_800_000 + Int64(random.next() % 60_000), attempt: 1, payload: payloads.next(order: i))
    }
    return (0 ..< count).map { Array(records[start + $0 * perFrame ..< start + ($0 + 1) * perFrame]) }
}

@Suite("Log recovery, format 2: chained frames, compact headers, version 1 directories")
struct ChainRecoveryTests {
    @Test("one record per frame costs at most 64 bytes of log per order timer; 1000 per frame at most 53")
    func oneRecordPerFrameIsCompact() throws {
        for (perFrame, limit) in [(1, 64.0), (1000, 53.0)] {
            let directory = TemporaryDirectory()
            defer { directory.remove() }
            let frameCount = perFrame == 1 ? 20_000 : 20
            let frames = try writeLog(directory.path, orderFrames(frameCount, perFrame: perFrame), segmentLength: 4 << 20, synced: false, chained: true)
            let bytes = frames.reduce(0) { $0 + $1.length }
            let perTimer = Double(bytes) / Double(frameCount * perFrame)
            #expect(perTimer <= limit, "\(perFrame) per frame: \(perTimer) B per timer")
            let recovered = try recover(directory.path)
            expectRecords(recovered.records, all(frames))
            #expect(recovered.report.logBytes == bytes && recovered.report.dropped.isEmpty && recovered.report.tornTail == nil)
        }
    }

    @Test("torn tail inside a chain: a chained last frame cut at every byte is cut, the chain before it is kept")
    func tornTailInsideAChainIsCut() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, orderFrames(8), segmentLength: 64 << 10, chained: true)
        let last = frames.last!
        let path = directory.segment(1)
        let pristine = Array(readFile(path)[0 ..< last.end + 256])
        #expect(pristine[last.offset] == LogFormat.compactFrameMagic && pristine[last.offset + 1] & LogFormat.flagChained != 0,
                "the last frame is compact and chained")
        for cut in 1 ..< last.length {
            patchFile(path, at: 0, with: pristine)
            patchFile(path, at: last.offset + cut, with: zeros(last.length - cut))
            let recovered = try recover(directory.path)
            expectRecords(recovered.records, all(Array(frames.dropLast())), "cut at \(cut)")
            let torn = try #require(recovered.report.tornTail, "cut at \(cut)")
            #expect(torn.offset == Int64(last.offset) && torn.bytes <= cut && recovered.tail.segment?.writeOffset == last.offset)
        }
        // And the log continues there: a new writer starts a new chain after the cut.
        patchFile(path, at: 0, with: pristine)
        patchFile(path, at: last.offset + 3, with: zeros(last.length - 3))
        let recovered = try recover(directory.path)
        let more = try write(after: recovered, orderFrames(3, from: 8), segmentLength: 64 << 10, chained: true)
        #expect(more[0].offset == last.offset)
        #expect(readFile(path)[more[0].offset + 1] & LogFormat.flagChained == 0, "a writer's first frame starts a chain")
        expectRecords(try recover(directory.path).records, all(Array(frames.dropLast())) + all(more))
    }

    @Test("corruption inside a chain: proven by a later chained frame; salvage reports the damaged frame and, apart, the chained frames it takes with it")
    func chainedFramesAfterDamageAreReportedAsDropped() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Six chained one-record frames, a big (unchained) frame, then chained frames again.
        let big = makeFrames(1, perFrame: 10, payload: 16 << 10, seed: 5, from: 100)  // ~96 KiB raw
        let frames = try writeLog(directory.path, orderFrames(6) + big + orderFrames(3, from: 6), chained: true)
        let path = directory.segment(1)
        let file = readFile(path)
        #expect(frames[1 ..< 6].allSatisfy { file[$0.offset + 1] & LogFormat.flagChained != 0 })
        #expect(file[frames[6].offset + 5] & LogFormat.flagChained == 0, "the big frame starts a chain (long header: flags at 5)")
        let bad = frames[2]
        patchFile(path, at: bad.offset + bad.length - 2, with: [file[bad.offset + bad.length - 2] ^ 0x10])
        // Frames 3 ... 5 cannot be decoded, but their checksums hold and they were written once
        // frame 2 was synced: corruption, named at frame 2.
        expectCorruption(directory, file: path, offset: bad.offset, reason: "a valid frame at")

        let salvaged = try recover(directory.path, salvage: true)
        let kept = [frames[0], frames[1]] + Array(frames[6...])
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.sequences == sequences(kept))
        #expect(salvaged.report.dropped.count == 2, "\(salvaged.report)")
        let damaged = try #require(salvaged.report.dropped.first)
        #expect(damaged.file == path && damaged.offset == Int64(bad.offset) && damaged.bytes == bad.length)
        #expect(damaged.firstSequence == bad.firstSequence && damaged.records == 1)
        let orphans = try #require(salvaged.report.dropped.last)
        #expect(orphans.file == path && orphans.offset == Int64(frames[3].offset))
        #expect(orphans.bytes == frames[6].offset - frames[3].offset, "every byte up to the next chain's start")
        #expect(orphans.firstSequence == frames[3].firstSequence && orphans.records == 3)
        #expect(orphans.reason.contains("chained"))
        #expect(lost(salvaged.report.dropped) == Array(frames[2].firstSequence ..< frames[6].firstSequence), "every lost record accounted for")
    }

    @Test("a chained frame after damage in an older segment: salvage resumes at the next segment's first (unchained) frame")
    func chainRunningToTheSegmentEndIsDroppedToIt() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, orderFrames(1500), segmentLength: 64 << 10, chained: true)
        #expect(Set(frames.map(\.segment)).count >= 2)
        let inFirst = frames.filter { $0.segment == 1 }
        let bad = inFirst[inFirst.count / 2]
        let path = directory.segment(1)
        patchFile(path, at: bad.offset + 1, with: [readFile(path)[bad.offset + 1] ^ 0x40])
        expectCorruption(directory, file: path, offset: bad.offset, reason: "a valid frame at")
        let salvaged = try recover(directory.path, salvage: true)
        let firstOfNext = frames.first { $0.segment == 2 }!
        let kept = inFirst.filter { $0.offset < bad.offset } + frames.filter { $0.segment >= 2 }
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.report.dropped.count == 2)
        #expect(salvaged.report.dropped.last?.bytes == inFirst.last!.end - inFirst[inFirst.count / 2 + 1].offset,
                "the chained frames to the last one of the segment, not its zeros")
        #expect(lost(salvaged.report.dropped) == Array(bad.firstSequence ..< firstOfNext.firstSequence))
    }

    @Test("torn tail vs corruption with chains: damage followed by chained frames that prove nothing durable is a torn tail")
    func unprovenDamageInsideAChainIsATornTail() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let frames = try writeLog(directory.path, orderFrames(10), synced: false, chained: true)
        let path = directory.segment(1)
        let bad = frames[4]
        patchFile(path, at: bad.offset, with: zeros(bad.length))
        let recovered = try recover(directory.path)
        expectRecords(recovered.records, all(Array(frames[..<4])))
        #expect(recovered.report.tornTail?.offset == Int64(bad.offset))
    }

    @Test("version 1 directory: its frames are read; the writer goes on in a new version 2 segment, never appending to the old one")
    func version1DirectoryOpens() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // A version 1 segment, as version 1 wrote it: long version 1 frames, then a close mark.
        let v1Frames = makeFrames(4, perFrame: 5, compressible: true)
        var image = [UInt8](repeating: 0, count: segmentLength)
        image.withUnsafeMutableBytes {
            SegmentHeader(segmentNumber: 1, firstSequence: 1, segmentLength: UInt64(segmentLength), createdMilliseconds: created,
                          version: 1).write(to: $0.baseAddress!)
        }
        var offset = LogFormat.segmentHeaderLength
        var sequence: UInt64 = 1
        var encoder = FrameEncoder()
        for frame in v1Frames + [[]] {
            var records = RecordEncoder()
            for record in frame { records.append(record) }
            encoder.encode(body: records.buffer.bytes, firstSequence: sequence, recordCount: frame.count, durableSequence: sequence, version: 1)
            image.replaceSubrange(offset ..< offset + encoder.frame.count, with: encoder.frame.bytes)
            offset += encoder.frame.count
            sequence += UInt64(frame.count)
        }
        let v1Path = directory.segment(1)
        let descriptor = open(v1Path, O_CREAT | O_WRONLY, 0o644)
        _ = image.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)

        let recovered = try recover(directory.path)
        expectRecords(recovered.records, v1Frames.flatMap { $0 })
        #expect(recovered.report.frames == 5 && recovered.tail.nextSequence == 21)
        #expect(recovered.tail.segment?.header?.version == 1)
        let more = try write(after: recovered, orderFrames(3), chained: true)
        #expect(more.allSatisfy { $0.segment == 2 }, "a new segment, not the version 1 one")
        #expect(Array(readFile(v1Path)[0 ..< offset]) == Array(image[0 ..< offset]) && readFile(v1Path)[offset...].allSatisfy { $0 == 0 },
                "the version 1 segment is untouched")
        let segment2 = readFile(directory.segment(2))
        #expect(segment2.withUnsafeBytes { SegmentHeader.parse($0) }.validVersion == 2)
        let reopened = try recover(directory.path)
        expectRecords(reopened.records, v1Frames.flatMap { $0 } + all(more))
        #expect(reopened.sequences == Array(1 ... 23))

        // A version this build does not know is refused by name.
        patchFile(v1Path, at: 0, with: Array(image[0 ..< 64]).enumerated().map { $0.offset == 8 ? 3 : $0.element })
        let resealed = readFile(v1Path)[0 ..< 60].withUnsafeBytes { crc32c($0) }
        patchFile(v1Path, at: 60, with: withUnsafeBytes(of: resealed.littleEndian) { Array($0) })
        expectCorruption(directory, file: v1Path, offset: 0, reason: "segment version 3 is not supported")
    }
}

private extension SegmentHeader.ParseResult {
    var validVersion: UInt8? { if case let .valid(header) = self { return header.version } else { return nil } }
}
