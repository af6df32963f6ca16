import CHourglass

/// Advancing: moving the wheel's time, cascading, and firing what falls due, in deadline order.
extension TimerWheel {
    /// The next point of work on the wheel: the start of the earliest occupied slot (for level 0,
    /// the exact tick of its timers; for higher levels the tick at which they cascade) and its
    /// level; level 7 stands for the overflow list. Ties go to the higher level, so that timers
    /// cascade before equal-deadline timers placed directly below them fire (they were scheduled
    /// earlier).
    func nextExpiration() -> (tick: UInt64, level: Int)? {
        var best: (tick: UInt64, level: Int)? = nil
        for level in 0 ..< TimerWheel.levelCount {
            let mask = masks[level]
            if mask == 0 { continue }
            let shift = UInt64(level * TimerWheel.bitsPerLevel)
            let slot = UInt64(mask.trailingZeroBitCount)
            let blockMask: UInt64 = (1 &<< (shift + 6)) &- 1
            let start = (elapsed & ~blockMask) | (slot &<< shift)
            if best == nil || start <= best!.tick { best = (start, level) }
        }
        if !slots[Int(ListID.overflow)].isEmpty {
            let epochStart = max(
                ((elapsed >> UInt64(TimerWheel.wheelBits)) + 1) << UInt64(TimerWheel.wheelBits),
                (overflowMinTick >> UInt64(TimerWheel.wheelBits)) << UInt64(TimerWheel.wheelBits))
            if best == nil || epochStart <= best!.tick { best = (epochStart, TimerWheel.levelCount) }
        }
        return best
    }

    /// The earliest time (milliseconds) at which `advance` may have work: a timer's deadline or a
    /// cascade point before it; nil when no timer is pending.
    package func nextDeadline() -> Int64? {
        var result: Int64? = nil
        let overdue = slots + Int(ListID.overdue)
        if let first = overdue.pointee.first {
            var earliest = slab.ptr(first).pointee.deadline
            if !overdue.pointee.sorted {
                for i in overdue.pointee.positions where overdue.pointee[i] != nilHandle {
                    earliest = min(earliest, slab.ptr(overdue.pointee[i]).pointee.deadline)
                }
            }
            result = earliest
        }
        if let (tick, _) = nextExpiration() {
            let ms = Int64(tick) * tickMilliseconds
            result = min(result ?? ms, ms)
        }
        return result
    }

    /// Fires every timer whose deadline is at or before `now` (milliseconds), in deadline order,
    /// up to `limit` timers. Fired timers are detached and appended to `fired`; the caller removes
    /// or re-arms each. Returns how many fired; when that equals `limit`, more may be due.
    ///
    /// `now` may go backwards (a wall-clock step): the wheel's own time never does, and nothing
    /// fires before its deadline.
    ///
    /// - Complexity: O(fired + cascaded); empty ticks cost nothing.
    package mutating func advance(to now: Int64, limit: Int = .max, into fired: inout [TimerHandle]) -> Int {
        guard limit > 0 else { return 0 }
        let target = now < 0 ? 0 : UInt64(tickMilliseconds == 1 ? now : now / tickMilliseconds)
        let overdueEmpty = slots[Int(ListID.overdue)].isEmpty
        if overdueEmpty && target &+ 1 < expirationLowerBound {
            // Nothing is due and no slot starts at the new time: just move.
            if target + 1 > elapsed { elapsed = target + 1 }
            return 0
        }
        var firedCount = overdueEmpty ? 0 : drainOverdue(through: target, limit: limit, into: &fired)
        if firedCount == limit { return firedCount }
        while let (start, level) = nextExpiration(), start <= target {
            elapsed = max(elapsed, start)
            if level == 0 {
                firedCount += fireSlot(UInt16(start & 63), limit: limit - firedCount, into: &fired)
                if firedCount == limit {
                    _checkInvariants()
                    return firedCount
                }
            } else {
                cascade(level: level, tick: start)
            }
        }
        // Nothing more is due. Move to target + 1, but cascade first any slot that starts exactly
        // there, so that timers placed from then on land below the ones already waiting.
        if target + 1 > elapsed {
            let newElapsed = target + 1
            while let (start, level) = nextExpiration(), start <= newElapsed, level > 0 {
                elapsed = start
                cascade(level: level, tick: start)
            }
            elapsed = newElapsed
        }
        expirationLowerBound = nextExpiration()?.tick ?? .max
        _checkInvariants()
        return firedCount
    }

    /// Fires up to `limit` timers of a level-0 slot, in order.
    mutating func fireSlot(_ list: UInt16, limit: Int, into fired: inout [TimerHandle]) -> Int {
        if !slots[Int(list)].sorted { compact(list, sorting: true) }
        let slot = slots + Int(list)
        var firedCount = 0
        var tombstones: UInt32 = 0
        var i = slot.pointee.positions.lowerBound
        let end = slot.pointee.positions.upperBound
        while i < end && firedCount < limit {
            let h = slot.pointee[i]
            i += 1
            if h == nilHandle {
                tombstones += 1
                continue
            }
            if i + 8 < end { slab.prefetch(slot.pointee[i + 8]) }
            detachForFiring(h)
            fired.append(TimerHandle(rawValue: h))
            firedCount += 1
        }
        slot.pointee.dropFront(to: i, tombstonesPassed: tombstones)
        if slot.pointee.isEmpty { emptied(list) }
        return firedCount
    }

    /// Marks a fired timer detached and starts loading what its consumer reads next (its id and
    /// payload) and what removing it touches (its index slot).
    @inline(__always)
    mutating func detachForFiring(_ h: UInt32) {
        let entry = slab.ptr(h)
        entry.pointee.list = ListID.detached
        hg_prefetch(arena.pointer(entry.pointee.arenaOffset))
        index.prefetch(tag: entry.pointee.hashTag)
    }

    /// Re-places every timer of a slot of level > 0 (or of the overflow list) relative to the
    /// wheel's current tick: they move to lower levels.
    mutating func cascade(level: Int, tick: UInt64) {
        let list: UInt16
        if level == TimerWheel.levelCount {
            list = ListID.overflow
            overflowMinTick = .max
        } else {
            list = UInt16(level * TimerWheel.slotsPerLevel + Int((tick >> UInt64(level * TimerWheel.bitsPerLevel)) & 63))
            masks[level] &= ~(1 &<< ((tick >> UInt64(level * TimerWheel.bitsPerLevel)) & 63))
        }
        let place = slots + Int(list)
        let taken = place.move()
        place.initialize(to: SlotArray())
        let end = taken.positions.upperBound
        for i in taken.positions {
            if i + 8 < end { slab.prefetch(taken[i + 8]) }
            let h = taken[i]
            if h != nilHandle { link(h) }
        }
        // Give the memory back to the slot unless it gained a new array meanwhile (overflow).
        if place.pointee.capacity == 0 {
            var kept = taken
            kept.reset()
            place.pointee = kept
        }
    }

    /// Fires overdue timers whose tick is at or before `target`, in deadline order.
    mutating func drainOverdue(through target: UInt64, limit: Int, into fired: inout [TimerHandle]) -> Int {
        let list = ListID.overdue
        if !slots[Int(list)].sorted { compact(list, sorting: true) }
        var firedCount = 0
        while firedCount < limit, let h = slots[Int(list)].first {
            guard tick(forDeadline: slab.ptr(h).pointee.deadline) <= target else { break }
            unlinkIfLinked(h)
            detachForFiring(h)
            fired.append(TimerHandle(rawValue: h))
            firedCount += 1
        }
        return firedCount
    }
}
