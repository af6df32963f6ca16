import CLZ4

/// Builds the frames of a version 2 segment: compact headers for small frames, long ones for
/// the rest; chained LZ4 compression against the segment's recent history for frames up to
/// `LogFormat.maxChainedRawLength`, restarted as `Docs/FORMAT.md` ("Chains") says. Keeps its
/// buffers and its chain between frames; `restartChain()` at every new segment.
package struct SegmentFrameEncoder: ~Copyable {
    /// The last frame built: header then stored body.
    package private(set) var frame = ByteWriter(capacity: 64 << 10)
    private var chain = LZ4CompressionChain()
    /// Raw bytes of the open chain (since its unchained frame, included); nil when none is open.
    package private(set) var chainRawBytes: Int? = nil

    package init() {}

    /// The next frame starts a new chain (the first frame of a segment, or after a frame that
    /// was built and not written).
    package mutating func restartChain() { chainRawBytes = nil }

    /// Builds the frame for `body` (at most `LogFormat.maxRawFrameLength` bytes) holding
    /// `recordCount` records from `firstSequence` on, in the segment `context` describes (its
    /// header's first and durable sequence numbers); returns its header. The frame's bytes are
    /// `frame.bytes` until the next call. `durableSequence` says up to where the records before
    /// were durable when it was written (clamped to `firstSequence`). Without `mayChain`, the
    /// frame starts a new chain whatever its size (tests pin unchained behaviour with it).
    ///
    /// - Complexity: O(`body.count`); one `memcpy` of the body into the chain's history when it
    ///   is chained.
    @discardableResult
    package mutating func encode(
        body: UnsafeRawBufferPointer, firstSequence: UInt64, recordCount: Int, durableSequence: UInt64, context: FrameContext,
        mayChain: Bool = true
    ) -> FrameHeader {
        let count = body.count
        precondition(count <= LogFormat.maxRawFrameLength, "frame body of \(count) bytes")
        precondition(firstSequence >= context.baseSequence, "a frame before its segment's first sequence")
        let durable = max(1, min(durableSequence, firstSequence))
        let chained = mayChain && chainRawBytes.map { count <= LogFormat.maxChainedRawLength && $0 + count <= LogFormat.chainRestartRawBytes } ?? false
        // A compact header needs the lengths, the count and the sequence to fit its fields, and a
        // durable lag it can say (or a segment header that proves as much).
        let lag = firstSequence - durable
        let compact = count <= LogFormat.maxCompactLength && recordCount <= LogFormat.maxCompactRecords
            && context.compactReaches(firstSequence) && (lag < LogFormat.maxDurableLag || context.baseDurable <= durable)
        let headerLength = compact ? LogFormat.compactFrameHeaderLength : LogFormat.frameHeaderLength

        frame.removeAll()
        let bound = Int(LZ4_compressBound(Int32(count)))
        let start = frame.extend(by: headerLength + max(bound, count))
        let destination = start + headerLength
        let compressed: Int
        if count == 0 {
            if !chained { chain.startEmpty() }
            compressed = 0
        } else if chained {
            compressed = chain.compressNext(body, into: destination, capacity: bound)
        } else {
            compressed = chain.compressFirst(body, into: destination, capacity: bound)
        }
        chainRawBytes = (chained ? chainRawBytes! : 0) + count
        var flags: UInt8 = chained ? LogFormat.flagChained : 0
        let stored: Int
        if compressed > 0 && compressed < count {
            stored = compressed
            flags |= LogFormat.flagCompressed
        } else {
            // Not worth it: stored as is (the chain still holds the raw body, on both sides).
            if count > 0 { destination.copyMemory(from: body.baseAddress!, byteCount: count) }
            stored = count
        }
        frame.count = headerLength + stored
        let said = compact && lag >= LogFormat.maxDurableLag ? min(context.baseDurable, firstSequence) : durable
        var header = FrameHeader(version: context.version ?? LogFormat.version, isCompact: compact, flags: flags, storedLength: stored, rawLength: count,
                                 firstSequence: firstSequence, recordCount: recordCount, durableSequence: said, checksum: 0)
        header.write(to: start)
        header.checksum = FrameEncoder.checksum(frame: UnsafeRawBufferPointer(start: start, count: frame.count), headerLength: headerLength)
        start.storeBytes(of: header.checksum.littleEndian, toByteOffset: header.checksumOffset, as: UInt32.self)
        return header
    }
}
