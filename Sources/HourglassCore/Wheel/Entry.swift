/// One timer in the slab: 32 bytes, no references (the size is asserted in the tests). Ids and
/// payloads live in the arena.
///
/// A live entry is in exactly one slot array (a wheel slot, the overdue list, the overflow
/// list, the in-flight list), at `position`, or detached (fired and handed to the caller, which either removes or
/// re-arms it). A free entry is on the slab's free list, threaded through `position`.
///
/// Packing (little fields share words so that a timer costs half a cache line):
///
/// | word       | bits  | field                                              |
/// |------------|-------|----------------------------------------------------|
/// | `word0`    | 0-47  | deadline, ms since the Unix epoch (< 2^48)         |
/// |            | 48-57 | list (`ListID`)                                   |
/// |            | 58-63 | tag: the engine's state for the timer              |
/// | `word1`    | 0-10  | id length (1 ... 1024)                             |
/// |            | 11-34 | payload length (< 2^24)                            |
/// |            | 35-63 | attempt (< 2^29)                                   |
struct Entry {
    var word0: UInt64
    var word1: UInt64
    /// Index in the slot array of `list`; the next free handle while free.
    var position: UInt32
    /// Start of `[id][payload]` in the arena, in arena units (8 bytes).
    var arenaOffset: UInt32
    /// The high 32 bits of the id's hash: the entry's key in the id index, so removing a timer
    /// does not read its id back from the arena.
    var hashTag: UInt32
    /// Changes whenever the slot is reused or the timer is replaced: a stale reference to a
    /// replaced timer (an ack of an old delivery) can be told from the current one.
    var generation: UInt32

    static let deadlineMask: UInt64 = (1 << 48) - 1
    static let maxTag: UInt8 = 63
    static let maxAttempt: UInt32 = (1 << 29) - 1
    static let maxIDLength = 1024
    static let maxPayloadLength = (1 << 24) - 1

    init() {
        word0 = UInt64(ListID.free) << 48
        word1 = 0
        position = nilHandle
        arenaOffset = 0
        hashTag = 0
        generation = 0
    }

    var deadline: Int64 {
        @inline(__always) get { Int64(word0 & Entry.deadlineMask) }
        @inline(__always) set { word0 = word0 & ~Entry.deadlineMask | UInt64(newValue) }
    }

    var list: UInt16 {
        @inline(__always) get { UInt16(truncatingIfNeeded: (word0 >> 48) & 0x3FF) }
        @inline(__always) set { word0 = word0 & ~(0x3FF << 48) | UInt64(newValue) << 48 }
    }

    var tag: UInt8 {
        @inline(__always) get { UInt8(truncatingIfNeeded: word0 >> 58) }
        @inline(__always) set { word0 = word0 & ~(0x3F << 58) | UInt64(newValue & 0x3F) << 58 }
    }

    var idLength: Int {
        @inline(__always) get { Int(word1 & 0x7FF) }
        @inline(__always) set { word1 = word1 & ~0x7FF | UInt64(newValue) }
    }

    var payloadLength: Int {
        @inline(__always) get { Int((word1 >> 11) & 0xFF_FFFF) }
        @inline(__always) set { word1 = word1 & ~(0xFF_FFFF << 11) | UInt64(newValue) << 11 }
    }

    var attempt: UInt32 {
        @inline(__always) get { UInt32(truncatingIfNeeded: word1 >> 35) }
        @inline(__always) set { word1 = word1 & ((1 << 35) - 1) | UInt64(min(newValue, Entry.maxAttempt)) << 35 }
    }

    /// Id plus payload: the size of the timer's arena block.
    var storedBytes: Int { idLength + payloadLength }
}

/// The null handle; also the tombstone in slot arrays.
let nilHandle: UInt32 = .max

/// List identifiers stored in `Entry.list` (10 bits).
enum ListID {
    /// Wheel slots are `level * 64 + slot`, 0 ..< 448.
    static let wheelSlots: UInt16 = UInt16(TimerWheel.levelCount * TimerWheel.slotsPerLevel)
    /// Timers whose deadline tick was already processed when they were scheduled.
    static let overdue: UInt16 = wheelSlots
    /// Timers beyond the wheel's range (a later 2^42-tick epoch).
    static let overflow: UInt16 = wheelSlots + 1
    /// Fired timers awaiting acknowledgement, in the order they are due for redelivery.
    static let inFlight: UInt16 = wheelSlots + 2
    /// Number of slot arrays.
    static let count = Int(wheelSlots) + 3
    /// Fired and handed to the caller.
    static let detached: UInt16 = 0x3FE
    /// On the free list.
    static let free: UInt16 = 0x3FF
}
