/// A fast keyed hash for timer ids (short byte strings): 8 bytes at a time, each word folded
/// through a 64×64→128-bit multiply. The key (`seed`) is random per engine so that a client
/// cannot choose ids that collide in the index.
package func hashID(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
    @inline(__always)
    func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }
    let k0: UInt64 = 0xA076_1D64_78BD_642F
    let k1: UInt64 = 0xE703_7ED1_A0B4_28DB
    let count = bytes.count
    var h = mix(seed ^ k0, UInt64(truncatingIfNeeded: count) ^ k1)
    guard let base = bytes.baseAddress else { return mix(h, k1) }
    var offset = 0
    while offset + 16 <= count {
        let a = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        let b = base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
        h = mix(a ^ k0, b ^ h)
        offset += 16
    }
    if offset + 8 <= count {
        let a = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        h = mix(a ^ k1, h ^ k0)
        offset += 8
    }
    if offset < count {
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < count {
            tail |= UInt64(base.load(fromByteOffset: offset, as: UInt8.self)) &<< shift
            shift &+= 8
            offset += 1
        }
        h = mix(tail ^ k0, h ^ k1)
    }
    return mix(h ^ k1, 0x8EBC_6AF0_9C88_C6E3)
}
