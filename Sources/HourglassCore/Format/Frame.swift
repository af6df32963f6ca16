import CHourglass
import CLZ4

/// CRC-32C of `bytes`, continuing from `crc` (0 to start).
@inline(__always)
package func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
    return hg_crc32c(crc, base, bytes.count)
}

/// What a reader must know about the file a frame sits in: the format version, and for compact
/// frames the sequence numbers their short fields are relative to (the segment header's).
package struct FrameContext: Equatable, Sendable {
    /// The file's frame version; nil when it is unknown (a damaged segment header): every
    /// readable version is accepted.
    package var version: UInt8?
    /// A compact frame's first sequence number is the smallest one at or after this whose low
    /// `LogFormat.compactSequenceBits` bits are the header's.
    package var baseSequence: UInt64
    /// What a compact frame whose durable lag is saturated proves: the durable sequence of the
    /// segment header (never more than was durable when the frame was written).
    package var baseDurable: UInt64
    /// Whether the frames are a fleet's (PostgreSQL), where ACK_OF and RETRY_OF records belong.
    package var fleetRecords: Bool

    package init(version: UInt8?, baseSequence: UInt64, baseDurable: UInt64 = 1, fleetRecords: Bool = false) {
        self.fleetRecords = fleetRecords
        self.version = version
        self.baseSequence = max(1, baseSequence)
        self.baseDurable = max(1, min(baseDurable, self.baseSequence))
    }

    /// Checkpoint files: version 1 long frames.
    package static let checkpoint = FrameContext(version: LogFormat.checkpointFrameVersion, baseSequence: 1)

    /// The frames of the segment that `header` starts.
    package static func segment(_ header: SegmentHeader) -> FrameContext {
        FrameContext(version: header.version, baseSequence: header.firstSequence, baseDurable: header.durableSequence)
    }

    func allows(_ frameVersion: UInt8) -> Bool {
        version.map { $0 == frameVersion } ?? LogFormat.readableVersions.contains(frameVersion)
    }

    /// Whether compact headers may appear: in segments of version 2 and later.
    var allowsCompact: Bool { version.map { $0 >= 2 } ?? true }

    /// Whether a compact header can say `firstSequence`.
    package func compactReaches(_ firstSequence: UInt64) -> Bool {
        firstSequence >= baseSequence && firstSequence - baseSequence < LogFormat.compactSequenceSpan
    }
}

/// The header of a frame (see `Docs/FORMAT.md`): a long one (40 bytes, versions 1 and 2) or a
/// compact one (15 bytes, version 2).
package struct FrameHeader: Equatable, Sendable {
    package var version: UInt8
    package var isCompact: Bool
    package var flags: UInt8
    package var storedLength: Int
    package var rawLength: Int
    package var firstSequence: UInt64
    package var recordCount: Int
    /// Every record before this sequence number was durable (synced) when the frame was written:
    /// damage to those records is corruption, damage after it may be a torn or lost write.
    package var durableSequence: UInt64
    package var checksum: UInt32

    package init(version: UInt8 = LogFormat.checkpointFrameVersion, isCompact: Bool = false, flags: UInt8, storedLength: Int, rawLength: Int,
                firstSequence: UInt64, recordCount: Int, durableSequence: UInt64, checksum: UInt32) {
        self.version = version
        self.isCompact = isCompact
        self.flags = flags
        self.storedLength = storedLength
        self.rawLength = rawLength
        self.firstSequence = firstSequence
        self.recordCount = recordCount
        self.durableSequence = durableSequence
        self.checksum = checksum
    }

    package var headerLength: Int { isCompact ? LogFormat.compactFrameHeaderLength : LogFormat.frameHeaderLength }
    package var checksumOffset: Int { isCompact ? LogFormat.compactFrameChecksumOffset : LogFormat.frameChecksumOffset }
    package var frameLength: Int { headerLength + storedLength }
    package var isCompressed: Bool { flags & LogFormat.flagCompressed != 0 }
    /// The body continues the segment's LZ4 chain: it decodes only after the frames before it.
    package var isChained: Bool { flags & LogFormat.flagChained != 0 }
    /// The sequence number after the frame's last record.
    package var nextSequence: UInt64 { firstSequence &+ UInt64(recordCount) }

    /// Reads a header; fails when it cannot be one (wrong magic, version, lengths, flags).
    package static func parse(_ bytes: UnsafeRawBufferPointer, context: FrameContext) -> Result<FrameHeader, FrameFailure> {
        if bytes.count >= 1 && bytes[0] == LogFormat.compactFrameMagic && context.allowsCompact {
            return parseCompact(bytes, context: context)
        }
        guard bytes.count >= LogFormat.frameHeaderLength else {
            let needed = bytes.isEmpty && context.allowsCompact ? LogFormat.minFrameHeaderLength : LogFormat.frameHeaderLength
            return .failure(.truncated(needed: needed, available: bytes.count))
        }
        let magic = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.magic, as: UInt32.self))
        guard magic == LogFormat.frameMagic else { return .failure(.badMagic(magic)) }
        let version = bytes[LogFormat.LongFrameField.version]
        guard context.allows(version) else { return .failure(.unsupportedVersion(version)) }
        let flags = bytes[LogFormat.LongFrameField.flags]
        guard flags & ~LogFormat.knownFlags(version: version) == 0 else { return .failure(.unknownFlags(flags)) }
        let headerLength = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.headerLength, as: UInt16.self))
        guard headerLength == UInt16(LogFormat.frameHeaderLength) else { return .failure(.badLength("header length \(headerLength)")) }
        let stored = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.storedLength, as: UInt32.self)))
        let raw = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.rawLength, as: UInt32.self)))
        let first = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.firstSequence, as: UInt64.self))
        let count = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.LongFrameField.recordCount, as: UInt32.self)))
        let durable = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.frameDurableOffset, as: UInt64.self))
        let checksum = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.frameChecksumOffset, as: UInt32.self))
        guard raw <= LogFormat.maxRawFrameLength else { return .failure(.badLength("raw length \(raw) over \(LogFormat.maxRawFrameLength)")) }
        if let problem = lengthProblem(flags: flags, stored: stored, raw: raw, count: count) { return .failure(.badLength(problem)) }
        guard first >= 1 else { return .failure(.badLength("first sequence number 0")) }
        guard durable >= 1 && durable <= first else { return .failure(.badLength("durable sequence \(durable) after the first sequence \(first)")) }
        return .success(FrameHeader(version: version, flags: flags, storedLength: stored, rawLength: raw, firstSequence: first,
                                    recordCount: count, durableSequence: durable, checksum: checksum))
    }

    private static func parseCompact(_ bytes: UnsafeRawBufferPointer, context: FrameContext) -> Result<FrameHeader, FrameFailure> {
        guard bytes.count >= LogFormat.compactFrameHeaderLength else {
            return .failure(.truncated(needed: LogFormat.compactFrameHeaderLength, available: bytes.count))
        }
        let field = LogFormat.CompactFrameField.self
        let flags = bytes[field.flags]
        guard flags & ~LogFormat.knownFlags(version: 2) == 0 else { return .failure(.unknownFlags(flags)) }
        let count = Int(bytes[field.recordCount])
        let lengths = Int(bytes[field.lengths]) | Int(bytes[field.lengths + 1]) << 8 | Int(bytes[field.lengths + 2]) << 16
        let stored = lengths & LogFormat.maxCompactLength
        let raw = lengths >> LogFormat.compactLengthBits
        let lag = UInt64(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: field.durableLag, as: UInt16.self)))
        let low = UInt64(bytes[field.firstSequence]) | UInt64(bytes[field.firstSequence + 1]) << 8 | UInt64(bytes[field.firstSequence + 2]) << 16
        let checksum = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: LogFormat.compactFrameChecksumOffset, as: UInt32.self))
        if let problem = lengthProblem(flags: flags, stored: stored, raw: raw, count: count) { return .failure(.badLength(problem)) }
        let mask = LogFormat.compactSequenceSpan - 1
        let first = context.baseSequence &+ ((low &- context.baseSequence) & mask)
        let durable: UInt64
        if lag == LogFormat.maxDurableLag {
            durable = min(context.baseDurable, first)
        } else {
            guard lag < first else { return .failure(.badLength("durable lag \(lag) before sequence 1 (first sequence \(first))")) }
            durable = first - lag
        }
        return .success(FrameHeader(version: context.version ?? LogFormat.version, isCompact: true, flags: flags, storedLength: stored, rawLength: raw, firstSequence: first,
                                    recordCount: count, durableSequence: durable, checksum: checksum))
    }

    private static func lengthProblem(flags: UInt8, stored: Int, raw: Int, count: Int) -> String? {
        if flags & LogFormat.flagCompressed != 0 {
            guard stored <= Int(LZ4_compressBound(Int32(raw))), stored > 0 || raw == 0 else { return "stored length \(stored) for raw length \(raw)" }
        } else {
            guard stored == raw else { return "stored length \(stored) != raw length \(raw) in an uncompressed frame" }
        }
        guard count <= raw else { return "\(count) records in \(raw) bytes" }
        if flags & LogFormat.flagChained != 0 && raw > LogFormat.maxChainedRawLength {
            return "a chained frame of \(raw) raw bytes (at most \(LogFormat.maxChainedRawLength))"
        }
        return nil
    }

    /// Writes the header (with `checksum`) at `destination`: `headerLength` bytes. A compact
    /// header stores `firstSequence`'s low bits and the durable sequence as a lag (saturated:
    /// see `FrameContext.baseDurable`); the encoder makes sure it can.
    package func write(to destination: UnsafeMutableRawPointer) {
        if isCompact {
            let field = LogFormat.CompactFrameField.self
            destination.storeBytes(of: LogFormat.compactFrameMagic, toByteOffset: field.magic, as: UInt8.self)
            destination.storeBytes(of: flags, toByteOffset: field.flags, as: UInt8.self)
            destination.storeBytes(of: UInt8(recordCount), toByteOffset: field.recordCount, as: UInt8.self)
            let lengths = UInt32(storedLength) | UInt32(rawLength) << UInt32(LogFormat.compactLengthBits)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: lengths), toByteOffset: field.lengths, as: UInt8.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: lengths >> 8), toByteOffset: field.lengths + 1, as: UInt8.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: lengths >> 16), toByteOffset: field.lengths + 2, as: UInt8.self)
            let lag = UInt16(min(firstSequence - durableSequence, LogFormat.maxDurableLag))
            destination.storeBytes(of: lag.littleEndian, toByteOffset: field.durableLag, as: UInt16.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: firstSequence), toByteOffset: field.firstSequence, as: UInt8.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: firstSequence >> 8), toByteOffset: field.firstSequence + 1, as: UInt8.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: firstSequence >> 16), toByteOffset: field.firstSequence + 2, as: UInt8.self)
            destination.storeBytes(of: checksum.littleEndian, toByteOffset: LogFormat.compactFrameChecksumOffset, as: UInt32.self)
            return
        }
        let field = LogFormat.LongFrameField.self
        destination.storeBytes(of: LogFormat.frameMagic.littleEndian, toByteOffset: field.magic, as: UInt32.self)
        destination.storeBytes(of: version, toByteOffset: field.version, as: UInt8.self)
        destination.storeBytes(of: flags, toByteOffset: field.flags, as: UInt8.self)
        destination.storeBytes(of: UInt16(LogFormat.frameHeaderLength).littleEndian, toByteOffset: field.headerLength, as: UInt16.self)
        destination.storeBytes(of: UInt32(storedLength).littleEndian, toByteOffset: field.storedLength, as: UInt32.self)
        destination.storeBytes(of: UInt32(rawLength).littleEndian, toByteOffset: field.rawLength, as: UInt32.self)
        destination.storeBytes(of: firstSequence.littleEndian, toByteOffset: field.firstSequence, as: UInt64.self)
        destination.storeBytes(of: UInt32(recordCount).littleEndian, toByteOffset: field.recordCount, as: UInt32.self)
        destination.storeBytes(of: durableSequence.littleEndian, toByteOffset: LogFormat.frameDurableOffset, as: UInt64.self)
        destination.storeBytes(of: checksum.littleEndian, toByteOffset: LogFormat.frameChecksumOffset, as: UInt32.self)
    }
}

/// Why bytes are not a valid frame.
package enum FrameFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case badMagic(UInt32)
    case unsupportedVersion(UInt8)
    case unknownFlags(UInt8)
    case badLength(String)
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// A chained frame whose chain was not decoded: the frames before it are damaged or missing
    /// (or it is the first frame of a segment).
    case brokenChain
    case decompression(String)
    case records(offset: Int, reason: String)
    case recordCountMismatch(header: Int, found: Int)

    package var description: String {
        switch self {
        case let .truncated(needed, available): return "frame truncated: needs \(needed) bytes, \(available) left in the file"
        case let .badMagic(magic): return "no frame here (magic 0x\(String(magic, radix: 16)))"
        case let .unsupportedVersion(version): return "frame version \(version) is not supported here (this build reads versions \(LogFormat.readableVersions.lowerBound) ... \(LogFormat.readableVersions.upperBound), each in its own files)"
        case let .unknownFlags(flags): return "unknown frame flags 0x\(String(flags, radix: 16))"
        case let .badLength(what): return "impossible frame length: \(what)"
        case let .checksumMismatch(stored, computed): return "checksum mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case .brokenChain: return "a chained frame whose chain could not be decoded (an earlier frame of its chain is damaged or missing)"
        case let .decompression(what): return "LZ4 decompression failed: \(what)"
        case let .records(offset, reason): return "bad record at body offset \(offset): \(reason)"
        case let .recordCountMismatch(header, found): return "header says \(header) records, body holds \(found)"
        }
    }
}

/// Builds long frames, each compressed on its own (checkpoint files, and version 1 segments in
/// tests): compresses a record body with LZ4 when that pays, adds the header and the checksum.
/// Keeps its buffers between frames. Log segments use `SegmentFrameEncoder`.
package struct FrameEncoder: ~Copyable {
    /// The last frame built: header then stored body.
    package private(set) var frame = ByteWriter(capacity: 64 << 10)

    package init() {}

    /// Builds the frame for `body` (at most `LogFormat.maxRawFrameLength` bytes) holding
    /// `recordCount` records from `firstSequence` on; returns its header. The frame's bytes are
    /// `frame.bytes` until the next call. `durableSequence` (at most `firstSequence`, which it
    /// defaults to) says up to where the records before were durable when it was written.
    @discardableResult
    package mutating func encode(
        body: UnsafeRawBufferPointer, firstSequence: UInt64, recordCount: Int, compress: Bool = true,
        durableSequence: UInt64? = nil, version: UInt8 = LogFormat.checkpointFrameVersion
    ) -> FrameHeader {
        let durable = min(durableSequence ?? firstSequence, firstSequence)
        precondition(body.count <= LogFormat.maxRawFrameLength, "frame body of \(body.count) bytes")
        precondition(LogFormat.readableVersions.contains(version), "frame version \(version)")
        frame.removeAll()
        let bound = Int(LZ4_compressBound(Int32(body.count)))
        let start = frame.extend(by: LogFormat.frameHeaderLength + max(bound, body.count))
        let destination = start + LogFormat.frameHeaderLength
        var stored = 0
        var flags: UInt8 = 0
        if compress && body.count > 0 {
            let compressed = Int(LZ4_compress_default(
                body.baseAddress!.assumingMemoryBound(to: CChar.self),
                destination.assumingMemoryBound(to: CChar.self),
                Int32(body.count), Int32(bound)))
            if compressed > 0 && compressed < body.count {
                stored = compressed
                flags = LogFormat.flagCompressed
            }
        }
        if flags == 0 {
            if body.count > 0 { destination.copyMemory(from: body.baseAddress!, byteCount: body.count) }
            stored = body.count
        }
        frame.count = LogFormat.frameHeaderLength + stored
        var header = FrameHeader(version: version, flags: flags, storedLength: stored, rawLength: body.count, firstSequence: firstSequence,
                                 recordCount: recordCount, durableSequence: max(durable, 1), checksum: 0)
        header.write(to: start)
        header.checksum = FrameEncoder.checksum(frame: UnsafeRawBufferPointer(start: start, count: frame.count))
        header.write(to: start)
        return header
    }

    /// The checksum of a long frame: its header up to the checksum field, then its stored body.
    package static func checksum(frame: UnsafeRawBufferPointer) -> UInt32 {
        checksum(frame: frame, headerLength: LogFormat.frameHeaderLength)
    }

    /// The checksum of a frame whose header is `headerLength` bytes (ending with the checksum).
    @inline(__always)
    package static func checksum(frame: UnsafeRawBufferPointer, headerLength: Int) -> UInt32 {
        let head = crc32c(UnsafeRawBufferPointer(rebasing: frame[0 ..< headerLength - 4]))
        return crc32c(UnsafeRawBufferPointer(rebasing: frame[headerLength...]), continuing: head)
    }
}

/// Checks and opens frames: header, checksum, decompression (continuing the segment's LZ4
/// chain for chained frames), records. Keeps its buffers, and the chain, between frames: a
/// segment's frames are decoded in order with one decoder.
package struct FrameDecoder: ~Copyable {
    private var scratch = ByteWriter(capacity: 64 << 10)
    private var chain = LZ4DecompressionChain()

    package init() {}

    /// A valid frame: its header and its raw body (valid until the next `decode`).
    package struct Frame {
        package var header: FrameHeader
        package var body: UnsafeRawBufferPointer
    }

    /// Forgets the chain: the next chained frame fails with `.brokenChain` (a new segment, or
    /// a jump past damage).
    package mutating func breakChain() { chain.forget() }

    /// Checks the frame at the start of `bytes` without decoding its body: the header is sound,
    /// the whole frame is present, the checksum holds. A chained frame can be checked so even
    /// when its chain cannot be decoded.
    package static func check(_ bytes: UnsafeRawBufferPointer, context: FrameContext) -> Result<FrameHeader, FrameFailure> {
        let header: FrameHeader
        switch FrameHeader.parse(bytes, context: context) {
        case let .success(parsed): header = parsed
        case let .failure(failure): return .failure(failure)
        }
        guard header.frameLength <= bytes.count else {
            return .failure(.truncated(needed: header.frameLength, available: bytes.count))
        }
        let computed = FrameEncoder.checksum(frame: UnsafeRawBufferPointer(rebasing: bytes[0 ..< header.frameLength]), headerLength: header.headerLength)
        guard computed == header.checksum else { return .failure(.checksumMismatch(stored: header.checksum, computed: computed)) }
        return .success(header)
    }

    /// Decodes the frame at the start of `bytes` (which may run on past it). Fails unless the
    /// header is sound, the whole frame is present, the checksum holds, the body decompresses to
    /// its stated length (a chained one continuing the frames decoded before it) and holds
    /// exactly the stated number of well-formed records. Any failure breaks the chain.
    package mutating func decode(_ bytes: UnsafeRawBufferPointer, context: FrameContext) -> Result<Frame, FrameFailure> {
        let result = decodeFrame(bytes, context: context)
        if case .failure = result { chain.forget() }
        return result
    }

    private mutating func decodeFrame(_ bytes: UnsafeRawBufferPointer, context: FrameContext) -> Result<Frame, FrameFailure> {
        let header: FrameHeader
        switch FrameDecoder.check(bytes, context: context) {
        case let .success(checked): header = checked
        case let .failure(failure): return .failure(failure)
        }
        let stored = UnsafeRawBufferPointer(rebasing: bytes[header.headerLength ..< header.frameLength])
        let body: UnsafeRawBufferPointer
        if header.isChained {
            guard chain.isOpen else { return .failure(.brokenChain) }
            switch chain.decodeNext(stored, rawLength: header.rawLength, compressed: header.isCompressed) {
            case let .success(decoded): body = decoded
            case let .failure(failure): return .failure(failure)
            }
        } else if header.isCompressed {
            if header.rawLength <= LZ4DecompressionChain.capacity {
                // Small enough to decode straight into the history of the chain it starts.
                switch chain.decodeFirst(stored, rawLength: header.rawLength) {
                case let .success(decoded): body = decoded
                case let .failure(failure): return .failure(failure)
                }
            } else {
                scratch.removeAll()
                let destination = scratch.extend(by: max(header.rawLength, 1))
                let produced = LZ4_decompress_safe(
                    stored.baseAddress!.assumingMemoryBound(to: CChar.self),
                    destination.assumingMemoryBound(to: CChar.self),
                    Int32(stored.count), Int32(header.rawLength))
                guard produced == Int32(header.rawLength) else {
                    return .failure(.decompression(produced < 0 ? "malformed block (error \(produced))" : "\(produced) bytes instead of \(header.rawLength)"))
                }
                body = UnsafeRawBufferPointer(start: destination, count: header.rawLength)
                chain.start(after: body)
            }
        } else {
            body = stored
            chain.start(after: body)
        }
        do {
            let found = try RecordDecoder.forEach(in: body, fleet: context.fleetRecords) { _ in }
            guard found == header.recordCount else { return .failure(.recordCountMismatch(header: header.recordCount, found: found)) }
        } catch let failure as RecordDecoder.Failure {
            return .failure(.records(offset: failure.offset, reason: failure.reason))
        } catch {
            return .failure(.records(offset: 0, reason: "\(error)"))
        }
        return .success(Frame(header: header, body: body))
    }
}
