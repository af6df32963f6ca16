import HourglassCore
import HourglassStorage
import HourglassTestSupport
import HourglassTesting
import Testing

extension RecoveryTests {
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

    @Test("row 8: a bad frame at the end of an older segment is corruption, as newer segments have headers; with nothing intact after it, salvage cuts there")
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
        expectCorruption(directory, file: path, offset: bad.offset, reason: "no unchained frame follows to resume at")

        // And salvage, with nothing intact after the damage to resume at, cuts the log there and
        // reports the loss.
        let cutBytes = (readFile(path).lastIndex { $0 != 0 }! + 1 - bad.offset) + (readFile(directory.segment(2)).lastIndex { $0 != 0 }! + 1)
        let salvaged = try recover(directory.path, salvage: true)
        let kept = Array(frames.filter { $0.segment == 1 }.dropLast())
        expectRecords(salvaged.records, all(kept))
        #expect(salvaged.report.dropped.count == 1, "\(salvaged.report)")
        let dropped = try #require(salvaged.report.dropped.first)
        #expect(dropped.file == path && dropped.offset == Int64(bad.offset) && dropped.bytes == segmentLength - bad.offset)
        #expect(dropped.reason.contains("\(SegmentName.name(2)) was started once sequence"), "\(dropped.reason)")
        let torn = try #require(salvaged.report.tornTail, "the cut is reported")
        #expect(torn.file == path && torn.offset == Int64(bad.offset) && torn.bytes == cutBytes, "\(torn)")
        #expect(!directory.files().contains(SegmentName.name(2)), "the segment after the cut goes")
        #expect(salvaged.tail.segment?.number == 1 && salvaged.tail.segment?.writeOffset == bad.offset)
        #expect(salvaged.tail.nextSequence == bad.firstSequence)

        let again = try recover(directory.path)
        expectRecords(again.records, all(kept))
        #expect(again.report.tornTail == nil && again.report.dropped.isEmpty)
    }
}
