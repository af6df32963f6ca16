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

extension RecoveryTests {
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
