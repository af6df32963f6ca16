/// A handle to one timer in a `TimerWheel`: the index of its entry in the slab.
///
/// A handle stays valid until the timer is removed; after that the slot may be reused by another
/// timer. `TimerWheel.generation(of:)` tells a reused slot from the original.
package struct TimerHandle: Hashable, Sendable, CustomStringConvertible {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }
    package var description: String { "#\(rawValue)" }
}
