import CLZ4

/// The on-disk format, version 1: every constant of `Docs/FORMAT.md`, in one place.
public enum LogFormat {
    public static let version: UInt8 = 1

    // MARK: Segments

    /// "HGWALSEG"
    public static let segmentMagic: UInt64 = 0x4745_534C_4157_4748
    public static let segmentHeaderLength = 64
    /// Offset of the header's CRC-32C (covering the bytes before it).
    public static let segmentHeaderChecksumOffset = 60

    // MARK: Checkpoints

    /// "HGCHKPT1"
    public static let checkpointMagic: UInt64 = 0x3154_504B_4843_4748
    public static let checkpointTrailerLength = 64
    public static let checkpointTrailerChecksumOffset = 60

    // MARK: Frames

    /// The bytes "HGLF" read as a little-endian u32.
    public static let frameMagic: UInt32 = 0x464C_4748
    public static let frameHeaderLength = 40
    /// Offset of the durable sequence number: every record before it was durable (synced) when
    /// the frame was written.
    public static let frameDurableOffset = 28
    /// Offset of the frame's CRC-32C (covering the header bytes before it, then the body).
    public static let frameChecksumOffset = 36
    /// The largest raw (uncompressed) body of one frame.
    public static let maxRawFrameLength = 32 << 20
    public static let flagCompressed: UInt8 = 1 << 0
    public static let knownFlags: UInt8 = flagCompressed

    // MARK: Records

    public enum RecordType: UInt8, Sendable, CaseIterable {
        case schedule = 1
        case cancel = 2
        case fire = 3
        case ack = 4
        case retry = 5
    }

    public static let maxIDLength = 1024
    public static let maxPayloadLength = (1 << 24) - 1
    /// A varint is at most 10 bytes.
    public static let maxVarintLength = 10
    /// The longest record: a SCHEDULE with the longest id and payload.
    public static let maxRecordLength = 1 + maxVarintLength + maxIDLength + 2 * maxVarintLength + maxVarintLength + maxPayloadLength

    // MARK: Relationships

    /// Checks how the constants relate; the tests call it, and so does every reader and writer
    /// in debug builds.
    public static func checkConsistency() {
        precondition(maxRecordLength <= maxRawFrameLength, "a record must fit in one frame")
        precondition(Int(LZ4_compressBound(Int32(maxRawFrameLength))) <= Int(Int32.max), "a frame's compressed bound must fit LZ4's int")
        precondition(frameChecksumOffset + 4 == frameHeaderLength, "the frame checksum ends the header")
        precondition(frameDurableOffset + 8 == frameChecksumOffset, "the durable sequence precedes the checksum")
        precondition(segmentHeaderChecksumOffset + 4 == segmentHeaderLength, "the segment checksum ends the header")
        precondition(checkpointTrailerChecksumOffset + 4 == checkpointTrailerLength, "the checkpoint checksum ends the trailer")
        precondition(maxIDLength == TimerWheel.maxIDLength && maxPayloadLength == TimerWheel.maxPayloadLength,
                     "the log and the wheel must agree on the limits")
    }

    /// The smallest segment that holds the largest frame after its header.
    public static var minimumSegmentLength: Int {
        segmentHeaderLength + frameHeaderLength + Int(LZ4_compressBound(Int32(maxRawFrameLength)))
    }
}
