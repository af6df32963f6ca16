import HourglassCore

/// What recovery found, dropped and cut: the LevelDB habit of accounting for every byte.
public struct RecoveryReport: Sendable, Equatable, CustomStringConvertible {
    /// A torn tail cut off the newest segment: a frame the crash interrupted.
    public struct TornTail: Sendable, Equatable {
        public var file: String
        public var offset: Int64
        /// Non-zero bytes discarded from `offset` on.
        public var bytes: Int
        public var reason: String
    }

    /// Damage skipped in salvage mode, and the records lost with it.
    public struct Dropped: Sendable, Equatable {
        public var file: String
        public var offset: Int64
        public var bytes: Int
        /// The sequence numbers lost: `firstSequence ..< firstSequence + records`.
        public var firstSequence: UInt64
        public var records: Int
        public var reason: String
    }

    public var segments = 0
    public var frames = 0
    /// Records read (including those before the checkpoint's sequence, which are skipped).
    public var records = 0
    /// Records applied (at or after the checkpoint's sequence).
    public var applied = 0
    public var tornTail: TornTail? = nil
    public var dropped: [Dropped] = []
    /// Bytes of the frames read (as stored) and of their bodies (decompressed).
    public var logBytes = 0
    public var logRawBytes = 0
    /// Segment files in the directory (spares included).
    public var segmentFiles = 0
    /// Segments that ended before the checkpoint's start sequence, deleted during recovery.
    public var obsoleteSegments = 0
    /// The checkpoint recovery started from (its start sequence), if any.
    public var checkpointSequence: UInt64? = nil
    /// Timers loaded from the checkpoint.
    public var checkpointTimers = 0
    /// Damaged checkpoints passed over for an older one.
    public var damagedCheckpoints: [String] = []

    public init() {}

    public var description: String {
        var text = ""
        if let checkpointSequence { text += "checkpoint at \(checkpointSequence) with \(checkpointTimers) timers; " }
        for damaged in damagedCheckpoints { text += "passed over damaged checkpoint \(damaged); " }
        text += "\(segments) segments, \(frames) frames, \(records) records (\(applied) applied)"
        if let tornTail { text += "; torn tail cut at \(tornTail.file):\(tornTail.offset) (\(tornTail.bytes) bytes: \(tornTail.reason))" }
        for dropped in dropped {
            text += "; DROPPED \(dropped.bytes) bytes at \(dropped.file):\(dropped.offset), sequence numbers \(dropped.firstSequence) ..< \(dropped.firstSequence + UInt64(dropped.records)) (\(dropped.reason))"
        }
        return text
    }
}

/// Where the writer continues after recovery.
package struct LogTail {
    /// The newest segment with a valid header, opened for writing, and the end of its frames.
    package var segment: (number: UInt64, file: any StorageFile, writeOffset: Int)?
    /// Spare segments (prepared, never written) after it, by number.
    package var spares: [UInt64]
    package var nextSequence: UInt64
    /// Every segment with a valid header and the sequence number its records start at.
    package var segments: [(number: UInt64, firstSequence: UInt64)]
    /// The highest segment number in the directory: a new segment gets a higher one.
    package var highestSegment: UInt64
}

/// Reads every segment in order, checks every frame, applies the records, and decides what
/// damage is a torn tail (cut) and what is corruption (refused, or skipped and reported in
/// salvage mode). The cases and decisions are the table in `Docs/RECOVERY.md`.
package struct LogRecovery {
    package let directory: any StorageDirectory
    /// Records before this sequence number are read and checked but not applied (a checkpoint
    /// holds their effect).
    package let startSequence: UInt64
    package let salvage: Bool
    /// Change nothing: no torn tail is cut, no file deleted (inspection tools).
    package let readOnly: Bool

    package init(directory: any StorageDirectory, startSequence: UInt64 = 1, salvage: Bool = false, readOnly: Bool = false) {
        self.directory = directory
        self.startSequence = startSequence
        self.salvage = salvage
        self.readOnly = readOnly
    }

    private struct Segment {
        var number: UInt64
        var name: String
        var file: any StorageFile
        var header: SegmentHeader.ParseResult
        var hasHeader: Bool { if case .blank = header { return false } else { return true } }
    }

    private struct Position {
        var index: Int
        var offset: Int
        var firstSequence: UInt64
    }

    /// Runs recovery, calling `apply` for every record at or after `startSequence`, in order.
    package func run(report: inout RecoveryReport, apply: (RecordView, UInt64) -> Void) throws(StorageError) -> LogTail {
        var segments: [Segment] = []
        defer { for segment in segments { segment.file.close() } }
        var numbered: [(UInt64, String)] = []
        for name in try directory.list() {
            if name.hasPrefix(SegmentName.prefix) && name.hasSuffix(".tmp") {
                if !readOnly { try directory.remove(name) }  // a segment whose preparation was interrupted
            } else if let number = SegmentName.number(name) {
                numbered.append((number, name))
            }
        }
        numbered.sort { $0.0 < $1.0 }
        for (number, name) in numbered {
            let file = try directory.openFile(name, writable: !readOnly)
            segments.append(Segment(number: number, name: name, file: file, header: file.withBytes { SegmentHeader.parse($0) }))
        }
        // With a checkpoint at `startSequence`, segments that end before it are covered: skip
        // and delete them. The segment holding `startSequence` must exist if any segment does.
        if startSequence > 1 {
            let holding = segments.lastIndex { segment in
                if case let .valid(header) = segment.header { return header.firstSequence <= startSequence }
                return false
            }
            if let holding {
                for segment in segments[..<holding] {
                    segment.file.close()
                    if !readOnly { try directory.remove(segment.name) }
                    report.obsoleteSegments += 1
                }
                segments.removeFirst(holding)
            } else if let first = segments.first(where: { if case .valid = $0.header { return true } else { return false } }),
                      case let .valid(header) = first.header {
                throw StorageError.corruption(
                    file: first.file.path, offset: 0,
                    reason: "the checkpoint needs the log from sequence \(startSequence), but the oldest segment starts at \(header.firstSequence): a segment is missing")
            }
        }
        // The log's data ends in the newest segment with a header; blank ones after it are spares.
        let lastWithHeader = segments.lastIndex { $0.hasHeader } ?? -1

        var decoder = FrameDecoder()
        var expected: UInt64? = nil
        var known: [(number: UInt64, firstSequence: UInt64)] = []
        var used = Set<Int>()  // segments whose frames were read
        var tail: (index: Int, offset: Int)? = nil
        var resume: Position? = nil
        var zeroedSpares: [Int] = []  // newest segments whose torn header was zeroed

        var index = 0
        segmentLoop: while index < segments.count {
            let segment = segments[index]
            let length = segment.file.length
            var offset = LogFormat.segmentHeaderLength
            // The first frame to read when salvage resumes in this segment.
            var resumeOffset: Int? = nil
            if let position = resume, position.index == index {
                resumeOffset = position.offset
                resume = nil
            } else if index > 0 && segment.number != segments[index - 1].number + 1 {
                try corruption(segment, 0, "segments \(segments[index - 1].number + 1) ..< \(segment.number) are missing", report: &report)
            }
            // The header. A damaged one is torn only in the newest segment with nothing after it;
            // otherwise salvage reads on from the segment's first valid frame.
            var headerProblem: String? = nil
            switch segment.header {
            case .blank:
                if index > lastWithHeader && resumeOffset == nil {
                    index += 1
                    continue segmentLoop  // a spare
                }
                headerProblem = "the segment header is all zeros but newer segments follow"
            case let .invalid(reason):
                if index == lastWithHeader && resumeOffset == nil && nextValidFrame(segments, index, LogFormat.segmentHeaderLength, after: 0) == nil {
                    // The newest segment's header was torn as it was started: nothing was
                    // written after it, so it becomes a spare again.
                    let cut = try zero(segment.file, from: 0)
                    report.tornTail = .init(file: segment.file.path, offset: 0, bytes: cut, reason: reason)
                    zeroedSpares.append(index)
                    index += 1
                    continue segmentLoop
                }
                headerProblem = reason
            case let .valid(header):
                if header.segmentNumber != segment.number || header.segmentLength != UInt64(length) {
                    headerProblem = "the header says segment \(header.segmentNumber) of \(header.segmentLength) bytes, the file is \(segment.name) of \(length) bytes"
                } else {
                    if resumeOffset == nil, let expectedSequence = expected, header.firstSequence != expectedSequence {
                        try corruption(segment, 0, "the segment starts at sequence \(header.firstSequence), expected \(expectedSequence)",
                                       lost: header.firstSequence > expectedSequence ? (expectedSequence, header.firstSequence) : nil, report: &report)
                    }
                    if resumeOffset == nil || expected == nil { expected = header.firstSequence }
                    if known.last?.number != segment.number { known.append((segment.number, header.firstSequence)) }
                }
            }
            if let headerProblem {
                if resumeOffset == nil {
                    // Salvage only: read on from the segment's first valid frame, if any.
                    let first = nextValidFrame(segments, index, LogFormat.segmentHeaderLength, after: expected ?? 0)
                    let bytes = first.map { $0.index == index ? $0.offset : length } ?? length
                    try corruption(segment, 0, headerProblem, bytes: bytes, report: &report)
                    guard let first, first.index == index else {
                        index += 1
                        continue segmentLoop
                    }
                    if let expectedSequence = expected, first.firstSequence > expectedSequence {
                        report.dropped[report.dropped.count - 1].firstSequence = expectedSequence
                        report.dropped[report.dropped.count - 1].records = Int(first.firstSequence - expectedSequence)
                    }
                    expected = first.firstSequence
                    resumeOffset = first.offset
                }
            }
            if let resumeOffset { offset = resumeOffset }
            used.insert(index)
            report.segments += 1
            // The newest segment read: the log ends in it.
            let isLast = index >= lastWithHeader

            frames: while true {
                while offset + LogFormat.frameHeaderLength <= length {
                    if segment.file.withBytes({ $0[offset ..< offset + LogFormat.frameHeaderLength].allSatisfy { $0 == 0 } }) { break }
                    let result = segment.file.withBytes { decoder.decode(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                    let reason: String
                    switch result {
                    case let .success(frame) where expected == nil || frame.header.firstSequence == expected!:
                        var sequence = frame.header.firstSequence
                        _ = try? RecordDecoder.forEach(in: frame.body) { record in
                            if sequence >= startSequence {
                                apply(record, sequence)
                                report.applied += 1
                            }
                            sequence += 1
                        }
                        report.frames += 1
                        report.logBytes += frame.header.frameLength
                        report.logRawBytes += frame.header.rawLength
                        report.records += frame.header.recordCount
                        expected = frame.header.nextSequence
                        offset += frame.header.frameLength
                        continue
                    case let .success(frame):
                        reason = "the frame starts at sequence \(frame.header.firstSequence), expected \(expected!)"
                    case let .failure(failure):
                        reason = failure.description
                    }
                    // A damaged frame. If a valid frame follows anywhere, this is corruption;
                    // otherwise, in the newest segment, it is a torn tail.
                    if let next = nextValidFrame(segments, index, offset + 1, after: expected ?? 0) {
                        try corruption(segment, offset, "\(reason); a valid frame follows at \(segments[next.index].name):\(next.offset), so this is not a torn write",
                                       lost: (expected ?? next.firstSequence, next.firstSequence), bytes: next.index == index ? next.offset - offset : length - offset, report: &report)
                        expected = next.firstSequence
                        if next.index == index {
                            offset = next.offset
                            continue
                        }
                        resume = next
                        index = next.index
                        continue segmentLoop
                    }
                    if isLast {
                        let cut = try zero(segment.file, from: offset)
                        report.tornTail = .init(file: segment.file.path, offset: Int64(offset), bytes: cut, reason: reason)
                        tail = (index, offset)
                        break segmentLoop
                    }
                    try corruption(segment, offset, "\(reason); newer segments follow, so this is not a torn write",
                                   bytes: length - offset, report: &report)
                    break frames
                }
                // The frames stop here. Zeros must follow; a valid frame after them in this segment
                // means damage (a zeroed stretch) in the middle.
                let next = nextValidFrame(segments, index, offset + 1, after: expected ?? 0)
                if let next, next.index == index || isLast {
                    try corruption(segment, offset, "unreadable bytes before a valid frame at \(segments[next.index].name):\(next.offset)",
                                   lost: (expected ?? next.firstSequence, next.firstSequence),
                                   bytes: next.index == index ? next.offset - offset : length - offset, report: &report)
                    expected = next.firstSequence
                    if next.index == index {
                        offset = next.offset
                        continue frames
                    }
                    resume = next
                    index = next.index
                    continue segmentLoop
                }
                if isLast {
                    let cut = try zero(segment.file, from: offset)
                    if cut > 0 {
                        report.tornTail = .init(file: segment.file.path, offset: Int64(offset), bytes: cut, reason: "an incomplete frame after the last complete one")
                    }
                    tail = (index, offset)
                    break segmentLoop
                }
                break frames
            }
            index += 1
        }

        var spares: [UInt64] = []
        for (i, segment) in segments.enumerated() where !used.contains(i) {
            if case .blank = segment.header, i > lastWithHeader { spares.append(segment.number) }
            if zeroedSpares.contains(i) { spares.append(segment.number) }
        }
        spares.sort()
        var result = LogTail(segment: nil, spares: spares, nextSequence: expected ?? startSequence, segments: known,
                             highestSegment: segments.last?.number ?? 0)
        if let tail, !readOnly {
            let segment = segments[tail.index]
            result.segment = (segment.number, try directory.openFile(segment.name, writable: true), tail.offset)
        }
        report.segmentFiles = segments.count
        return result
    }

    /// Damage that is not a torn tail: an error naming the file and offset, or in salvage mode
    /// an entry in the report (the sequence numbers `lost.0 ..< lost.1` are gone).
    private func corruption(
        _ segment: Segment, _ offset: Int, _ reason: String, lost: (UInt64, UInt64)? = nil, bytes: Int = 0,
        report: inout RecoveryReport
    ) throws(StorageError) {
        guard salvage else {
            throw StorageError.corruption(file: segment.file.path, offset: Int64(offset), reason: reason + " (open with salvage to skip the damage and report what is lost)")
        }
        let (first, end) = lost ?? (0, 0)
        report.dropped.append(.init(file: segment.file.path, offset: Int64(offset), bytes: bytes,
                                    firstSequence: first, records: Int(end - first), reason: reason))
    }

    /// The first frame at or after (`index`, `offset`) that decodes and whose records come after
    /// sequence `after` (in this segment from `offset`, in later ones from their first frame).
    private func nextValidFrame(_ segments: [Segment], _ index: Int, _ offset: Int, after: UInt64) -> Position? {
        var decoder = FrameDecoder()
        // Spares are read too (a segment whose header was destroyed looks like one), but the
        // file system tells that a true spare holds no data, so that costs one call.
        for i in index ..< segments.count {
            let file = segments[i].file
            let start = i == index ? max(offset, LogFormat.segmentHeaderLength) : LogFormat.segmentHeaderLength
            let found = file.withBytes { bytes -> (Int, UInt64)? in
                var position = start
                let end = bytes.count - LogFormat.frameHeaderLength
                while position <= end {
                    // Skip never-written stretches of the file (holes of the preallocated
                    // segment) by asking the file system where data is, before touching a block
                    // (reading a hole through the mapping would fill the page cache with zeros),
                    // and zeros a word at a time.
                    if position & (LogRecovery.block - 1) == 0 {
                        guard let data = file.nextData(from: position) else { return nil }
                        if data > position {
                            position = data & ~(LogRecovery.block - 1)
                            continue
                        }
                    }
                    // Whole words only when aligned, so no read crosses into the next block.
                    if position & 7 == 0 && position + 8 <= bytes.count && bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self) == 0 {
                        position += 8
                        continue
                    }
                    if bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self) == LogFormat.frameMagic.littleEndian,
                       case let .success(frame) = decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[position...])),
                       frame.header.firstSequence >= after {
                        return (position, frame.header.firstSequence)
                    }
                    position += 1
                }
                return nil
            }
            if let (position, sequence) = found { return Position(index: i, offset: position, firstSequence: sequence) }
        }
        return nil
    }

    /// The granularity at which file systems report data and holes.
    static let block = 4096

    /// The last non-zero byte at or after `offset`, reading only where the file holds data.
    private func lastNonZero(_ file: any StorageFile, from offset: Int) -> Int? {
        file.withBytes { bytes -> Int? in
            var last: Int? = nil
            var position = offset
            while position < bytes.count {
                guard let data = file.nextData(from: position) else { break }
                position = max(position, data)
                // Read on to the end of this stretch of data: the first block of zeros.
                var blockEnd = min(bytes.count, (position / LogRecovery.block + 1) * LogRecovery.block)
                while position < bytes.count {
                    var zeros = true
                    var p = position
                    while p + 8 <= blockEnd {
                        if bytes.loadUnaligned(fromByteOffset: p, as: UInt64.self) != 0 { zeros = false; break }
                        p += 8
                    }
                    if zeros {
                        for q in p ..< blockEnd where bytes[q] != 0 { zeros = false; break }
                    }
                    if !zeros, let found = bytes[position ..< blockEnd].lastIndex(where: { $0 != 0 }) { last = found }
                    position = blockEnd
                    blockEnd = min(bytes.count, blockEnd + LogRecovery.block)
                    if zeros { break }
                }
            }
            return last
        }
    }

    /// Zeros every non-zero byte from `offset` to the end of the file; returns how far the
    /// non-zero bytes reached (the size of what was cut).
    @discardableResult
    private func zero(_ file: any StorageFile, from offset: Int) throws(StorageError) -> Int {
        guard let lastNonZero = lastNonZero(file, from: offset) else { return 0 }
        let count = lastNonZero + 1 - offset
        if readOnly { return count }
        let zeros = [UInt8](repeating: 0, count: count)
        let result = zeros.withUnsafeBytes { raw in Result { () throws(StorageError) in try file.write(raw, at: offset) } }
        try result.get()
        try file.sync(offset: offset, length: count)
        return count
    }
}
