import HourglassCore
import HourglassStorage
import HourglassTestSupport
import Testing
import HourglassTesting

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
}
