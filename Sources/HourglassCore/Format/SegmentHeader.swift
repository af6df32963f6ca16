import CHourglass

/// The fixed header of a segment file (see `Docs/FORMAT.md`).
package struct SegmentHeader: Equatable, Sendable {
    package var segmentNumber: UInt64
    package var firstSequence: UInt64
    package var segmentLength: UInt64
    package var createdMilliseconds: Int64
    /// Every record before this sequence number was durable when the segment was started (as a
    /// frame's durable sequence: evidence that damage before it is corruption, not a lost write).
    package var durableSequence: UInt64
    /// The format of the segment's frames: 2 (written by this build) or 1 (read only).
    package var version: UInt8

    package init(segmentNumber: UInt64, firstSequence: UInt64, segmentLength: UInt64, createdMilliseconds: Int64, durableSequence: UInt64? = nil,
                version: UInt8 = LogFormat.version) {
        precondition(LogFormat.readableVersions.contains(version), "segment version \(version)")
        self.version = version
        self.segmentNumber = segmentNumber
        self.firstSequence = firstSequence
        self.segmentLength = segmentLength
        self.createdMilliseconds = createdMilliseconds
        self.durableSequence = max(1, min(durableSequence ?? firstSequence, firstSequence))
    }

    package enum ParseResult: Equatable, Sendable {
        case valid(SegmentHeader)
        /// All zeros: a spare segment, prepared but never written.
        case blank
        case invalid(FormatProblem)
    }

    package static func parse(_ bytes: UnsafeRawBufferPointer) -> ParseResult {
        let field = LogFormat.SegmentHeaderField.self
        guard bytes.count >= LogFormat.segmentHeaderLength else { return .invalid("file shorter than a segment header") }
        let header = UnsafeRawBufferPointer(rebasing: bytes[0 ..< LogFormat.segmentHeaderLength])
        if header.allSatisfy({ $0 == 0 }) { return .blank }
        let magic = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: field.magic, as: UInt64.self))
        guard magic == LogFormat.segmentMagic else { return .invalid("not a segment (bad magic)") }
        let stored = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: LogFormat.segmentHeaderChecksumOffset, as: UInt32.self))
        let computed = crc32c(UnsafeRawBufferPointer(rebasing: header[0 ..< LogFormat.segmentHeaderChecksumOffset]))
        guard stored == computed else { return .invalid("segment header checksum mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))") }
        let version = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: field.version, as: UInt16.self))
        guard version >= UInt16(LogFormat.readableVersions.lowerBound) && version <= UInt16(LogFormat.readableVersions.upperBound) else {
            return .invalid("segment version \(version) is not supported (this build reads versions \(LogFormat.readableVersions.lowerBound) ... \(LogFormat.readableVersions.upperBound))")
        }
        let headerLength = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: field.headerLength, as: UInt16.self))
        guard headerLength == UInt16(LogFormat.segmentHeaderLength) else { return .invalid("segment header length \(headerLength)") }
        let first = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: field.firstSequence, as: UInt64.self))
        let durable = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: field.durableSequence, as: UInt64.self))
        guard durable >= 1 && durable <= first else { return .invalid("segment durable sequence \(durable) after its first sequence \(first)") }
        return .valid(SegmentHeader(
            segmentNumber: UInt64(littleEndian: header.loadUnaligned(fromByteOffset: field.segmentNumber, as: UInt64.self)),
            firstSequence: first,
            segmentLength: UInt64(littleEndian: header.loadUnaligned(fromByteOffset: field.segmentLength, as: UInt64.self)),
            createdMilliseconds: Int64(littleEndian: header.loadUnaligned(fromByteOffset: field.created, as: Int64.self)),
            durableSequence: durable, version: UInt8(version)))
    }

    /// Writes the 64-byte header, checksum included.
    package func write(to destination: UnsafeMutableRawPointer) {
        let field = LogFormat.SegmentHeaderField.self
        destination.initializeMemory(as: UInt8.self, repeating: 0, count: LogFormat.segmentHeaderLength)
        destination.storeBytes(of: LogFormat.segmentMagic.littleEndian, toByteOffset: field.magic, as: UInt64.self)
        destination.storeBytes(of: UInt16(version).littleEndian, toByteOffset: field.version, as: UInt16.self)
        destination.storeBytes(of: UInt16(LogFormat.segmentHeaderLength).littleEndian, toByteOffset: field.headerLength, as: UInt16.self)
        destination.storeBytes(of: segmentNumber.littleEndian, toByteOffset: field.segmentNumber, as: UInt64.self)
        destination.storeBytes(of: firstSequence.littleEndian, toByteOffset: field.firstSequence, as: UInt64.self)
        destination.storeBytes(of: segmentLength.littleEndian, toByteOffset: field.segmentLength, as: UInt64.self)
        destination.storeBytes(of: createdMilliseconds.littleEndian, toByteOffset: field.created, as: Int64.self)
        destination.storeBytes(of: durableSequence.littleEndian, toByteOffset: field.durableSequence, as: UInt64.self)
        let checksum = crc32c(UnsafeRawBufferPointer(start: destination, count: LogFormat.segmentHeaderChecksumOffset))
        destination.storeBytes(of: checksum.littleEndian, toByteOffset: LogFormat.segmentHeaderChecksumOffset, as: UInt32.self)
    }
}
