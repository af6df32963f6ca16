import CLZ4
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The one door to LZ4's streaming API and to the history buffers it points into: both sides of
// a chain (see "Chains" in `Docs/FORMAT.md`). Everything else sees bodies in and blocks out.

/// The compressing side of a segment's chain: an `LZ4_stream_t` and a history buffer holding
/// the raw bodies compressed so far (the last `LogFormat.chainDictionaryLength` bytes at least),
/// so that each block may refer to what came before it.
struct LZ4CompressionChain: ~Copyable {
    /// Bytes of history kept in memory; when a body does not fit after it, the last 64 KiB move
    /// to the front (`LZ4_saveDict`), so that copy is paid once per megabyte.
    static let capacity = 1 << 20
    private let stream: UnsafeMutablePointer<LZ4_stream_t>
    private let history: UnsafeMutableRawPointer
    /// The history is `history[0 ..< end]`; the stream's dictionary ends there.
    private var end = 0

    init() {
        guard let stream = LZ4_createStream() else { fatalError("Hourglass: out of memory creating an LZ4 stream") }
        self.stream = stream
        history = malloc(LZ4CompressionChain.capacity)!
    }

    deinit {
        LZ4_freeStream(stream)
        free(history)
    }

    /// Compresses `body` as the first block of a new chain into `destination` (`capacity`
    /// bytes, at least `LZ4_compressBound(body.count)`). Returns the compressed length.
    mutating func compressFirst(_ body: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        LZ4_resetStream_fast(stream)
        end = 0
        if body.count <= LogFormat.maxChainedRawLength {
            return compressNext(body, into: destination, capacity: capacity)
        }
        // A big body is compressed where it is; only LZ4's window of it is kept.
        let compressed = compress(body.baseAddress!, count: body.count, into: destination, capacity: capacity)
        end = Int(LZ4_saveDict(stream, history.assumingMemoryBound(to: CChar.self), Int32(LogFormat.chainDictionaryLength)))
        assert(end == min(body.count, LogFormat.chainDictionaryLength))
        return compressed
    }

    /// Starts a new chain whose history is empty (an empty first frame).
    mutating func startEmpty() {
        LZ4_resetStream_fast(stream)
        end = 0
    }

    /// Compresses `body` (at most `LogFormat.maxChainedRawLength` bytes) as the next block of
    /// the chain: it may refer to the bodies before it.
    mutating func compressNext(_ body: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        precondition(body.count <= LogFormat.maxChainedRawLength, "a chained body of \(body.count) bytes")
        if end + body.count > LZ4CompressionChain.capacity {
            end = Int(LZ4_saveDict(stream, history.assumingMemoryBound(to: CChar.self), Int32(LogFormat.chainDictionaryLength)))
        }
        let source = history + end
        if body.count > 0 { source.copyMemory(from: body.baseAddress!, byteCount: body.count) }
        end += body.count
        return compress(source, count: body.count, into: destination, capacity: capacity)
    }

    @inline(__always)
    private func compress(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        guard count > 0 else { return 0 }
        let compressed = Int(LZ4_compress_fast_continue(
            stream, source.assumingMemoryBound(to: CChar.self), destination.assumingMemoryBound(to: CChar.self),
            Int32(count), Int32(capacity), 1))
        precondition(compressed > 0, "LZ4 failed to compress \(count) bytes into \(capacity)")
        return compressed
    }
}

/// The decompressing side: the decoded output of the chain so far (its last 64 KiB at least),
/// which is the dictionary of the next chained block, kept contiguous before it (LZ4's fast
/// "prefix" case).
struct LZ4DecompressionChain: ~Copyable {
    static let capacity = 1 << 20
    private let history: UnsafeMutableRawPointer
    private var end = 0
    /// Whether the history is that of a chain decoded so far (false after `forget`).
    private(set) var isOpen = false

    init() { history = malloc(LZ4DecompressionChain.capacity)! }
    deinit { free(history) }

    mutating func forget() {
        isOpen = false
        end = 0
    }

    /// Decodes an unchained block of `rawLength` (at most `capacity`) bytes into the start of the
    /// history: a new chain.
    mutating func decodeFirst(_ stored: UnsafeRawBufferPointer, rawLength: Int) -> Result<UnsafeRawBufferPointer, FrameFailure> {
        precondition(rawLength <= LZ4DecompressionChain.capacity)
        forget()
        let produced = LZ4_decompress_safe(
            stored.baseAddress!.assumingMemoryBound(to: CChar.self), history.assumingMemoryBound(to: CChar.self),
            Int32(stored.count), Int32(rawLength))
        guard produced == Int32(rawLength) else { return .failure(failure(produced, rawLength)) }
        end = rawLength
        isOpen = true
        return .success(UnsafeRawBufferPointer(start: history, count: rawLength))
    }

    /// Starts a new chain after an unchained body decoded elsewhere: keeps its last 64 KiB.
    mutating func start(after body: UnsafeRawBufferPointer) {
        let kept = min(body.count, LogFormat.chainDictionaryLength)
        if kept > 0 { history.copyMemory(from: body.baseAddress! + (body.count - kept), byteCount: kept) }
        end = kept
        isOpen = true
    }

    /// Decodes the next chained block (`rawLength` at most `LogFormat.maxChainedRawLength`),
    /// stored as LZ4 or as is, after the history.
    mutating func decodeNext(_ stored: UnsafeRawBufferPointer, rawLength: Int, compressed: Bool) -> Result<UnsafeRawBufferPointer, FrameFailure> {
        precondition(isOpen && rawLength <= LogFormat.maxChainedRawLength)
        if end + rawLength > LZ4DecompressionChain.capacity {
            let kept = min(end, LogFormat.chainDictionaryLength)
            memmove(history, history + (end - kept), kept)
            end = kept
        }
        let destination = history + end
        if compressed {
            let dictionary = min(end, LogFormat.chainDictionaryLength)
            let produced = LZ4_decompress_safe_usingDict(
                stored.baseAddress!.assumingMemoryBound(to: CChar.self), destination.assumingMemoryBound(to: CChar.self),
                Int32(stored.count), Int32(rawLength),
                (destination - dictionary).assumingMemoryBound(to: CChar.self), Int32(dictionary))
            guard produced == Int32(rawLength) else { return .failure(failure(produced, rawLength)) }
        } else if rawLength > 0 {
            destination.copyMemory(from: stored.baseAddress!, byteCount: rawLength)
        }
        end += rawLength
        return .success(UnsafeRawBufferPointer(start: destination, count: rawLength))
    }

    private func failure(_ produced: Int32, _ rawLength: Int) -> FrameFailure {
        .decompression(produced < 0 ? "malformed block (error \(produced))" : "\(produced) bytes instead of \(rawLength)")
    }
}
