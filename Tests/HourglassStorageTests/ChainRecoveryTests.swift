import HourglassCore
import HourglassStorage
import HourglassTestSupport
import HourglassTesting
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Log recovery, format 2: chained frames, compact headers, version 1 directories")
struct ChainRecoveryTests {
    // RECOVERY row 2, over compact chained frames: everything is replayed.
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

    @Test("row 19: torn tail inside a chain: a chained last frame cut at every byte is cut, the chain before it is kept")
    func row19TornTailInsideAChainIsCut() throws {
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

    @Test("row 18: corruption inside a chain: proven by a later chained frame; salvage reports the damaged frame and, apart, the chained frames it takes with it")
    func row18ChainedFramesAfterDamageAreReportedAsDropped() throws {
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

    @Test("row 18: a chained frame after damage in an older segment: salvage resumes at the next segment's first (unchained) frame")
    func row18ChainRunningToTheSegmentEndIsDroppedToIt() throws {
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

    @Test("row 18: damage inside a chain with only chained frames after it: salvage cuts the log there and reports the loss")
    func row18ChainedFramesToTheEndAreCutBySalvage() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // One chain: the writer's first frame, then seven chained ones, each synced before the next.
        let frames = try writeLog(directory.path, orderFrames(8), chained: true)
        let path = directory.segment(1)
        let file = readFile(path)
        #expect(frames[1...].allSatisfy { file[$0.offset + 1] & LogFormat.flagChained != 0 })
        let bad = frames[3]
        patchFile(path, at: bad.offset + bad.length - 2, with: [file[bad.offset + bad.length - 2] ^ 0x10])
        // Frames 4 ... 7 prove frame 3 durable, but none of them starts a chain to resume at.
        expectCorruption(directory, file: path, offset: bad.offset, reason: "no unchained frame follows to resume at")

        let damagedEnd = readFile(path).lastIndex { $0 != 0 }! + 1
        let salvaged = try recover(directory.path, salvage: true)
        expectRecords(salvaged.records, all(Array(frames[..<3])))
        #expect(salvaged.sequences == sequences(Array(frames[..<3])))
        #expect(salvaged.report.dropped.count == 1, "\(salvaged.report)")
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == path && dropped.offset == Int64(bad.offset) && dropped.bytes == segmentLength - bad.offset)
        #expect(dropped.reason.contains("a valid chained frame at"), "\(dropped.reason)")
        let torn = try #require(salvaged.report.tornTail)
        #expect(torn.file == path && torn.offset == Int64(bad.offset) && torn.bytes == damagedEnd - bad.offset)
        #expect(salvaged.tail.segment?.writeOffset == bad.offset && salvaged.tail.nextSequence == bad.firstSequence)
        #expect(readFile(path)[bad.offset...].allSatisfy { $0 == 0 }, "the cut is zeroed")

        let again = try recover(directory.path)
        expectRecords(again.records, all(Array(frames[..<3])))
        #expect(again.report.tornTail == nil && again.report.dropped.isEmpty)
    }

    @Test("row 19: torn tail vs corruption with chains: damage followed by chained frames that prove nothing durable is a torn tail")
    func row19UnprovenDamageInsideAChainIsATornTail() throws {
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

    @Test("row 20: version 1 directory: its frames are read; the writer goes on in a new segment of the current version, never appending to the old one")
    func row20Version1DirectoryOpens() throws {
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
        #expect(segment2.withUnsafeBytes { SegmentHeader.parse($0) }.validVersion == LogFormat.version)
        let reopened = try recover(directory.path)
        expectRecords(reopened.records, v1Frames.flatMap { $0 } + all(more))
        #expect(reopened.sequences == Array(1 ... 23))

        // A version this build does not know is refused by name.
        patchFile(v1Path, at: 0, with: Array(image[0 ..< 64]).enumerated().map { $0.offset == 8 ? 4 : $0.element })
        let resealed = readFile(v1Path)[0 ..< 60].withUnsafeBytes { crc32c($0) }
        patchFile(v1Path, at: 60, with: withUnsafeBytes(of: resealed.littleEndian) { Array($0) })
        expectCorruption(directory, file: v1Path, offset: 0, reason: "segment version 4 is not supported")
    }
}
