import HourglassCore

extension LogRecovery {
    /// A place in the log: a segment, by its index in the walk's segments, and an offset in it.
    struct Place: Equatable {
        var index: Int
        var offset: Int
    }

    /// An intact frame found while looking past damage.
    struct Position {
        var index: Int
        var offset: Int
        var header: FrameHeader
        var place: Place { Place(index: index, offset: offset) }
        var firstSequence: UInt64 { header.firstSequence }
    }

    /// One run of recovery over the segments: where it is, what it has read, what it decided.
    /// The table (`LogRecovery+Table.swift`) moves it from finding to finding.
    struct Walk: ~Copyable {
        let recovery: LogRecovery
        let segments: [Segment]
        /// The newest segment with a header (valid or not): blank ones after it may be spares.
        let lastWithHeader: Int
        var report: RecoveryReport
        var reader = FrameReader()
        /// The segment whose frames are being read, once one is.
        var reading: Int? = nil
        /// The sequence number the log needs next; nil until a segment header or a resume
        /// point says.
        var expected: UInt64? = nil
        /// Every segment read with a valid header, and where its records start.
        var known: [(number: UInt64, firstSequence: UInt64)] = []
        /// Where the frames read so far end: the log continues there unless a cut says otherwise.
        var end: Place? = nil
        /// Where a torn tail (or a loss that salvage cannot read past) ends the log, and why.
        var cut: (place: Place, reason: String)? = nil
        /// The highest segment number in the directory once the walk is done.
        var highest: UInt64
        /// For `LogRecovery.progress`: where each segment starts among the bytes to read, how
        /// many there are, and how far the last report went.
        let segmentStarts: [Int]
        let totalBytes: Int
        var reportedBytes = 0

        init(recovery: LogRecovery, segments: [Segment], report: RecoveryReport) {
            self.recovery = recovery
            self.segments = segments
            self.report = report
            lastWithHeader = segments.lastIndex { $0.hasHeader } ?? -1
            highest = segments.last?.number ?? 0
            var starts: [Int] = []
            var total = 0
            for segment in segments {
                starts.append(total)
                if segment.hasHeader { total += segment.file.length }
            }
            segmentStarts = starts
            totalBytes = total
        }

        /// Reports progress (at most once per MiB) after a frame ends at `offset` of the
        /// segment being read.
        mutating func noteProgress(at offset: Int) {
            guard let progress = recovery.progress, let reading else { return }
            let done = min(totalBytes, segmentStarts[reading] + offset)
            if done - reportedBytes >= 1 << 20 {
                reportedBytes = done
                progress(done, totalBytes)
            }
        }

        /// The sequence number the log needs at the walk's place.
        var needed: UInt64 { expected ?? recovery.startSequence }

        /// `segment:offset`, as messages name a place.
        func name(_ position: Position) -> String { "\(segments[position.index].name):\(position.offset)" }

        /// Reads the log from its first segment: each finding to its decision, until a decision
        /// ends the walk (a cut, spares) or the segments run out.
        mutating func read(apply: (RecordView, UInt64) -> Void) throws(StorageError) {
            var step = Step.segment(0)
            while let finding = find(at: step), let next = try decide(finding, apply: apply) {
                step = next
            }
        }

        /// Reads `segments[index]` from `offset`: counted as read, and known by its header.
        mutating func startReading(_ index: Int, at offset: Int) {
            let segment = segments[index]
            if let header = segment.validHeader, known.last?.number != segment.number {
                known.append((segment.number, header.firstSequence))
            }
            report.segments += 1
            reading = index
            reader.move(to: offset, in: segment, sequence: needed)
        }

        /// Where the writer goes on (rows 1, 2 and 9): the segments read are synced, so that new
        /// frames can say they are durable; blank ones after them are spares; the writer appends
        /// after the last frame read (row 1: with none, it starts segment 1 at sequence 1).
        mutating func tail() throws(StorageError) -> LogTail {
            if !recovery.readOnly {
                for segment in segments where known.contains(where: { $0.number == segment.number }) {
                    try segment.file.sync(offset: 0, length: segment.file.length)
                }
            }
            var spares: [UInt64] = []
            for segment in segments {
                if case .blank = segment.header, segment.number > (known.last?.number ?? 0) { spares.append(segment.number) }
            }
            var result = LogTail(segment: nil, spares: cut == nil ? spares : [], nextSequence: needed, segments: known,
                                 highestSegment: highest)
            if let end, !recovery.readOnly {
                let segment = segments[end.index]
                result.segment = (segment.number, try recovery.directory.openFile(segment.name, writable: true), end.offset, segment.validHeader)
            }
            report.segmentFiles = segments.count
            recovery.progress?(totalBytes, totalBytes)
            return result
        }
    }
}
