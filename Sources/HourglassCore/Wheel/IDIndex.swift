import CHourglass

/// An open-addressing table from id hash to handle: linear probing, at most 3/4 full,
/// backward-shift deletion (no tombstones).
///
/// A slot is 8 bytes: the high 32 bits of the id's hash (the tag) and the handle + 1 (0 marks an
/// empty slot). The home slot is `tag & mask`, so the table rehashes without reading ids; a
/// probe compares tags first and reads the id bytes only on a tag match. Id comparison is the
/// wheel's business: the index only walks probe sequences.
struct IDIndex: ~Copyable {
    var slots: UnsafeMutablePointer<UInt64>
    var mask: Int
    var count: Int
    let seed: UInt64


    init(minimumCapacity: Int, seed: UInt64) {
        var capacity = 16
        while capacity * 3 / 4 < minimumCapacity { capacity *= 2 }
        slots = IDIndex.allocateSlots(capacity)
        mask = capacity - 1
        count = 0
        self.seed = seed
    }

    deinit { hg_table_free(slots, capacity * 8) }

    /// Zeroed slots (a fresh anonymous mapping reads as zeros: no initialization pass).
    static func allocateSlots(_ capacity: Int) -> UnsafeMutablePointer<UInt64> {
        guard let memory = hg_table_allocate(capacity * 8) else {
            fatalError("Hourglass: out of memory allocating an id index of \(capacity) slots")
        }
        return memory.bindMemory(to: UInt64.self, capacity: capacity)
    }

    @inline(__always)
    static func tag(_ hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash >> 32) }

    @inline(__always)
    static func slotValue(tag: UInt32, handle: UInt32) -> UInt64 {
        UInt64(tag) << 32 | UInt64(handle &+ 1)
    }

    @inline(__always)
    static func handle(of value: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: value) &- 1 }

    @inline(__always)
    func home(_ tag: UInt32) -> Int { Int(tag) & mask }


    var capacity: Int { mask + 1 }

    /// A walk along the probe sequence of one tag: the only place the index is probed.
    ///
    /// `nextCandidate()` yields the handles stored under the same tag, in probe order; the caller
    /// compares ids (the index never reads them). When it returns nil, `position` is the empty
    /// slot where the tag would be inserted; after a match it is the matching handle's slot.
    struct Probe {
        let slots: UnsafeMutablePointer<UInt64>
        let mask: Int
        let tag: UInt32
        private(set) var position: Int
        private var started = false

        init(_ index: borrowing IDIndex, tag: UInt32) {
            slots = index.slots
            mask = index.mask
            self.tag = tag
            position = index.home(tag)
        }

        @inline(__always)
        mutating func nextCandidate() -> UInt32? {
            if started { position = (position + 1) & mask }
            started = true
            while true {
                let value = slots[position]
                if value == 0 { return nil }
                if IDIndex.tag(value) == tag { return IDIndex.handle(of: value) }
                position = (position + 1) & mask
            }
        }
    }

    /// The probe sequence of `tag`.
    @inline(__always)
    func probe(tag: UInt32) -> Probe { Probe(self, tag: tag) }

    /// Starts loading the home slot of `tag` into the cache.
    @inline(__always)
    func prefetch(tag: UInt32) { hg_prefetch(slots + home(tag)) }

    /// The first empty slot on `tag`'s probe sequence (where an insertion goes).
    @inline(__always)
    func emptySlot(for tag: UInt32) -> Int {
        var position = home(tag)
        while slots[position] != 0 { position = (position + 1) & mask }
        return position
    }

    /// Whether one more insertion would pass the load limit.
    @inline(__always)
    var needsGrowth: Bool { (count + 1) * 4 > capacity * 3 }

    /// Stores `value` in the empty slot `position` (found by a failed probe).
    @inline(__always)
    mutating func insert(_ value: UInt64, at position: Int) {
        assert(slots[position] == 0)
        slots[position] = value
        count += 1
    }

    /// Empties `position` and shifts the following run back so no probe sequence breaks.
    mutating func remove(at position: Int) {
        var hole = position
        var next = (position + 1) & mask
        while true {
            let value = slots[next]
            if value == 0 { break }
            let home = self.home(IDIndex.tag(value))
            // Move `value` into the hole unless its home lies cyclically in (hole, next].
            if (next &- home) & mask >= (next &- hole) & mask {
                slots[hole] = value
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        count -= 1
    }

    /// The slot holding exactly `value`; traps if it is missing (a broken invariant).
    func position(of value: UInt64) -> Int {
        var i = home(IDIndex.tag(value))
        while true {
            let current = slots[i]
            if current == value { return i }
            precondition(current != 0, "Hourglass: id index lost a timer (internal error)")
            i = (i + 1) & mask
        }
    }


    mutating func grow() {
        let oldSlots = slots
        let oldCapacity = capacity
        let newCapacity = oldCapacity * 2
        precondition(newCapacity <= 1 << 32, "Hourglass: id index cannot grow past 2^32 slots")
        slots = IDIndex.allocateSlots(newCapacity)
        mask = newCapacity - 1
        for i in 0 ..< oldCapacity {
            let value = oldSlots[i]
            if value == 0 { continue }
            slots[emptySlot(for: IDIndex.tag(value))] = value
        }
        hg_table_free(oldSlots, oldCapacity * 8)
    }

    var allocatedBytes: Int { capacity * MemoryLayout<UInt64>.stride }
}
