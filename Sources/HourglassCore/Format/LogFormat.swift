import CLZ4

/// The on-disk format, version 3: every constant of `Docs/FORMAT.md`, in one place.
package enum LogFormat {
    /// The version this build writes into new segments. Version 3 frames are framed as version 2
    /// ones; the version says their records may include SERIES and NEXT (recurring timers).
    package static let version: UInt8 = 3
    /// The segment (and frame) versions this build reads: older segments are read, never
    /// appended to.
    package static let readableVersions: ClosedRange<UInt8> = 1 ... 3
    /// Checkpoint files keep the version 1 frame format (long headers, never chained).
    package static let checkpointFrameVersion: UInt8 = 1
    /// The checkpoint file format (its trailer's version) this build writes: 2 may hold SERIES
    /// records; 1 holds only SCHEDULE and FIRE.
    package static let checkpointVersion: UInt16 = 2
    /// The checkpoint versions this build reads.
    package static let readableCheckpointVersions: ClosedRange<UInt16> = 1 ... 2

    // MARK: Segments

    /// "HGWALSEG"
    package static let segmentMagic: UInt64 = 0x4745_534C_4157_4748
    package static let segmentHeaderLength = 64
    /// Offset of the header's CRC-32C (covering the bytes before it).
    package static let segmentHeaderChecksumOffset = SegmentHeaderField.checksum

    // MARK: Checkpoints

    /// "HGCHKPT1"
    package static let checkpointMagic: UInt64 = 0x3154_504B_4843_4748
    package static let checkpointTrailerLength = 64
    package static let checkpointTrailerChecksumOffset = CheckpointTrailerField.checksum

    // MARK: Long frames (version 1 and 2)

    /// The bytes "HGLF" read as a little-endian u32.
    package static let frameMagic: UInt32 = 0x464C_4748
    /// The long header: big frames, frames the compact header cannot describe, checkpoints.
    package static let frameHeaderLength = 40
    /// Offset of the durable sequence number: every record before it was durable (synced) when
    /// the frame was written.
    package static let frameDurableOffset = LongFrameField.durableSequence
    /// Offset of the frame's CRC-32C (covering the header bytes before it, then the body).
    package static let frameChecksumOffset = LongFrameField.checksum
    /// The largest raw (uncompressed) body of one frame.
    package static let maxRawFrameLength = 32 << 20
    package static let flagCompressed: UInt8 = 1 << 0
    /// Version 2: the body continues the segment's LZ4 chain (see `Docs/FORMAT.md`).
    package static let flagChained: UInt8 = 1 << 1
    /// The flags each frame version knows.
    package static func knownFlags(version: UInt8) -> UInt8 { version >= 2 ? flagCompressed | flagChained : flagCompressed }

    // MARK: Compact frames (version 2)

    /// The first byte of a compact frame header ("h"; a long header starts with "H").
    package static let compactFrameMagic: UInt8 = 0x68
    package static let compactFrameHeaderLength = 15
    /// Offset of the compact header's CRC-32C (covering the header bytes before it, then the body).
    package static let compactFrameChecksumOffset = CompactFrameField.checksum
    /// Stored and raw lengths are 12 bits each in a compact header.
    package static let compactLengthBits = 12
    package static let maxCompactLength = (1 << compactLengthBits) - 1
    package static let maxCompactRecords = 255
    /// A compact header keeps the low 24 bits of the first sequence number; the rest comes from
    /// the segment header's first sequence (a compact frame starts less than 2^24 records after it).
    package static let compactSequenceBits = 24
    package static let compactSequenceSpan: UInt64 = 1 << 24
    /// `first - durable` is stored saturated at this value (a durable sequence lower than the
    /// truth: less evidence, never false evidence).
    package static let maxDurableLag: UInt64 = 0xFFFF
    /// The smallest frame header.
    package static let minFrameHeaderLength = compactFrameHeaderLength

    // MARK: Chains (version 2)

    /// LZ4's window: the decoder keeps this much of the chain's decoded output as dictionary.
    package static let chainDictionaryLength = 64 << 10
    /// The largest raw body of a chained frame; bigger frames start a new chain.
    package static let maxChainedRawLength = 64 << 10
    /// The writer starts a new chain once the chain holds this many raw bytes: what one damaged
    /// frame can make salvage drop is bounded by it.
    package static let chainRestartRawBytes = 1 << 20

    // MARK: Records

    package enum RecordType: UInt8, Sendable, CaseIterable {
        case schedule = 1
        case cancel = 2
        case fire = 3
        case ack = 4
        case retry = 5
        /// A recurring timer (format 3): a SCHEDULE plus its rule and the state of its series.
        case series = 6
        /// The next occurrence of a series armed (format 3): replaces the series' timer in place.
        case next = 7
        /// A consumer's acknowledgement of one delivery, named by the timer's generation (a
        /// fleet's PostgreSQL frames only: any node appends it, the partition's owner applies it
        /// when the generation is still the timer's). A local log holding one is corrupt.
        case ackOf = 8
        /// A consumer's retry of one delivery, named by its generation (fleet frames only).
        case retryOf = 9

        /// Whether the record belongs only in a fleet's PostgreSQL frames (see `Docs/REPLICATION.md`).
        package var isFleetOnly: Bool { self == .ackOf || self == .retryOf }
    }

    package static let maxIDLength = 1024
    package static let maxPayloadLength = (1 << 24) - 1
    /// A varint is at most 10 bytes.
    package static let maxVarintLength = 10
    /// The longest encoded recurrence rule of a SERIES record.
    package static let maxRuleLength = 1024
    /// The longest record: a SERIES with the longest id, payload and rule.
    package static let maxRecordLength = 1 + maxVarintLength + maxIDLength + 2 * maxVarintLength + maxVarintLength + maxPayloadLength
        + maxVarintLength + maxRuleLength + 3 * maxVarintLength

    // MARK: Field offsets (FORMAT.md's grammar: every reader and writer uses these)

    /// The segment header's fields.
    package enum SegmentHeaderField {
        package static let magic = 0, version = 8, headerLength = 10, segmentNumber = 16, firstSequence = 24
        package static let segmentLength = 32, created = 40, durableSequence = 48, checksum = 60
    }

    /// The checkpoint trailer's fields.
    package enum CheckpointTrailerField {
        package static let magic = 0, version = 8, trailerLength = 10, startSequence = 16, records = 24
        package static let timers = 32, framesBytes = 40, created = 48, checksum = 60
    }

    /// The long frame header's fields.
    package enum LongFrameField {
        package static let magic = 0, version = 4, flags = 5, headerLength = 6, storedLength = 8, rawLength = 12
        package static let firstSequence = 16, recordCount = 24, durableSequence = 28, checksum = 36
    }

    /// The compact frame header's fields (`lengths` and `firstSequence` are 24-bit).
    package enum CompactFrameField {
        package static let magic = 0, flags = 1, recordCount = 2, lengths = 3, durableLag = 6, firstSequence = 8, checksum = 11
    }

    // MARK: Relationships

    /// Checks how the constants relate; the tests call it, and so does every reader and writer
    /// in debug builds.
    package static func checkConsistency() {
        precondition(maxRecordLength <= maxRawFrameLength, "a record must fit in one frame")
        precondition(Int(LZ4_compressBound(Int32(maxRawFrameLength))) <= Int(Int32.max), "a frame's compressed bound must fit LZ4's int")
        precondition(frameChecksumOffset + 4 == frameHeaderLength, "the frame checksum ends the header")
        precondition(frameDurableOffset + 8 == frameChecksumOffset, "the durable sequence precedes the checksum")
        precondition(compactFrameChecksumOffset + 4 == compactFrameHeaderLength, "the compact frame checksum ends its header")
        precondition(1 + 1 + 1 + (2 * compactLengthBits) / 8 + 2 + compactSequenceBits / 8 == compactFrameChecksumOffset,
                     "magic, flags, count, lengths, durable lag and sequence fill the compact header before its checksum")
        precondition(compactSequenceSpan == 1 << UInt64(compactSequenceBits), "the sequence span matches its bits")
        precondition(maxDurableLag == UInt64(UInt16.max), "the durable lag is a u16")
        precondition(maxCompactRecords == Int(UInt8.max), "the compact record count is a u8")
        precondition(compactFrameHeaderLength < frameHeaderLength && minFrameHeaderLength == compactFrameHeaderLength,
                     "the compact header is the smaller one")
        precondition(UInt8(truncatingIfNeeded: frameMagic) != compactFrameMagic && compactFrameMagic != 0,
                     "the first byte tells a compact header from a long one and from zeros")
        precondition(maxCompactLength < maxChainedRawLength, "every compact frame may be chained")
        precondition(maxChainedRawLength <= chainRestartRawBytes && chainDictionaryLength <= maxChainedRawLength,
                     "a chain holds at least one chained frame and LZ4's window")
        precondition(readableVersions.contains(version) && readableVersions.contains(checkpointFrameVersion), "this build reads what it writes")
        precondition(knownFlags(version: 1) & flagChained == 0, "version 1 frames are never chained")
        precondition(segmentHeaderChecksumOffset + 4 == segmentHeaderLength, "the segment checksum ends the header")
        precondition(checkpointTrailerChecksumOffset + 4 == checkpointTrailerLength, "the checkpoint checksum ends the trailer")
        precondition(maxIDLength == TimerWheel.maxIDLength && maxPayloadLength == TimerWheel.maxPayloadLength,
                     "the log and the wheel must agree on the limits")
    }

    /// The smallest segment that holds the largest frame after its header.
    package static var minimumSegmentLength: Int {
        segmentHeaderLength + frameHeaderLength + Int(LZ4_compressBound(Int32(maxRawFrameLength)))
    }
}

/// The rule of the directory's numbered files: a prefix, the number in 20 decimal digits (so
/// that names sort as numbers), a suffix. Segments and checkpoints are named by it; every
/// reader and writer goes through it.
package struct NumberedFileName: Sendable {
    package let prefix: String
    package let suffix: String

    package func name(_ number: UInt64) -> String {
        let digits = String(number)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    package func number(_ name: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count == prefix.count + 20 + suffix.count else { return nil }
        return UInt64(name.dropFirst(prefix.count).dropLast(suffix.count))
    }
}

/// `wal-<segment number>.log`.
package enum SegmentName {
    package static let rule = NumberedFileName(prefix: "wal-", suffix: ".log")
    package static var prefix: String { rule.prefix }
    package static func name(_ number: UInt64) -> String { rule.name(number) }
    package static func number(_ name: String) -> UInt64? { rule.number(name) }
}

/// `checkpoint-<start sequence>.hgc`.
package enum CheckpointName {
    package static let rule = NumberedFileName(prefix: "checkpoint-", suffix: ".hgc")
    package static var prefix: String { rule.prefix }
    package static func name(_ startSequence: UInt64) -> String { rule.name(startSequence) }
    package static func startSequence(_ name: String) -> UInt64? { rule.number(name) }

    /// The start sequences of the checkpoints in `names`, newest first.
    package static func all(in names: [String]) -> [UInt64] {
        names.compactMap(startSequence).sorted(by: >)
    }
}
