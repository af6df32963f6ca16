import Hourglass
import HourglassCore
import NIOCore

/// The frames a fleet keeps in PostgreSQL: long frames of the local log's format (FORMAT.md:
/// header, LZ4, CRC-32C), version 3, whose own first sequence number is 1. The row's `seq` is the
/// frame's place in the partition's log (the database assigns it in the appending statement, so
/// the frame cannot carry it); the frame's checksum covers its records.
enum FleetFrames {
    static let context = FrameContext(version: LogFormat.version, baseSequence: 1, fleetRecords: true)

    /// A frame holding `records` records, ready to bind as `bytea`.
    static func encode(_ records: borrowing RecordEncoder, into encoder: inout FrameEncoder) -> ByteBuffer {
        encoder.encode(body: records.buffer.bytes, firstSequence: 1, recordCount: records.count, version: LogFormat.version)
        return ByteBuffer(bytes: encoder.frame.bytes)
    }

    /// Calls `body` with each record of a stored frame, after checking it holds `records`
    /// records (when given).
    static func forEachRecord(
        in frame: ByteBuffer, records: Int?, partition: Int, seq: Int64, decoder: inout FrameDecoder,
        _ body: (RecordView) throws(HourglassError) -> Void
    ) throws(HourglassError) {
        func corrupt(_ reason: String) -> HourglassError {
            .corruption(file: "hourglass_frames (partition \(partition), seq \(seq))", offset: 0, reason: reason)
        }
        var failure: HourglassError? = nil
        let result: Result<Int, HourglassError> = frame.withUnsafeReadableBytes { bytes in
            switch decoder.decode(bytes, context: context) {
            case let .failure(problem):
                return .failure(corrupt("\(problem)"))
            case let .success(decoded):
                if let records, decoded.header.recordCount != records {
                    return .failure(corrupt("the frame holds \(decoded.header.recordCount) records; the row says \(records)"))
                }
                do {
                    let count = try RecordDecoder.forEach(in: decoded.body, fleet: true) { record in
                        do throws(HourglassError) {
                            try body(record)
                        } catch {
                            failure = error
                            throw error
                        }
                    }
                    return .success(count)
                } catch let error as RecordDecoder.Failure {
                    return .failure(corrupt("record at offset \(error.offset): \(error.reason)"))
                } catch {
                    return .failure(failure ?? corrupt("\(error)"))
                }
            }
        }
        if case let .failure(error) = result { throw error }
    }
}

/// A timer's generation, as the fleet keeps it: the first 8 bytes (little endian) of the payload
/// the wheel and the log hold, before the caller's payload. It names one schedule of an id, so
/// an acknowledgement of an earlier delivery cannot settle a later schedule of the same id.
enum Generation {
    static let size = 8

    static func read(_ payload: UnsafeRawBufferPointer) -> UInt64 {
        guard payload.count >= size else { return 0 }
        return UInt64(littleEndian: payload.loadUnaligned(as: UInt64.self))
    }

    /// The stored payload: generation then `payload`.
    static func prefixed(_ generation: UInt64, _ payload: [UInt8]) -> [UInt8] {
        var stored = [UInt8](repeating: 0, count: size + payload.count)
        stored.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: generation.littleEndian, as: UInt64.self)
            if !payload.isEmpty { (bytes.baseAddress! + size).copyMemory(from: payload, byteCount: payload.count) }
        }
        return stored
    }
}
