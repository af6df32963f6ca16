import HourglassCore

/// Reads a checkpoint file: checks its trailer and every frame's checksum up front, then hands
/// out its frames one at a time.
package final class CheckpointReader {
    package let file: any StorageFile
    package let trailer: CheckpointTrailer
    /// Offsets of the frames, in order.
    private let offsets: [Int]
    private var next = 0
    private var decoder = FrameDecoder()

    /// Opens and checks `name`: the trailer, the name, the frame chain, every frame's CRC-32C
    /// (on `threads` threads). Throws `.corruption` naming the file and offset of the first problem.
    package init(directory: any StorageDirectory, name: String, threads: Int = 2) throws(StorageError) {
        let file = try directory.openFile(name, writable: false)
        self.file = file
        let parsed = file.withBytes { CheckpointTrailer.parse(file: $0) }
        let trailer: CheckpointTrailer
        switch parsed {
        case let .success(value): trailer = value
        case let .failure(problem):
            file.close()
            throw .corruption(file: file.path, offset: Int64(max(0, file.length - LogFormat.checkpointTrailerLength)), reason: problem.description)
        }
        guard CheckpointName.startSequence(name) == trailer.startSequence else {
            file.close()
            throw .corruption(file: file.path, offset: Int64(file.length - LogFormat.checkpointTrailerLength),
                              reason: "the trailer says start sequence \(trailer.startSequence), the name says otherwise")
        }
        self.trailer = trailer
        // Walk the frame headers (cheap), then check the checksums in parallel.
        var offsets: [Int] = []
        var expected: UInt64 = 1
        var problem: (Int, String)? = nil
        file.withBytes { bytes in
            var offset = 0
            let end = Int(trailer.framesBytes)
            while offset < end {
                switch FrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[offset ..< end]), context: .checkpoint) {
                case let .success(header):
                    guard header.firstSequence == expected else {
                        problem = (offset, "frame starts at record \(header.firstSequence), expected \(expected)")
                        return
                    }
                    guard offset + header.frameLength <= end else {
                        problem = (offset, "frame runs past the end of the frames")
                        return
                    }
                    offsets.append(offset)
                    expected = header.nextSequence
                    offset += header.frameLength
                case let .failure(failure):
                    problem = (offset, failure.description)
                    return
                }
            }
        }
        if problem == nil && expected - 1 != trailer.records {
            problem = (Int(trailer.framesBytes), "the frames hold \(expected - 1) records, the trailer says \(trailer.records)")
        }
        if problem == nil {
            problem = CheckpointReader.checkChecksums(file, offsets, end: Int(trailer.framesBytes), threads: threads)
        }
        if let (offset, reason) = problem {
            file.close()
            throw .corruption(file: file.path, offset: Int64(offset), reason: reason)
        }
        self.offsets = offsets
    }

    deinit { file.close() }

    private static func checkChecksums(_ file: any StorageFile, _ offsets: [Int], end: Int, threads: Int) -> (Int, String)? {
        let parts = max(1, min(threads, offsets.count))
        if parts == 1 { return checkRange(file, offsets, 0 ..< offsets.count, end: end) }
        let results = ResultBox<(Int, String)?>(count: parts)
        let done = Semaphore()
        let chunk = (offsets.count + parts - 1) / parts
        // Reading a file's bytes from several threads is safe: nothing writes it meanwhile.
        let shared = Unchecked(file)
        for part in 1 ..< parts {
            let range = (part * chunk) ..< min(offsets.count, (part + 1) * chunk)
            startThread(name: "hourglass-check") {
                results.set(part, checkRange(shared.value, offsets, range, end: end))
                done.signal()
            }
        }
        results.set(0, checkRange(file, offsets, 0 ..< min(chunk, offsets.count), end: end))
        for _ in 1 ..< parts { done.wait() }
        return results.values.compactMap { $0 }.min { $0.0 < $1.0 }
    }

    private static func checkRange(_ file: any StorageFile, _ offsets: [Int], _ range: Range<Int>, end: Int) -> (Int, String)? {
        file.withBytes { bytes in
            for i in range {
                let offset = offsets[i]
                let frameEnd = i + 1 < offsets.count ? offsets[i + 1] : end
                let frame = UnsafeRawBufferPointer(rebasing: bytes[offset ..< frameEnd])
                let stored = UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: LogFormat.frameChecksumOffset, as: UInt32.self))
                let computed = FrameEncoder.checksum(frame: frame)
                if stored != computed {
                    return (offset, FrameFailure.checksumMismatch(stored: stored, computed: computed).description)
                }
            }
            return nil
        }
    }

    package var frameCount: Int { offsets.count }
    /// Bytes of frames decoded so far (for a progress display; `trailer.framesBytes` in all).
    package var bytesRead: Int { next < offsets.count ? offsets[next] : Int(trailer.framesBytes) }
    package var framesRead: Int { next }
    package var isAtEnd: Bool { next >= offsets.count }

    /// Decodes the next frame and calls `body` with its records (valid during the call).
    /// Returns false at the end.
    package func nextFrame(_ body: (FrameDecoder.Frame) throws -> Void) throws(StorageError) -> Bool {
        guard next < offsets.count else { return false }
        let offset = offsets[next]
        let result = file.withBytes { decoder.decode(UnsafeRawBufferPointer(rebasing: $0[offset ..< Int(trailer.framesBytes)]), context: .checkpoint) }
        switch result {
        case let .success(frame):
            next += 1
            do { try body(frame) } catch { preconditionFailure("checkpoint frame handler threw \(error)") }
            return true
        case let .failure(failure):
            throw .corruption(file: file.path, offset: Int64(offset), reason: failure.description)
        }
    }
}

/// Results written by several threads, one slot each.
final class ResultBox<T>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { slots[index] = value } }
    var values: [T] { lock.withLock { slots.compactMap { $0 } } }
}

/// Hands a non-`Sendable` value to another thread where the caller guarantees it is safe.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
