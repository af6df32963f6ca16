import CHourglass

/// The trailer that ends a checkpoint file (see `Docs/CHECKPOINTS.md`).
package struct CheckpointTrailer: Equatable, Sendable {
    package var startSequence: UInt64
    package var records: UInt64
    package var timers: UInt64
    package var framesBytes: UInt64
    package var createdMilliseconds: Int64

    package init(startSequence: UInt64, records: UInt64, timers: UInt64, framesBytes: UInt64, createdMilliseconds: Int64) {
        self.startSequence = startSequence
        self.records = records
        self.timers = timers
        self.framesBytes = framesBytes
        self.createdMilliseconds = createdMilliseconds
    }

    /// Reads the trailer from the last 64 bytes of `file`.
    package static func parse(file: UnsafeRawBufferPointer) -> Result<CheckpointTrailer, FormatProblem> {
        let field = LogFormat.CheckpointTrailerField.self
        guard file.count >= LogFormat.checkpointTrailerLength else { return .failure("file shorter than a checkpoint trailer") }
        let trailer = UnsafeRawBufferPointer(rebasing: file[(file.count - LogFormat.checkpointTrailerLength)...])
        let magic = UInt64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.magic, as: UInt64.self))
        guard magic == LogFormat.checkpointMagic else { return .failure("no checkpoint trailer (bad magic)") }
        let stored = UInt32(littleEndian: trailer.loadUnaligned(fromByteOffset: LogFormat.checkpointTrailerChecksumOffset, as: UInt32.self))
        let computed = crc32c(UnsafeRawBufferPointer(rebasing: trailer[0 ..< LogFormat.checkpointTrailerChecksumOffset]))
        guard stored == computed else { return .failure("checkpoint trailer checksum mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))") }
        let version = UInt16(littleEndian: trailer.loadUnaligned(fromByteOffset: field.version, as: UInt16.self))
        guard LogFormat.readableCheckpointVersions.contains(version) else {
            let readable = LogFormat.readableCheckpointVersions
            return .failure("checkpoint version \(version) is not supported (this build reads versions \(readable.lowerBound) ... \(readable.upperBound))")
        }
        let length = UInt16(littleEndian: trailer.loadUnaligned(fromByteOffset: field.trailerLength, as: UInt16.self))
        guard length == UInt16(LogFormat.checkpointTrailerLength) else { return .failure("checkpoint trailer length \(length)") }
        let parsed = CheckpointTrailer(
            startSequence: UInt64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.startSequence, as: UInt64.self)),
            records: UInt64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.records, as: UInt64.self)),
            timers: UInt64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.timers, as: UInt64.self)),
            framesBytes: UInt64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.framesBytes, as: UInt64.self)),
            createdMilliseconds: Int64(littleEndian: trailer.loadUnaligned(fromByteOffset: field.created, as: Int64.self)))
        guard parsed.framesBytes == UInt64(file.count - LogFormat.checkpointTrailerLength) else {
            return .failure("the trailer says \(parsed.framesBytes) bytes of frames, the file holds \(file.count - LogFormat.checkpointTrailerLength)")
        }
        return .success(parsed)
    }

    /// The 64 trailer bytes, checksum included.
    package var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: LogFormat.checkpointTrailerLength)
        bytes.withUnsafeMutableBytes { raw in
            let field = LogFormat.CheckpointTrailerField.self
            let p = raw.baseAddress!
            p.storeBytes(of: LogFormat.checkpointMagic.littleEndian, toByteOffset: field.magic, as: UInt64.self)
            p.storeBytes(of: LogFormat.checkpointVersion.littleEndian, toByteOffset: field.version, as: UInt16.self)
            p.storeBytes(of: UInt16(LogFormat.checkpointTrailerLength).littleEndian, toByteOffset: field.trailerLength, as: UInt16.self)
            p.storeBytes(of: startSequence.littleEndian, toByteOffset: field.startSequence, as: UInt64.self)
            p.storeBytes(of: records.littleEndian, toByteOffset: field.records, as: UInt64.self)
            p.storeBytes(of: timers.littleEndian, toByteOffset: field.timers, as: UInt64.self)
            p.storeBytes(of: framesBytes.littleEndian, toByteOffset: field.framesBytes, as: UInt64.self)
            p.storeBytes(of: createdMilliseconds.littleEndian, toByteOffset: field.created, as: Int64.self)
            let checksum = crc32c(UnsafeRawBufferPointer(start: p, count: LogFormat.checkpointTrailerChecksumOffset))
            p.storeBytes(of: checksum.littleEndian, toByteOffset: LogFormat.checkpointTrailerChecksumOffset, as: UInt32.self)
        }
        return bytes
    }
}
