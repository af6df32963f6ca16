/// Sorts `keys` ascending, moving `values` along (a stable LSD radix sort, one byte per pass,
/// skipping the bytes on which all keys agree). O(n) per pass; for the millions of (deadline,
/// handle) pairs of a checkpoint it is several times faster than a comparison sort.
package func radixSort(keys: inout [UInt64], values: inout [UInt32]) {
    precondition(keys.count == values.count)
    let count = keys.count
    guard count > 1 else { return }
    var allOr: UInt64 = 0
    var allAnd: UInt64 = .max
    for key in keys {
        allOr |= key
        allAnd &= key
    }
    let varying = allOr ^ allAnd
    var scratchKeys = [UInt64](repeating: 0, count: count)
    var scratchValues = [UInt32](repeating: 0, count: count)
    var counts = [Int](repeating: 0, count: 256)
    for pass in 0 ..< 8 {
        let shift = UInt64(pass * 8)
        if (varying >> shift) & 0xFF == 0 { continue }
        for i in 0 ..< 256 { counts[i] = 0 }
        keys.withUnsafeBufferPointer { k in
            for key in k { counts[Int((key >> shift) & 0xFF)] += 1 }
        }
        var total = 0
        for i in 0 ..< 256 {
            let c = counts[i]
            counts[i] = total
            total += c
        }
        keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                scratchKeys.withUnsafeMutableBufferPointer { sk in
                    scratchValues.withUnsafeMutableBufferPointer { sv in
                        counts.withUnsafeMutableBufferPointer { c in
                            for i in 0 ..< count {
                                let key = k[i]
                                let bucket = Int((key >> shift) & 0xFF)
                                let position = c[bucket]
                                c[bucket] = position + 1
                                sk[position] = key
                                sv[position] = v[i]
                            }
                        }
                    }
                }
            }
        }
        swap(&keys, &scratchKeys)
        swap(&values, &scratchValues)
    }
}
