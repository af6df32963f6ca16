#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A growable byte buffer that keeps its memory between uses: the encoders write into it.
package struct ByteWriter: ~Copyable {
    package private(set) var base: UnsafeMutableRawPointer
    package private(set) var capacity: Int
    package var count: Int = 0

    package init(capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        base = malloc(self.capacity)!
    }

    deinit { free(base) }

    package mutating func reserve(_ additional: Int) {
        let needed = count + additional
        guard needed > capacity else { return }
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        guard let memory = realloc(base, newCapacity) else { fatalError("Hourglass: out of memory growing a buffer to \(newCapacity) bytes") }
        base = memory
        capacity = newCapacity
    }

    package mutating func removeAll() { count = 0 }

    @inline(__always)
    package mutating func append(byte: UInt8) {
        reserve(1)
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    @inline(__always)
    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    package mutating func append(littleEndian value: UInt32) {
        reserve(4)
        (base + count).storeBytes(of: value.littleEndian, as: UInt32.self)
        count += 4
    }

    @inline(__always)
    package mutating func append(littleEndian value: UInt64) {
        reserve(8)
        (base + count).storeBytes(of: value.littleEndian, as: UInt64.self)
        count += 8
    }

    /// LEB128.
    @inline(__always)
    package mutating func append(varint value: UInt64) {
        reserve(LogFormat.maxVarintLength)
        var v = value
        var p = base + count
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, as: UInt8.self)
            v >>= 7
            p += 1
        }
        p.storeBytes(of: UInt8(v), as: UInt8.self)
        count = p - base + 1
    }

    /// Makes `count` bytes addressable and returns where they start (for writing in place).
    package mutating func extend(by length: Int) -> UnsafeMutableRawPointer {
        reserve(length)
        let start = base + count
        count += length
        return start
    }

    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// Reads what `ByteWriter` writes, with bounds checked: a malformed input ends in `nil`, never
/// in a read outside the buffer.
package struct ByteReader {
    package let bytes: UnsafeRawBufferPointer
    package private(set) var offset: Int = 0

    package init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    package var remaining: Int { bytes.count - offset }
    package var isAtEnd: Bool { offset >= bytes.count }

    @inline(__always)
    package mutating func readByte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    @inline(__always)
    package mutating func readVarint() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            let byte = bytes[offset]
            offset += 1
            if shift == 63 && byte > 1 { return nil }  // more than 64 bits
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    @inline(__always)
    package mutating func readBytes(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0 && count <= remaining else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + count])
    }
}
