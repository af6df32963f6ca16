extension TimerWheel {
    /// Checks the wheel's invariants after a mutation. Compiled in for debug builds (the tests)
    /// with `HOURGLASS_INTERNAL_CHECKS`; an empty inlined function otherwise. Above 1024 timers
    /// only the O(slots) checks run, so that large tests stay linear.
    #if HOURGLASS_INTERNAL_CHECKS
    @inline(never)
    func _checkInvariants() {
        if count <= 1024 {
            _checkAllInvariants()
        } else {
            _checkSlots()
        }
    }
    #else
    @inline(__always)
    func _checkInvariants() {}
    #endif

    func _checkSlots() {
        for list in 0 ..< ListID.count {
            let slot = slots + list
            precondition(slot.pointee.start <= slot.pointee.count && slot.pointee.count <= slot.pointee.capacity, "slot \(list) bounds")
            precondition(slot.pointee.dead <= slot.pointee.count - slot.pointee.start, "slot \(list) counts more tombstones than handles")
            precondition(slot.pointee.start == slot.pointee.count || slot.pointee[Int(slot.pointee.start)] != nilHandle, "slot \(list) starts at a tombstone")
            if list < Int(ListID.wheelSlots) {
                let level = list / TimerWheel.slotsPerLevel
                let bit = masks[level] & (1 << UInt64(list % TimerWheel.slotsPerLevel)) != 0
                precondition(bit == !slot.pointee.isEmpty, "occupancy mask disagrees with slot \(list)")
            }
        }
        if let next = nextExpiration() {
            precondition(next.tick >= expirationLowerBound, "expiration lower bound \(expirationLowerBound) above \(next.tick)")
        }
    }

    /// Every invariant, in O(timers). Tests call it directly.
    package func _checkAllInvariants() {
        _checkSlots()
        precondition(MemoryLayout<Entry>.stride == 32, "an entry is no longer 32 bytes")
        var inSlots = 0
        for list in 0 ..< ListID.count {
            let slot = slots + list
            var lastDeadline = Int64.min
            var dead = 0
            for position in slot.pointee.positions {
                let h = slot.pointee[position]
                if h == nilHandle {
                    dead += 1
                    continue
                }
                let entry = slab.ptr(h).pointee
                precondition(entry.list == UInt16(list), "entry \(h) in slot \(list) says \(entry.list)")
                precondition(entry.position == UInt32(position), "entry \(h) has a stale position")
                let t = tick(forDeadline: entry.deadline)
                switch UInt16(list) {
                case ListID.overdue:
                    precondition(t < elapsed, "overdue entry \(h) is not overdue")
                case ListID.inFlight:
                    precondition(entry.deadline >= 0, "in-flight entry \(h) has no deadline")
                case ListID.overflow:
                    precondition((t ^ elapsed) >> UInt64(TimerWheel.wheelBits) != 0, "overflow entry \(h) fits the wheel")
                    precondition(t >= overflowMinTick, "overflow lower bound too high")
                default:
                    let difference = t ^ elapsed
                    precondition(t >= elapsed, "wheel entry \(h) at tick \(t) is before the wheel's time \(elapsed)")
                    precondition(difference >> UInt64(TimerWheel.wheelBits) == 0, "wheel entry \(h) belongs in overflow")
                    let level = (63 - (difference | 63).leadingZeroBitCount) / TimerWheel.bitsPerLevel
                    let slotIndex = Int(t >> UInt64(level * TimerWheel.bitsPerLevel)) & 63
                    precondition(list == level * TimerWheel.slotsPerLevel + slotIndex, "entry \(h) in slot \(list), belongs in \(level * 64 + slotIndex)")
                }
                if UInt16(list) == ListID.inFlight {
                    let time = slot.pointee.time(at: position)
                    precondition(time >= lastDeadline, "in-flight list out of order")
                    lastDeadline = time
                } else {
                    if slot.pointee.sorted { precondition(entry.deadline >= lastDeadline, "slot \(list) says sorted but is not") }
                    lastDeadline = entry.deadline
                }
                inSlots += 1
            }
            precondition(dead == Int(slot.pointee.dead), "slot \(list) miscounts tombstones")
        }
        var held = 0
        var detached = 0
        var liveUnits = 0
        for h in 0 ..< slab.highWater {
            let entry = slab.ptr(h).pointee
            if entry.list == ListID.free { continue }
            held += 1
            if entry.list == ListID.detached { detached += 1 }
            liveUnits += Arena.sizeClass(units: Arena.units(forBytes: entry.storedBytes)).units
            let id = UnsafeRawBufferPointer(start: arena.pointer(entry.arenaOffset), count: entry.idLength)
            precondition(lookup(id: id) == TimerHandle(rawValue: h), "id index does not find entry \(h)")
            precondition(entry.hashTag == IDIndex.tag(hashID(id, seed: index.seed)), "entry \(h) has a stale hash tag")
        }
        var free = 0
        var f = slab.freeHead
        while f != nilHandle {
            precondition(slab.ptr(f).pointee.list == ListID.free, "free list holds a live entry")
            free += 1
            f = slab.ptr(f).pointee.position
        }
        precondition(held == count, "count \(count) but \(held) entries held")
        precondition(inSlots + detached == held, "\(inSlots) in slots + \(detached) detached != \(held) held")
        precondition(free + held == Int(slab.highWater), "free list lost entries")
        precondition(index.count == count, "index holds \(index.count), wheel \(count)")
        precondition(liveUnits == arena.liveUnits, "arena accounting is off")
    }
}
