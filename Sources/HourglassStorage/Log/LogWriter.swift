import CLZ4
import HourglassCore
import Synchronization

/// The sequence number below which every record is known durable (synced): written by whoever
/// performs a sync (possibly another thread), read when a frame is encoded.
package final class DurableMark: Sendable {
    private let value: Atomic<UInt64>
    package init(_ initial: UInt64) { value = Atomic(initial) }
    package var sequence: UInt64 { value.load(ordering: .acquiring) }
    package func advance(to sequence: UInt64) { value.max(sequence, ordering: .releasing) }
}

/// Appends frames to the log: records accumulate in `records`; `flush` turns them into one frame
/// (compressed, checksummed) copied into the active segment's mapping; `sync` makes everything
/// written so far durable. One thread uses a writer (the engine's).
package final class LogWriter {
    private struct Segment {
        var number: UInt64
        var file: any StorageFile
        var writeOffset: Int
        var syncedOffset: Int
        /// What the segment header says that compact frames are relative to.
        var context: FrameContext
    }

    package let directory: any StorageDirectory
    package let segmentLength: Int
    /// The largest raw frame body that fits in a segment after its header.
    package let frameLimit: Int
    /// A frame is written once its body passes this many bytes, even before a commit.
    package let frameTarget: Int
    /// The body of the frame being built.
    @exclusivity(unchecked) package var records = RecordEncoder(capacity: 256 << 10)
    @exclusivity(unchecked) package private(set) var nextSequence: UInt64
    @exclusivity(unchecked) private var active: Segment
    /// Segments filled since the last sync, still to be synced.
    @exclusivity(unchecked) private var sealed: [Segment] = []
    @exclusivity(unchecked) private var encoder = SegmentFrameEncoder()
    private let preparer: SegmentPreparer
    private let clock: @Sendable () -> Int64

    /// Whether small frames continue the segment's LZ4 chain (the format's rule); tests turn it
    /// off to build logs of unchained version 2 frames only.
    @exclusivity(unchecked) package var chainsFrames = true

    @exclusivity(unchecked) package private(set) var bytesWritten = 0
    @exclusivity(unchecked) package private(set) var rawBytesWritten = 0
    @exclusivity(unchecked) package private(set) var framesWritten = 0
    @exclusivity(unchecked) package private(set) var syncs = 0

    /// Below this sequence number every record is durable (advanced by each sync).
    package let durable: DurableMark

    /// The segments written since this writer started (number → first sequence), for truncation.
    @exclusivity(unchecked) package private(set) var segmentsStarted: [(number: UInt64, firstSequence: UInt64)] = []

    /// Continues the log after recovery (or starts it in an empty directory).
    package init(
        directory: any StorageDirectory, segmentLength: Int, tail: LogTail,
        prepareInBackground: Bool = true, clock: @escaping @Sendable () -> Int64
    ) throws(StorageError) {
        self.directory = directory
        self.segmentLength = segmentLength
        self.clock = clock
        var limit = segmentLength - LogFormat.segmentHeaderLength - LogFormat.frameHeaderLength
        while Int(LZ4_compressBound(Int32(min(limit, LogFormat.maxRawFrameLength)))) > segmentLength - LogFormat.segmentHeaderLength - LogFormat.frameHeaderLength {
            limit -= 4096
        }
        frameLimit = min(limit, LogFormat.maxRawFrameLength)
        frameTarget = min(1 << 20, frameLimit)
        nextSequence = tail.nextSequence
        // Recovery made the log it read durable (it syncs every segment it keeps).
        durable = DurableMark(tail.nextSequence)
        preparer = SegmentPreparer(directory: directory, length: segmentLength, background: prepareInBackground)
        var continuesVersion1 = false
        if let (number, file, offset, header) = tail.segment {
            // The chain of the frames before is not known here: the first frame starts a new one.
            let context = header.map { FrameContext.segment($0) } ?? FrameContext(version: nil, baseSequence: nextSequence)
            active = Segment(number: number, file: file, writeOffset: offset, syncedOffset: offset, context: context)
            continuesVersion1 = header?.version != LogFormat.version
        } else {
            // No segment with data: start the first (or the next after the spares' predecessor).
            let number = tail.spares.first ?? (tail.highestSegment + 1)
            for spare in tail.spares where spare != number { try directory.remove(SegmentName.name(spare)) }
            let file: any StorageFile
            if tail.spares.contains(number) {
                file = try directory.openFile(SegmentName.name(number), writable: true)
            } else {
                file = try preparer.take(number)
            }
            active = Segment(number: number, file: file, writeOffset: 0, syncedOffset: 0, context: .segment(SegmentHeader(
                segmentNumber: number, firstSequence: nextSequence, segmentLength: UInt64(file.length), createdMilliseconds: 0)))
            try startSegment()
        }
        // Spares beyond the active segment are prepared again in the background (the preparer
        // always makes a fresh file).
        for spare in tail.spares where spare > active.number { try directory.remove(SegmentName.name(spare)) }
        preparer.request(active.number + 1)
        // A version 1 segment (or one whose header salvage passed over) is read, never appended
        // to: the log goes on in a new segment.
        if continuesVersion1 { try rollOver() }
    }

    deinit { preparer.stop() }

    /// Writes the segment header of `active` at offset 0.
    private func startSegment() throws(StorageError) {
        var header = [UInt8](repeating: 0, count: LogFormat.segmentHeaderLength)
        let segmentHeader = SegmentHeader(segmentNumber: active.number, firstSequence: nextSequence,
                                          segmentLength: UInt64(active.file.length), createdMilliseconds: clock(),
                                          durableSequence: durable.sequence)
        header.withUnsafeMutableBytes { raw in segmentHeader.write(to: raw.baseAddress!) }
        active.context = .segment(segmentHeader)
        encoder.restartChain()
        let result = header.withUnsafeBytes { raw in Result { () throws(StorageError) in try active.file.write(raw, at: 0) } }
        try result.get()
        active.writeOffset = LogFormat.segmentHeaderLength
        active.syncedOffset = 0
        segmentsStarted.append((active.number, nextSequence))
    }

    /// Before appending a record of about `bytes` bytes: writes the frame being built first if
    /// the record would take it past the frame limit, or if it has reached the target size.
    package func reserve(recordBytes bytes: Int) throws(StorageError) {
        precondition(bytes <= frameLimit, "a record of \(bytes) bytes cannot fit a frame of at most \(frameLimit) bytes")
        if !records.isEmpty && (records.byteCount + bytes > frameLimit || records.byteCount >= frameTarget) {
            _ = try flush()
        }
    }

    /// Writes the records appended since the last flush as one frame. Returns false when there
    /// were none.
    @discardableResult
    package func flush() throws(StorageError) -> Bool {
        guard !records.isEmpty else { return false }
        let count = records.count
        let raw = records.byteCount
        let durableSequence = durable.sequence
        encoder.encode(body: records.buffer.bytes, firstSequence: nextSequence, recordCount: count, durableSequence: durableSequence,
                       context: active.context, mayChain: chainsFrames)
        // The active segment may predate this writer's segment size (a directory written with
        // other settings): its own file length is what counts.
        if active.writeOffset + encoder.frame.count > active.file.length {
            // Built for the full segment (its chain, its header's sequence): build it again as
            // the first frame of the next one.
            try rollOver()
            encoder.encode(body: records.buffer.bytes, firstSequence: nextSequence, recordCount: count, durableSequence: durableSequence,
                           context: active.context, mayChain: chainsFrames)
        }
        let frameLength = encoder.frame.count
        do throws(StorageError) {
            try active.file.write(encoder.frame.bytes, at: active.writeOffset)
        } catch {
            // The chain went on in memory with a frame that is not in the file.
            encoder.restartChain()
            throw error
        }
        active.writeOffset += frameLength
        nextSequence += UInt64(count)
        records.reset()
        bytesWritten += frameLength
        rawBytesWritten += raw
        framesWritten += 1
        return true
    }

    /// Moves to the next segment (prepared ahead of time); the full one is synced with the next
    /// `sync`.
    private func rollOver() throws(StorageError) {
        let number = active.number + 1
        let file = try preparer.take(number)
        // The full segment is closed by the next sync batch (even with nothing left to sync):
        // a sync thread may still be syncing an earlier range of it.
        sealed.append(active)
        active = Segment(number: number, file: file, writeOffset: 0, syncedOffset: 0, context: active.context)
        try startSegment()
        preparer.request(number + 1)
    }

    /// What a sync must cover: the ranges written since the last batch was taken. Taking it
    /// marks them as synced for the writer; performing it (on any thread) makes them durable.
    /// That split lets a sync thread msync one batch while the writer copies the next frames in.
    package struct SyncBatch: @unchecked Sendable {
        fileprivate var ranges: [(file: any StorageFile, offset: Int, length: Int, close: Bool)] = []
        /// Every record before this sequence number is in the ranges (or was synced before).
        fileprivate var through: UInt64 = 0
        fileprivate var mark: DurableMark? = nil
        package var isEmpty: Bool { ranges.isEmpty }
        package init() {}

        /// Adds another batch's ranges after this one's (a sync thread merges what waited).
        package mutating func append(_ other: SyncBatch) {
            for range in other.ranges {
                // Adjacent ranges of one file become one msync: each msync is a journal commit
                // and a cache flush of the disk, the dominant cost of a sync.
                if let last = ranges.last, !last.close, (last.file as AnyObject) === (range.file as AnyObject),
                   last.offset + last.length == range.offset {
                    ranges[ranges.count - 1] = (last.file, last.offset, last.length + range.length, range.close)
                } else {
                    ranges.append(range)
                }
            }
            through = max(through, other.through)
            mark = mark ?? other.mark
        }

        /// msyncs every range, in order, and closes the segments that were full; then records
        /// in the durable mark that everything before `through` is durable.
        package func perform() throws(StorageError) {
            var failure: StorageError? = nil
            for range in ranges {
                if failure == nil {
                    do throws(StorageError) {
                        try range.file.sync(offset: range.offset, length: range.length)
                    } catch {
                        failure = error
                    }
                }
                if range.close { range.file.close() }
            }
            if let failure { throw failure }
            mark?.advance(to: through)
        }
    }

    /// The ranges to sync to make everything written so far durable (see `SyncBatch`).
    package func takeSyncBatch() -> SyncBatch {
        var batch = SyncBatch()
        batch.through = nextSequence
        batch.mark = durable
        for segment in sealed {
            batch.ranges.append((segment.file, segment.syncedOffset, segment.writeOffset - segment.syncedOffset, true))
        }
        sealed.removeAll()
        if active.syncedOffset < active.writeOffset {
            batch.ranges.append((active.file, active.syncedOffset, active.writeOffset - active.syncedOffset, false))
            active.syncedOffset = active.writeOffset
        }
        if !batch.isEmpty { syncs += 1 }
        return batch
    }

    /// Makes every frame written so far durable (msync of what each segment gained), here.
    package func sync() throws(StorageError) {
        try takeSyncBatch().perform()
    }

    /// Ends the active segment (when it holds frames) so that the next record starts a new one:
    /// a checkpoint begins there. Returns the segment that holds the next record and the
    /// sequence number of that record.
    package func startNewSegment() throws(StorageError) -> (segment: UInt64, sequence: UInt64) {
        try flush()
        if active.writeOffset > LogFormat.segmentHeaderLength { try rollOver() }
        return (active.number, nextSequence)
    }

    /// Deletes the segment files numbered below `number` (a checkpoint covers them), and syncs
    /// the directory.
    package func removeSegments(before number: UInt64) throws(StorageError) {
        precondition(number <= active.number, "the active segment is never removed")
        var removed = false
        for name in try directory.list() {
            if let n = SegmentName.number(name), n < number {
                try directory.remove(name)
                removed = true
            }
        }
        // Full segments waiting for a sync stay in `sealed`: the next sync batch (maybe on the
        // sync thread) syncs and closes them; closing them here could unmap a file under it.
        if removed { try directory.sync() }
    }

    /// Whether frames were written since the last sync.
    package var hasUnsyncedFrames: Bool { !sealed.isEmpty || active.syncedOffset < active.writeOffset }

    /// The segment being written and the offset of the next frame.
    package var position: (segment: UInt64, offset: Int) { (active.number, active.writeOffset) }

    /// Flushes, syncs and closes the files. The spare segment stays for the next open.
    package func close() throws(StorageError) {
        defer { abandon() }
        try flush()
        try sync()
        // The close mark: an empty frame whose durable sequence covers everything, synced. After
        // a clean close, damage to the last real frame is then told from a torn write.
        encoder.encode(body: UnsafeRawBufferPointer(start: nil, count: 0), firstSequence: nextSequence, recordCount: 0,
                       durableSequence: durable.sequence, context: active.context)
        if active.writeOffset + encoder.frame.count <= active.file.length {
            try active.file.write(encoder.frame.bytes, at: active.writeOffset)
            active.writeOffset += encoder.frame.count
            try sync()
        }
    }

    /// Closes the files without writing or syncing anything more (after a failure: nothing is
    /// written after it, so the disk holds what was acknowledged and no guess about the rest).
    package func abandon() {
        preparer.stop()
        for segment in sealed { segment.file.close() }
        sealed.removeAll()
        active.file.close()
    }
}
