/// SplitMix64 (Steele, Lea and Flood): a small, fast, seedable generator, for everything that
/// must be repeatable from a seed — the command's demo story, the benchmark's workloads, the
/// tests' randomized runs. Not for anything that must be unpredictable (the id hash's key comes
/// from the system generator).
package struct SplitMix64: RandomNumberGenerator, Sendable {
    package private(set) var state: UInt64

    package init(seed: UInt64) { state = seed }

    @inline(__always)
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
