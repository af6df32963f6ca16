import CHourglass

/// Placement: which slot a timer belongs in, relative to the wheel's current tick, and taking
/// it out again.
extension TimerWheel {
    /// Places a timer in the slot its deadline calls for, relative to the current tick.
    mutating func link(_ handle: UInt32) {
        let entry = slab.ptr(handle)
        let deadline = entry.pointee.deadline
        let t = tick(forDeadline: deadline)
        let list: UInt16
        if t < elapsed {
            list = ListID.overdue
        } else {
            let difference = t ^ elapsed
            if difference >> UInt64(TimerWheel.wheelBits) != 0 {
                list = ListID.overflow
                if t < overflowMinTick { overflowMinTick = t }
                let nextEpoch = ((elapsed >> UInt64(TimerWheel.wheelBits)) + 1) << UInt64(TimerWheel.wheelBits)
                if nextEpoch < expirationLowerBound { expirationLowerBound = nextEpoch }
            } else {
                let level = (63 - (difference | 63).leadingZeroBitCount) / TimerWheel.bitsPerLevel
                let shift = UInt64(level * TimerWheel.bitsPerLevel)
                let slot = (t >> shift) & 63
                list = UInt16(level * TimerWheel.slotsPerLevel) + UInt16(slot)
                masks[level] |= 1 &<< slot
                let start = (t >> shift) << shift
                if start < expirationLowerBound { expirationLowerBound = start }
            }
        }
        entry.pointee.position = slots[Int(list)].append(handle, deadline: deadline)
        entry.pointee.list = list
    }

    /// Takes a timer out of its slot, leaving it detached.
    mutating func unlinkIfLinked(_ handle: UInt32) {
        let entry = slab.ptr(handle)
        let list = entry.pointee.list
        guard list < UInt16(ListID.count) else { return }
        entry.pointee.list = ListID.detached
        let outcome = slots[Int(list)].remove(handle, at: entry.pointee.position)
        if outcome.emptied {
            emptied(list)
        } else if outcome.needsCompaction {
            compact(list)
        }
    }

    /// A slot became empty: reset it and clear its occupancy bit.
    @inline(__always)
    mutating func emptied(_ list: UInt16) {
        slots[Int(list)].reset()
        if list < ListID.wheelSlots {
            let level = Int(list) / TimerWheel.slotsPerLevel
            masks[level] &= ~(1 &<< UInt64(Int(list) % TimerWheel.slotsPerLevel))
        }
    }

    /// Squeezes tombstones out of a slot, keeping order; optionally sorts it by deadline (stable).
    /// Every entry learns its new position.
    mutating func compact(_ list: UInt16, sorting: Bool = false) {
        let entries = slab.view
        let deadline: ((UInt32) -> Int64)? = sorting ? { entries.ptr($0).pointee.deadline } : nil
        slots[Int(list)].compact(sortingBy: deadline) { handle, position, ahead in
            entries.prefetch(ahead)
            entries.ptr(handle).pointee.position = position
        }
    }
}
