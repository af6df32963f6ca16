import CHourglass

/// Id and payload bytes of every timer, in one growable block, with segregated free lists.
///
/// Allocation is in units of 8 bytes. Blocks up to 2 KiB have exact size classes (one per
/// unit); larger ones are rounded up to one of 8 classes per power of two (at most 12.5%
/// waste). A freed block goes on its class's free list (the link lives in its first 4 bytes)
/// and is reused by the next block of that class. Offsets, not pointers, name blocks, so the
/// block can move when it grows. Memory is never returned to the system while the wheel lives.
struct Arena: ~Copyable {
    static let unit = 8
    static let exactClasses = 256
    static let classCount = 256 + 24 * 8
    /// 2^32 units: 32 GiB.
    static let maxUnits = Int(UInt32.max)

    var base: UnsafeMutableRawPointer
    var capacityUnits: Int
    var topUnits: Int
    var freeHeads: UnsafeMutablePointer<UInt32>
    /// Units in live blocks (class sizes, so including rounding).
    var liveUnits: Int


    init(capacityBytes: Int) {
        let units = max((capacityBytes + Arena.unit - 1) / Arena.unit, 512)
        guard let memory = hg_table_allocate(units * Arena.unit) else {
            fatalError("Hourglass: out of memory allocating the id and payload arena")
        }
        base = memory
        capacityUnits = units
        // Unit 0 is never handed out, so that a zeroed entry never aliases a live block.
        topUnits = 1
        freeHeads = .allocate(capacity: Arena.classCount)
        freeHeads.initialize(repeating: nilHandle, count: Arena.classCount)
        liveUnits = 0
    }

    deinit {
        hg_table_free(base, capacityUnits * Arena.unit)
        freeHeads.deallocate()
    }

    /// The size class of a block of `units` units and that class's size in units.
    @inline(__always)
    static func sizeClass(units: Int) -> (index: Int, units: Int) {
        if units <= exactClasses { return (units - 1, units) }
        let width = Int.bitWidth - (units - 1).leadingZeroBitCount  // >= 9
        let shift = width - 4
        let multiple = ((units - 1) >> shift) + 1  // 9 ... 16
        return (exactClasses + (width - 9) * 8 + (multiple - 9), multiple << shift)
    }

    @inline(__always)
    static func units(forBytes bytes: Int) -> Int { max((bytes + unit - 1) / unit, 1) }

    @inline(__always)
    func pointer(_ offset: UInt32) -> UnsafeMutableRawPointer {
        assert(Int(offset) < topUnits && offset > 0, "arena offset \(offset) out of bounds")
        return base + Int(offset) * Arena.unit
    }

    /// A block of at least `bytes` bytes; nil when the arena would pass 32 GiB.
    mutating func allocate(bytes: Int) -> UInt32? {
        let (index, units) = Arena.sizeClass(units: Arena.units(forBytes: bytes))
        let head = freeHeads[index]
        if head != nilHandle {
            freeHeads[index] = (base + Int(head) * Arena.unit).load(as: UInt32.self)
            liveUnits += units
            return head
        }
        if topUnits + units > capacityUnits {
            guard grow(toHold: topUnits + units) else { return nil }
        }
        let offset = UInt32(topUnits)
        topUnits += units
        liveUnits += units
        return offset
    }


    mutating func release(_ offset: UInt32, bytes: Int) {
        let (index, units) = Arena.sizeClass(units: Arena.units(forBytes: bytes))
        pointer(offset).storeBytes(of: freeHeads[index], as: UInt32.self)
        freeHeads[index] = offset
        liveUnits -= units
    }

    /// Whether a block allocated for `old` bytes can hold `new` bytes (same size class).
    @inline(__always)
    static func sameClass(_ old: Int, _ new: Int) -> Bool {
        sizeClass(units: units(forBytes: old)).index == sizeClass(units: units(forBytes: new)).index
    }


    mutating func grow(toHold units: Int) -> Bool {
        guard units <= Arena.maxUnits else { return false }
        let newUnits = min(max(capacityUnits * 2, units), Arena.maxUnits)
        guard let memory = hg_table_reallocate(base, capacityUnits * Arena.unit, newUnits * Arena.unit) else {
            fatalError("Hourglass: out of memory growing the arena to \(newUnits * Arena.unit) bytes")
        }
        base = memory
        capacityUnits = newUnits
        return true
    }

    var allocatedBytes: Int { capacityUnits * Arena.unit }
    var usedBytes: Int { topUnits * Arena.unit }
}
