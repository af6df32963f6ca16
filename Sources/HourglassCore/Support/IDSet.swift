/// A set of ids held as 128-bit hashes (two keyed 64-bit hashes): 16 bytes per id, no id
/// bytes kept. Two different ids collide with probability about n² / 2^129: never, in practice.
/// Each member carries one flag bit the caller may set (`mark`).
package struct IDSet: Sendable {
    private var slots: [UInt64]  // pairs (a, b); a == 0 marks an empty slot
    private var mask: Int
    package private(set) var count = 0
    private let seedA: UInt64
    private let seedB: UInt64

    package init(seed: UInt64 = .random(in: .min ... .max)) {
        slots = [UInt64](repeating: 0, count: 2 * 64)
        mask = 63
        seedA = seed
        seedB = seed ^ 0x9E37_79B9_7F4A_7C15
    }

    private func key(_ id: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        let a = hashID(id, seed: seedA) | 1  // never 0: 0 marks an empty slot
        let b = hashID(id, seed: seedB) & ~1  // the low bit is the flag
        return (a, b)
    }

    private func find(_ k: (UInt64, UInt64)) -> (index: Int, found: Bool) {
        var i = Int(truncatingIfNeeded: k.0 >> 7) & mask
        while true {
            let a = slots[2 * i]
            if a == 0 { return (i, false) }
            if a == k.0 && slots[2 * i + 1] & ~1 == k.1 { return (i, true) }
            i = (i + 1) & mask
        }
    }

    /// Adds `id`; returns whether it was new.
    @discardableResult
    package mutating func insert(_ id: UnsafeRawBufferPointer) -> Bool {
        if (count + 1) * 2 > mask + 1 { grow() }
        let k = key(id)
        let (i, found) = find(k)
        if found { return false }
        slots[2 * i] = k.0
        slots[2 * i + 1] = k.1
        count += 1
        return true
    }

    package func contains(_ id: UnsafeRawBufferPointer) -> Bool { find(key(id)).found }

    /// Sets the member's flag; false when `id` is not a member.
    @discardableResult
    package mutating func mark(_ id: UnsafeRawBufferPointer) -> Bool {
        let (i, found) = find(key(id))
        if found { slots[2 * i + 1] |= 1 }
        return found
    }

    /// Whether `id` is a member with its flag set.
    package func isMarked(_ id: UnsafeRawBufferPointer) -> Bool {
        let (i, found) = find(key(id))
        return found && slots[2 * i + 1] & 1 == 1
    }

    private mutating func grow() {
        let old = slots
        let capacity = (mask + 1) * 2
        slots = [UInt64](repeating: 0, count: 2 * capacity)
        mask = capacity - 1
        for j in stride(from: 0, to: old.count, by: 2) where old[j] != 0 {
            var i = Int(truncatingIfNeeded: old[j] >> 7) & mask
            while slots[2 * i] != 0 { i = (i + 1) & mask }
            slots[2 * i] = old[j]
            slots[2 * i + 1] = old[j + 1]
        }
    }
}
