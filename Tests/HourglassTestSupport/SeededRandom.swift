/// A small, fast, seedable generator (SplitMix64), so that a failing randomized test can be
/// replayed from the seed it prints.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The seed for a randomized test: `HOURGLASS_SEED` from the environment when set (to replay
    /// a failure), otherwise a fresh random one.
    public static func testSeed() -> UInt64 {
        if let text = getEnvironment("HOURGLASS_SEED"), let seed = UInt64(text) { return seed }
        return UInt64.random(in: .min ... .max)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public func getEnvironment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
