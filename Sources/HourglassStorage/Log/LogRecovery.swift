import HourglassCore

/// What recovery found, dropped and cut: the LevelDB habit of accounting for every byte.
public struct RecoveryReport: Sendable, Equatable, CustomStringConvertible {
    /// A torn tail cut off the newest segment: a frame the crash interrupted.
    public struct TornTail: Sendable, Equatable {
        /// The segment file that was cut.
        public var file: String
        /// Where the cut starts, in bytes from the file's start.
        public var offset: Int64
        /// Non-zero bytes discarded from `offset` on.
        public var bytes: Int
        /// Why the bytes at `offset` were not a valid frame.
        public var reason: String
    }

    /// Damage skipped in salvage mode, and the records lost with it.
    public struct Dropped: Sendable, Equatable {
        /// The file holding the damage.
        public var file: String
        /// Where the damage starts, in bytes from the file's start.
        public var offset: Int64
        /// Bytes skipped.
        public var bytes: Int
        /// The sequence numbers lost: `firstSequence ..< firstSequence + records`.
        public var firstSequence: UInt64
        /// Records lost.
        public var records: Int
        /// What was wrong, and the evidence that it was not a torn write.
        public var reason: String
    }

    /// Log segments read.
    public var segments = 0
    /// Frames read.
    public var frames = 0
    /// Records read (including those before the checkpoint's sequence, which are skipped).
    public var records = 0
    /// Records applied (at or after the checkpoint's sequence).
    public var applied = 0
    /// The torn tail cut off the log, if the last write was interrupted.
    public var tornTail: TornTail? = nil
    /// What salvage skipped (empty unless `Configuration.salvage` is set and there was damage).
    public var dropped: [Dropped] = []
    /// Bytes of the frames read (as stored) and of their bodies (decompressed).
    public var logBytes = 0
    /// The frames' bodies, decompressed.
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

    /// An empty report: nothing read.
    public init() {}

    /// One line: what was read, cut and dropped.
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
    /// Its header is nil when it is damaged (salvage read past it): the writer starts a new segment.
    package var segment: (number: UInt64, file: any StorageFile, writeOffset: Int, header: SegmentHeader?)?
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

    /// Called as the log is read, for a progress display: the bytes of segment files read so
    /// far and in all (spares not counted; segments are preallocated, so the total is their
    /// full length and the last report jumps to it). At most once per MiB read, and at the end.
    package var progress: ((_ done: Int, _ total: Int) -> Void)? = nil

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
        var validHeader: SegmentHeader? { if case let .valid(header) = header { return header } else { return nil } }

        /// How to read its frames: as its header says; with a damaged header, any version, and
        /// compact frames' sequence numbers taken relative to `sequence` (the log's position).
        func context(at sequence: UInt64) -> FrameContext {
            validHeader.map { FrameContext.segment($0) } ?? FrameContext(version: nil, baseSequence: sequence)
        }
    }

    /// A valid frame found while looking past damage.
    private struct Position {
        var index: Int
        var offset: Int
        var header: FrameHeader
        var firstSequence: UInt64 { header.firstSequence }
    }

    /// What to do about damage at a point of the log.
    private enum Decision {
        /// Data that was durable follows: salvage goes on from this valid unchained frame.
        /// `orphans` is the first intact chained frame before it: chained frames that cannot be
        /// decoded without the damaged one, dropped up to the resume point.
        case resume(Position, orphans: Position?)
        /// Durable data was destroyed and no valid unchained frame follows (only chained frames or
        /// a later segment's header say so): salvage cuts the log here and reports the loss.
        case lost(String)
        /// Only data that was never durable follows: cut the log here.
        case cut
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
        try dropCoveredSegments(&segments, report: &report)
        var highest = segments.last?.number ?? 0
        // Progress: where each segment starts among the bytes to read.
        var segmentStarts: [Int] = []
        var totalBytes = 0
        for segment in segments {
            segmentStarts.append(totalBytes)
            if segment.hasHeader { totalBytes += segment.file.length }
        }
        var reportedBytes = 0
        func noteProgress(_ index: Int, _ offset: Int) {
            guard let progress else { return }
            let done = min(totalBytes, segmentStarts[index] + offset)
            if done - reportedBytes >= 1 << 20 {
                reportedBytes = done
                progress(done, totalBytes)
            }
        }

        var decoder = FrameDecoder()
        var expected: UInt64? = nil
        var known: [(number: UInt64, firstSequence: UInt64)] = []
        /// Where the frames read so far end: the log continues there unless a cut says otherwise.
        var end: (index: Int, offset: Int)? = nil
        var resume: Position? = nil
        var cutAt: (index: Int, offset: Int)? = nil
        var cutReason = ""
        let lastWithHeader = segments.lastIndex { $0.hasHeader } ?? -1

        /// Decides about damage at (`index`, `offset`): throws, resumes (salvage) or cuts.
        func damage(_ index: Int, _ offset: Int, _ reason: String, bytes: Int? = nil) throws(StorageError) -> Decision {
            let from = expected ?? startSequence
            switch try decide(segments, index, offset, expected: from) {
            case .cut:
                return .cut
            case let .lost(evidence):
                let segment = segments[index]
                try corruption(segment, offset, "\(reason); \(evidence) once sequence \(from) was durable, so this is not a torn write; no unchained frame follows to resume at",
                               bytes: bytes ?? (segment.file.length - offset), report: &report)
                return .cut
            case let .resume(next, orphans):
                let segment = segments[index]
                let stop = orphans ?? next
                let length = stop.index == index ? stop.offset - offset : segment.file.length - offset
                try corruption(segment, offset, "\(reason); a valid frame at \(segments[next.index].name):\(next.offset) follows that was written once sequence \(from) was durable, so this is not a torn write",
                               lost: stop.firstSequence > from ? (from, stop.firstSequence) : nil, bytes: bytes ?? length, report: &report)
                if let orphans {
                    // Intact, but their chain starts in the damage: accounted for as dropped too.
                    let holder = segments[orphans.index]
                    let end = next.index == orphans.index ? next.offset : (lastFrameEnd(holder, from: orphans) ?? holder.file.length)
                    report.dropped.append(.init(
                        file: holder.file.path, offset: Int64(orphans.offset), bytes: end - orphans.offset,
                        firstSequence: orphans.firstSequence, records: Int(next.firstSequence - orphans.firstSequence),
                        reason: "chained frames that cannot be decoded without the damaged frame before them (their chain restarts at \(segments[next.index].name):\(next.offset))"))
                }
                return .resume(next, orphans: orphans)
            }
        }

        var index = 0
        segmentLoop: while index < segments.count {
            let segment = segments[index]
            let length = segment.file.length
            var offset = LogFormat.segmentHeaderLength
            // Every segment starts a chain of its own; so does a resume point.
            decoder.breakChain()
            if let position = resume, position.index == index {
                offset = position.offset
                expected = position.firstSequence
                resume = nil
            } else {
                if index > 0 && segment.number != segments[index - 1].number + 1 {
                    try corruption(segment, 0, "segments \(segments[index - 1].number + 1) ..< \(segment.number) are missing", report: &report)
                }
                // The header.
                var problem: String? = nil
                var damagedBytes = LogFormat.segmentHeaderLength
                switch segment.header {
                case .blank:
                    if index > lastWithHeader {
                        // A spare, unless frames follow its missing header.
                        guard let next = nextValidFrame(segments, index, LogFormat.segmentHeaderLength, after: expected ?? startSequence),
                              next.index == index
                        else { break segmentLoop }
                        problem = "the segment header is all zeros but frames follow"
                    } else {
                        problem = "the segment header is all zeros but newer segments follow"
                    }
                case let .invalid(reason):
                    problem = reason
                case let .valid(header):
                    if header.segmentNumber != segment.number || header.segmentLength != UInt64(length) {
                        problem = "the header says segment \(header.segmentNumber) of \(header.segmentLength) bytes, the file is \(segment.name) of \(length) bytes"
                    } else if let expectedSequence = expected, header.firstSequence != expectedSequence {
                        problem = "the segment starts at sequence \(header.firstSequence), expected \(expectedSequence)"
                        damagedBytes = 0  // an intact header: records are missing, no bytes are bad
                    }
                }
                if let problem {
                    switch try damage(index, 0, problem, bytes: damagedBytes) {
                    case .cut:
                        cutAt = (index, 0)
                        cutReason = problem
                        break segmentLoop
                    case let .resume(next, _):
                        resume = next
                        index = next.index
                        continue segmentLoop
                    case .lost:
                        preconditionFailure("damage() reports a loss itself")
                    }
                }
                if case let .valid(header) = segment.header {
                    if expected == nil { expected = header.firstSequence }
                }
            }
            if case let .valid(header) = segment.header, known.last?.number != segment.number {
                known.append((segment.number, header.firstSequence))
            }
            report.segments += 1

            frames: while true {
                let context = segment.context(at: expected ?? startSequence)
                while offset + LogFormat.minFrameHeaderLength <= length {
                    if segment.file.withBytes({ $0[offset ..< offset + LogFormat.minFrameHeaderLength].allSatisfy { $0 == 0 } }) { break }
                    let result = segment.file.withBytes { decoder.decode(UnsafeRawBufferPointer(rebasing: $0[offset...]), context: context) }
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
                        noteProgress(index, offset)
                        continue
                    case let .success(frame):
                        reason = "the frame starts at sequence \(frame.header.firstSequence), expected \(expected!)"
                    case let .failure(failure):
                        reason = failure.description
                    }
                    switch try damage(index, offset, reason) {
                    case .cut:
                        cutAt = (index, offset)
                        cutReason = reason
                        break segmentLoop
                    case let .resume(next, _):
                        if next.index == index {
                            offset = next.offset
                            expected = next.firstSequence
                            continue
                        }
                        resume = next
                        index = next.index
                        continue segmentLoop
                    case .lost:
                        preconditionFailure("damage() reports a loss itself")
                    }
                }
                // The frames stop here. Only zeros may follow in this segment; in the newest one,
                // anything else is a torn write, or damage if durable data comes after it.
                end = (index, offset)
                let garbage = index >= lastWithHeader ? lastNonZero(segment.file, from: offset) != nil
                    : nextValidFrame(segments, index, offset + 1, after: expected ?? startSequence).map { $0.index == index } ?? false
                if garbage {
                    let reason = index >= lastWithHeader ? "an incomplete frame after the last complete one" : "a valid frame hidden after zeroed bytes"
                    switch try damage(index, offset, reason) {
                    case .cut:
                        cutAt = (index, offset)
                        cutReason = reason
                        break segmentLoop
                    case let .resume(next, _):
                        if next.index == index {
                            offset = next.offset
                            expected = next.firstSequence
                            continue frames
                        }
                        resume = next
                        index = next.index
                        continue segmentLoop
                    case .lost:
                        preconditionFailure("damage() reports a loss itself")
                    }
                }
                break frames
            }
            index += 1
        }

        // A cut: the log ends at the damage; everything after it was never durable.
        if let cut = cutAt {
            var cutBytes = 0
            let first = segments[cut.index]
            if cut.offset > 0 {
                cutBytes += try zero(first.file, from: cut.offset)
                end = cut
            }
            // Every segment after the cut goes (the writer prepares new ones), spares included,
            // so that segment numbers stay contiguous.
            let removeFrom = cut.index + (cut.offset > 0 ? 1 : 0)
            for segment in segments[removeFrom...] {
                cutBytes += lastNonZero(segment.file, from: 0).map { $0 + 1 } ?? 0
                if !readOnly {
                    segment.file.close()
                    try directory.remove(segment.name)
                }
            }
            highest = removeFrom > 0 ? segments[removeFrom - 1].number : (segments.first.map { $0.number - 1 } ?? 0)
            if cut.offset == 0 { known.removeAll { $0.number >= first.number } }
            if cutBytes > 0 || cut.offset == 0 {
                report.tornTail = .init(file: first.file.path, offset: Int64(cut.offset), bytes: cutBytes,
                                        reason: "\(cutReason) (only data never synced follows: a crash cut it short; the log ends here)")
            }
        }

        // Make what was recovered durable, so new frames can say so (their durable sequence).
        if !readOnly {
            for segment in segments where known.contains(where: { $0.number == segment.number }) {
                try segment.file.sync(offset: 0, length: segment.file.length)
            }
        }

        var spares: [UInt64] = []
        for segment in segments {
            if case .blank = segment.header, segment.number > (known.last?.number ?? 0) { spares.append(segment.number) }
        }
        var result = LogTail(segment: nil, spares: cutAt == nil ? spares : [], nextSequence: expected ?? startSequence, segments: known,
                             highestSegment: highest)
        if let end, !readOnly {
            let segment = segments[end.index]
            result.segment = (segment.number, try directory.openFile(segment.name, writable: true), end.offset, segment.validHeader)
        }
        report.segmentFiles = segments.count
        progress?(totalBytes, totalBytes)
        return result
    }

    /// With a checkpoint at `startSequence`, the segments that end before it are covered: drops
    /// (and deletes) them. The segment holding `startSequence` must exist if any segment does.
    private func dropCoveredSegments(_ segments: inout [Segment], report: inout RecoveryReport) throws(StorageError) {
        guard !segments.isEmpty else { return }
        var holding = segments.lastIndex { segment in
            if case let .valid(header) = segment.header { return header.firstSequence <= startSequence }
            return false
        }
        if holding == nil {
            let firstWithHeader = segments.firstIndex { $0.hasHeader }
            guard let first = firstWithHeader else { return }  // only spares
            switch segments[first].header {
            case .valid where first > 0:
                // Blank headers before it: the oldest of them lost its header (a power loss
                // before it was synced). Recovery decides about it there.
                holding = 0
            case let .valid(header):
                throw StorageError.corruption(
                    file: segments[first].file.path, offset: 0,
                    reason: "the log must start at sequence \(startSequence)\(startSequence > 1 ? " (the checkpoint's start)" : ""), but the oldest segment starts at \(header.firstSequence): a segment is missing")
            case .invalid:
                // The segment that should hold the start has a damaged header: recovery decides
                // about it there (a torn start of a segment, or corruption naming it).
                holding = first
            case .blank:
                return
            }
        }
        guard let holding, holding > 0 else { return }
        for segment in segments[..<holding] {
            segment.file.close()
            if !readOnly { try directory.remove(segment.name) }
            report.obsoleteSegments += 1
        }
        segments.removeFirst(holding)
    }

    /// Damage at (`index`, `offset`) with `expected` the sequence number the log needed there:
    /// if some valid frame after it was written once `expected` was durable, the damage destroyed
    /// durable data (corruption: resume at the first valid frame, in salvage mode); otherwise only
    /// data never synced follows, which a crash may lose or tear (cut).
    private func decide(_ segments: [Segment], _ index: Int, _ offset: Int, expected: UInt64) throws(StorageError) -> Decision {
        // Any intact frame is evidence (a chained one's header and checksum can be checked
        // without its chain); salvage resumes only at an unchained one, which decodes alone.
        var firstIntact: Position? = nil
        var resumable: Position? = nil
        var evidence: String? = nil
        var next = nextValidFrame(segments, index, max(offset + 1, LogFormat.segmentHeaderLength), after: expected)
        while let frame = next {
            if firstIntact == nil { firstIntact = frame }
            if resumable == nil && !frame.header.isChained { resumable = frame }
            if evidence == nil && frame.header.durableSequence > expected {
                evidence = "a valid \(frame.header.isChained ? "chained " : "")frame at \(segments[frame.index].name):\(frame.offset) was written"
            }
            if evidence != nil && resumable != nil { break }
            next = nextValidFrame(segments, frame.index, frame.offset + frame.header.frameLength, after: expected)
        }
        // A later segment started once `expected` was durable is evidence too.
        if evidence == nil {
            for later in segments[(index + 1)...] {
                if case let .valid(header) = later.header, header.durableSequence > expected {
                    evidence = "\(later.name) was started"
                    break
                }
            }
        }
        guard let evidence else { return .cut }
        guard let resumable else { return .lost(evidence) }
        let orphans = firstIntact.flatMap { first in first.index == resumable.index && first.offset == resumable.offset ? nil : first }
        return .resume(resumable, orphans: orphans)
    }

    /// The end of the last intact frame of `segment` from `start` on (the chained frames that
    /// run to its end).
    private func lastFrameEnd(_ segment: Segment, from start: Position) -> Int? {
        var end: Int? = nil
        segment.file.withBytes { bytes in
            var offset = start.offset
            let context = segment.context(at: start.firstSequence)
            while offset < bytes.count, case let .success(header) = FrameDecoder.check(UnsafeRawBufferPointer(rebasing: bytes[offset...]), context: context) {
                offset += header.frameLength
                end = offset
            }
        }
        return end
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
            let context = segments[i].context(at: after)
            let found = file.withBytes { bytes -> (Int, FrameHeader)? in
                var position = start
                let end = bytes.count - LogFormat.minFrameHeaderLength
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
                    if bytes[position] == LogFormat.compactFrameMagic
                        || (position + 4 <= bytes.count && bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self) == LogFormat.frameMagic.littleEndian),
                       let header = intactFrame(UnsafeRawBufferPointer(rebasing: bytes[position...]), context: context, decoder: &decoder),
                       header.firstSequence >= after {
                        return (position, header)
                    }
                    position += 1
                }
                return nil
            }
            if let (position, header) = found { return Position(index: i, offset: position, header: header) }
        }
        return nil
    }

    /// The header of the intact frame at the start of `bytes`, if there is one: an unchained
    /// frame must decode; a chained one (whose chain may be lost) must pass its checksum.
    private func intactFrame(_ bytes: UnsafeRawBufferPointer, context: FrameContext, decoder: inout FrameDecoder) -> FrameHeader? {
        guard case let .success(header) = FrameDecoder.check(bytes, context: context) else { return nil }
        if header.isChained { return header }
        guard case .success = decoder.decode(bytes, context: context) else { return nil }
        return header
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
