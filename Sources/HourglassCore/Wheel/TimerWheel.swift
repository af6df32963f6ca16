import CHourglass
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A handle to one timer in a `TimerWheel`: the index of its entry in the slab.
///
/// A handle stays valid until the timer is removed; after that the slot may be reused by another
/// timer. `TimerWheel.generation(of:)` tells a reused slot from the original.
public struct TimerHandle: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "#\(rawValue)" }
}

/// A hierarchical timing wheel over a slab of fixed-size entries (Varghese and Lauck; the
/// layout of Tokio's wheel).
///
/// Seven levels of 64 slots cover 64^7 ticks (about 139 years at the default 1 ms tick); each
/// level keeps a 64-bit occupancy mask, so the next non-empty slot is one trailing-zero count
/// away and empty ticks are never walked. A timer sits at the level of the highest 6-bit digit
/// in which its deadline tick differs from the wheel's current tick; when the wheel reaches a
/// slot of level k > 0 it cascades the slot's timers down, so every timer fires at its exact tick.
/// Deadlines in another 2^42-tick epoch wait on an overflow list; deadlines already processed
/// wait on an overdue list and fire first, in deadline order.
///
/// Timers are entries of 32 bytes addressed by 32-bit handles; each slot is an array of handles
/// (with tombstones, so removal is O(1) and order is kept), ids and payloads live in an arena,
/// and an open-addressing index maps ids to handles. Scheduling, cancelling and firing allocate
/// nothing once storage has grown; cascading and firing walk arrays and prefetch the entries.
///
/// Firing order: by deadline, then by the order in which timers were scheduled. Nothing fires
/// before its deadline, whatever `advance(to:)` is given (a wall clock that steps back included).
///
/// The wheel has no notion of durability or delivery: a fired timer is detached and handed to the
/// caller, which removes it or re-arms it at a new deadline.
public struct TimerWheel: ~Copyable {
    public static let levelCount = 7
    public static let slotsPerLevel = 64
    public static let bitsPerLevel = 6
    /// Ticks per epoch: 2^42. Deadlines in a later epoch than the current tick overflow.
    public static let wheelBits = levelCount * bitsPerLevel
    /// The latest deadline the wheel accepts: 9999-12-31T23:59:59.999Z.
    public static let maxDeadline: Int64 = 253_402_300_799_999
    /// The longest id, in bytes.
    public static let maxIDLength = _Entry.maxIDLength
    /// The longest payload, in bytes: 16 MiB - 1.
    public static let maxPayloadLength = _Entry.maxPayloadLength
    /// The largest attempt number stored; larger ones are stored as this.
    public static let maxAttempt = _Entry.maxAttempt
    /// The largest tag.
    public static let maxTag = _Entry.maxTag

    /// Milliseconds per tick.
    public let tickMilliseconds: Int64

    var slab: _Slab
    var arena: _Arena
    var index: _IDIndex
    var slots: UnsafeMutablePointer<_SlotArray>
    var masks: UnsafeMutablePointer<UInt64>
    /// Every tick before this one is fully processed; this tick may be partly processed.
    var elapsed: UInt64
    /// A lower bound of the ticks on the overflow list.
    var overflowMinTick: UInt64
    /// A lower bound of the next expiration (see `nextExpiration`): while the target of
    /// `advance` stays below it, advancing is a comparison and a store.
    var expirationLowerBound: UInt64

    /// Timers held: pending (in a slot) and detached (fired, not yet removed or re-armed).
    public private(set) var count: Int

    public enum CapacityError: Error, Sendable, Equatable {
        /// 2^32 - 1 timers are held.
        case tooManyTimers
        /// Id and payload bytes would pass 32 GiB.
        case arenaFull
    }

    /// Creates an empty wheel whose current time is `now` (milliseconds since the Unix epoch).
    ///
    /// - Parameters:
    ///   - tickMilliseconds: the wheel's resolution; a timer fires at the first tick at or after
    ///     its deadline.
    ///   - hashSeed: the key of the id hash (random unless a test needs repeatability).
    ///   - reservingCapacity: timers to make room for up front.
    public init(tickMilliseconds: Int64 = 1, now: Int64, hashSeed: UInt64? = nil, reservingCapacity: Int = 0) {
        precondition(tickMilliseconds >= 1, "tickMilliseconds must be at least 1")
        precondition(now >= 0 && now <= TimerWheel.maxDeadline, "now is outside the representable range")
        self.tickMilliseconds = tickMilliseconds
        slab = _Slab(capacity: reservingCapacity)
        arena = _Arena(capacityBytes: reservingCapacity * 32)
        index = _IDIndex(minimumCapacity: reservingCapacity, seed: hashSeed ?? UInt64.random(in: .min ... .max))
        slots = .allocate(capacity: _ListID.count)
        slots.initialize(repeating: _SlotArray(), count: _ListID.count)
        slots[Int(_ListID.inFlight)].keepsTimes = true
        masks = .allocate(capacity: TimerWheel.levelCount)
        masks.initialize(repeating: 0, count: TimerWheel.levelCount)
        elapsed = UInt64(now / tickMilliseconds)
        overflowMinTick = .max
        expirationLowerBound = .max
        count = 0
    }

    deinit {
        for list in 0 ..< _ListID.count { slots[list].release() }
        slots.deallocate()
        masks.deallocate()
    }

    // MARK: Time

    /// The first tick at or after `deadline`: a timer never fires before its deadline.
    @inline(__always)
    func tick(forDeadline deadline: Int64) -> UInt64 {
        // The default 1 ms tick skips a 64-bit division on every placement.
        if tickMilliseconds == 1 { return UInt64(deadline) }
        return UInt64((deadline + tickMilliseconds - 1) / tickMilliseconds)
    }

    /// The tick at which a timer with this deadline fires (for tests and diagnostics).
    public func tick(forDeadlineMs deadline: Int64) -> Int64 { Int64(tick(forDeadline: deadline)) }

    /// The wheel's current time: every deadline before it has been handed out by `advance`.
    public var now: Int64 { Int64(elapsed) * tickMilliseconds }

    // MARK: Scheduling

    /// What `schedule` did.
    public struct ScheduleResult: Sendable {
        public var handle: TimerHandle
        /// Whether a timer with this id was replaced (it was pending or detached).
        public var replaced: Bool
        /// The replaced timer's tag, when one was replaced.
        public var previousTag: UInt8
    }

    /// Schedules a timer, replacing any timer with the same id (an upsert). A deadline that is
    /// already past fires at the next `advance`.
    ///
    /// - Precondition: `deadline` is in `0 ... maxDeadline`; `id` is 1 ... `maxIDLength` bytes;
    ///   the payload at most `maxPayloadLength`; `tag` at most `maxTag`.
    /// - Complexity: O(1) amortized; O(n) when storage grows.
    public mutating func schedule(
        id: UnsafeRawBufferPointer, deadline: Int64, payload: UnsafeRawBufferPointer,
        attempt: UInt32 = 1, tag: UInt8 = 0
    ) throws(CapacityError) -> ScheduleResult {
        precondition(deadline >= 0 && deadline <= TimerWheel.maxDeadline, "deadline outside the representable range")
        precondition(id.count > 0 && id.count <= TimerWheel.maxIDLength, "id length outside 1...\(TimerWheel.maxIDLength)")
        precondition(payload.count <= TimerWheel.maxPayloadLength, "payload longer than \(TimerWheel.maxPayloadLength) bytes")
        precondition(tag <= TimerWheel.maxTag, "tag above \(TimerWheel.maxTag)")
        let hash = hashID(id, seed: index.seed)
        let tagBits = _IDIndex.tag(hash)
        var position = index.home(tagBits)
        while true {
            let value = index.slots[position]
            if value == 0 { break }
            if _IDIndex.tag(value) == tagBits {
                let handle = _IDIndex.handle(of: value)
                if idEquals(handle, id) {
                    let previousTag = slab.ptr(handle).pointee.tag
                    try replace(handle, deadline: deadline, payload: payload, attempt: attempt, tag: tag)
                    _checkInvariants()
                    return ScheduleResult(handle: TimerHandle(rawValue: handle), replaced: true, previousTag: previousTag)
                }
            }
            position = (position + 1) & index.mask
        }
        // A new id.
        guard let offset = arena.allocate(bytes: id.count + payload.count) else { throw .arenaFull }
        guard let handle = slab.allocate() else {
            arena.release(offset, bytes: id.count + payload.count)
            throw .tooManyTimers
        }
        if index.needsGrowth {
            index.grow()
            position = index.home(tagBits)
            while index.slots[position] != 0 { position = (position + 1) & index.mask }
        }
        index.insert(_IDIndex.slotValue(tag: tagBits, handle: handle), at: position)
        let entry = slab.ptr(handle)
        entry.pointee.deadline = deadline
        entry.pointee.arenaOffset = offset
        entry.pointee.hashTag = tagBits
        entry.pointee.idLength = id.count
        entry.pointee.payloadLength = payload.count
        entry.pointee.attempt = attempt
        entry.pointee.tag = tag
        let bytes = arena.pointer(offset)
        bytes.copyMemory(from: id.baseAddress!, byteCount: id.count)
        if payload.count > 0 {
            (bytes + id.count).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        count += 1
        link(handle)
        _checkInvariants()
        return ScheduleResult(handle: TimerHandle(rawValue: handle), replaced: false, previousTag: 0)
    }

    /// Replaces the timer at `handle` in place: new deadline, payload, attempt and generation.
    mutating func replace(
        _ handle: UInt32, deadline: Int64, payload: UnsafeRawBufferPointer, attempt: UInt32, tag: UInt8
    ) throws(CapacityError) {
        let entry = slab.ptr(handle)
        let idLength = entry.pointee.idLength
        let oldBytes = entry.pointee.storedBytes
        let newBytes = idLength + payload.count
        if !_Arena.sameClass(oldBytes, newBytes) {
            guard let offset = arena.allocate(bytes: newBytes) else { throw .arenaFull }
            arena.pointer(offset).copyMemory(from: arena.pointer(entry.pointee.arenaOffset), byteCount: idLength)
            arena.release(entry.pointee.arenaOffset, bytes: oldBytes)
            entry.pointee.arenaOffset = offset
        }
        if payload.count > 0 {
            (arena.pointer(entry.pointee.arenaOffset) + idLength).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        unlinkIfLinked(handle)
        entry.pointee.deadline = deadline
        entry.pointee.payloadLength = payload.count
        entry.pointee.attempt = attempt
        entry.pointee.tag = tag
        entry.pointee.generation &+= 1
        link(handle)
    }

    /// The handle of the timer with this id, if one is held (pending or detached).
    /// - Complexity: O(1) expected.
    public func lookup(id: UnsafeRawBufferPointer) -> TimerHandle? {
        guard id.count > 0 && id.count <= TimerWheel.maxIDLength else { return nil }
        let hash = hashID(id, seed: index.seed)
        let tagBits = _IDIndex.tag(hash)
        var position = index.home(tagBits)
        while true {
            let value = index.slots[position]
            if value == 0 { return nil }
            if _IDIndex.tag(value) == tagBits {
                let handle = _IDIndex.handle(of: value)
                if idEquals(handle, id) { return TimerHandle(rawValue: handle) }
            }
            position = (position + 1) & index.mask
        }
    }

    /// Starts loading the index slot of `id` into the cache: the first stage of a software
    /// pipeline over a batch of operations. A caller about to schedule or cancel many ids calls
    /// this some operations ahead (then `prefetchEntry` and `prefetchBytes` closer to the
    /// operation), so that the cache misses of many operations overlap instead of following one
    /// another. Prefetching never changes the wheel.
    @inline(__always)
    public func prefetchIndex(id: UnsafeRawBufferPointer) {
        guard id.count > 0 else { return }
        hg_prefetch(index.slots + index.home(_IDIndex.tag(hashID(id, seed: index.seed))))
    }

    /// The second stage: probes the index (loaded by `prefetchIndex`) and starts loading the
    /// entry of the timer with this id, if one is held.
    @inline(__always)
    public func prefetchEntry(id: UnsafeRawBufferPointer) {
        if let entry = probeForPrefetch(id) { hg_prefetch(entry) }
    }

    /// The third stage: reads the entry (loaded by `prefetchEntry`) and starts loading the timer's
    /// id bytes and its place in its slot, which cancelling touches.
    @inline(__always)
    public func prefetchBytes(id: UnsafeRawBufferPointer) {
        guard let entry = probeForPrefetch(id) else { return }
        hg_prefetch(arena.pointer(entry.pointee.arenaOffset))
        let list = Int(entry.pointee.list)
        if list < _ListID.count, let base = slots[list].base {
            hg_prefetch(base + Int(min(entry.pointee.position, slots[list].count &- 1)))
        }
    }

    @inline(__always)
    func probeForPrefetch(_ id: UnsafeRawBufferPointer) -> UnsafeMutablePointer<_Entry>? {
        guard id.count > 0 else { return nil }
        let tagBits = _IDIndex.tag(hashID(id, seed: index.seed))
        var position = index.home(tagBits)
        while true {
            let value = index.slots[position]
            if value == 0 { return nil }
            if _IDIndex.tag(value) == tagBits { return slab.ptr(_IDIndex.handle(of: value)) }
            position = (position + 1) & index.mask
        }
    }

    /// Removes the timer with this id; returns whether there was one.
    /// - Complexity: O(1) expected.
    @discardableResult
    public mutating func cancel(id: UnsafeRawBufferPointer) -> Bool {
        guard id.count > 0 && id.count <= TimerWheel.maxIDLength else { return false }
        let hash = hashID(id, seed: index.seed)
        let tagBits = _IDIndex.tag(hash)
        var position = index.home(tagBits)
        while true {
            let value = index.slots[position]
            if value == 0 { return false }
            if _IDIndex.tag(value) == tagBits {
                let handle = _IDIndex.handle(of: value)
                if idEquals(handle, id) {
                    index.remove(at: position)
                    dispose(handle)
                    _checkInvariants()
                    return true
                }
            }
            position = (position + 1) & index.mask
        }
    }

    /// Removes a held timer (pending or detached).
    /// - Complexity: O(1) expected.
    public mutating func remove(_ handle: TimerHandle) {
        let h = handle.rawValue
        let entry = held(handle)
        index.remove(at: index.position(of: _IDIndex.slotValue(tag: entry.pointee.hashTag, handle: h)))
        dispose(h)
        _checkInvariants()
    }

    mutating func dispose(_ handle: UInt32) {
        unlinkIfLinked(handle)
        let entry = slab.ptr(handle)
        arena.release(entry.pointee.arenaOffset, bytes: entry.pointee.storedBytes)
        slab.release(handle)
        count -= 1
    }

    /// Puts a held timer (detached after firing, or pending) back on the wheel at `deadline`.
    /// Its generation does not change: it is the same timer, due again.
    public mutating func rearm(_ handle: TimerHandle, deadline: Int64, attempt: UInt32? = nil, tag: UInt8? = nil) {
        precondition(deadline >= 0 && deadline <= TimerWheel.maxDeadline, "deadline outside the representable range")
        let entry = held(handle)
        unlinkIfLinked(handle.rawValue)
        entry.pointee.deadline = deadline
        if let attempt { entry.pointee.attempt = attempt }
        if let tag {
            precondition(tag <= TimerWheel.maxTag, "tag above \(TimerWheel.maxTag)")
            entry.pointee.tag = tag
        }
        link(handle.rawValue)
        _checkInvariants()
    }

    @inline(__always)
    func idEquals(_ handle: UInt32, _ id: UnsafeRawBufferPointer) -> Bool {
        let entry = slab.ptr(handle)
        guard entry.pointee.idLength == id.count else { return false }
        return memcmp(arena.pointer(entry.pointee.arenaOffset), id.baseAddress!, id.count) == 0
    }

    // MARK: Slots

    /// Places a timer in the slot its deadline calls for, relative to the current tick.
    mutating func link(_ handle: UInt32) {
        let entry = slab.ptr(handle)
        let deadline = entry.pointee.deadline
        let t = tick(forDeadline: deadline)
        let list: UInt16
        if t < elapsed {
            list = _ListID.overdue
        } else {
            let difference = t ^ elapsed
            if difference >> UInt64(TimerWheel.wheelBits) != 0 {
                list = _ListID.overflow
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
        guard list < UInt16(_ListID.count) else { return }
        entry.pointee.list = _ListID.detached
        let slot = slots + Int(list)
        let position = entry.pointee.position
        assert(slot.pointee.base![Int(position)] == handle)
        slot.pointee.base![Int(position)] = _nil
        if position == slot.pointee.start {
            // Keep `start` on a live handle (or the end).
            slot.pointee.start += 1
            while slot.pointee.start < slot.pointee.count && slot.pointee.base![Int(slot.pointee.start)] == _nil {
                slot.pointee.start += 1
                slot.pointee.dead -= 1
            }
        } else {
            slot.pointee.dead += 1
        }
        if slot.pointee.isEmpty {
            emptied(list)
        } else if slot.pointee.dead >= 32 && Int(slot.pointee.dead) * 2 > Int(slot.pointee.count - slot.pointee.start) {
            compact(list)
        }
    }

    /// A slot became empty: reset it and clear its occupancy bit.
    @inline(__always)
    mutating func emptied(_ list: UInt16) {
        slots[Int(list)].reset()
        if list < _ListID.wheelSlots {
            let level = Int(list) / TimerWheel.slotsPerLevel
            masks[level] &= ~(1 &<< UInt64(Int(list) % TimerWheel.slotsPerLevel))
        }
    }

    /// Squeezes tombstones out of a slot, keeping order; optionally sorts it by deadline (stable).
    mutating func compact(_ list: UInt16, sorting: Bool = false) {
        let slot = slots + Int(list)
        guard let base = slot.pointee.base else { return }
        var write = 0
        let times = slot.pointee.times
        for read in Int(slot.pointee.start) ..< Int(slot.pointee.count) {
            let h = base[read]
            if h != _nil {
                base[write] = h
                if let times { times[write] = times[read] }
                write += 1
            }
        }
        if sorting && !slot.pointee.sorted {
            let entries = slab.base
            var keyed = (0 ..< write).map { (entries[Int(base[$0])].deadline, $0, base[$0]) }
            keyed.sort { ($0.0, $0.1) < ($1.0, $1.1) }
            for (i, element) in keyed.enumerated() { base[i] = element.2 }
            slot.pointee.sorted = true
            slot.pointee.lastDeadline = keyed.last?.0 ?? .min
        }
        for i in 0 ..< write {
            if i + 8 < write { hg_prefetch(slab.base + Int(base[i + 8])) }
            slab.ptr(base[i]).pointee.position = UInt32(i)
        }
        slot.pointee.start = 0
        slot.pointee.count = UInt32(write)
        slot.pointee.dead = 0
    }

    // MARK: Advancing

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
        if !slots[Int(_ListID.overflow)].isEmpty {
            let epochStart = max(
                ((elapsed >> UInt64(TimerWheel.wheelBits)) + 1) << UInt64(TimerWheel.wheelBits),
                (overflowMinTick >> UInt64(TimerWheel.wheelBits)) << UInt64(TimerWheel.wheelBits))
            if best == nil || epochStart <= best!.tick { best = (epochStart, TimerWheel.levelCount) }
        }
        return best
    }

    /// The earliest time (milliseconds) at which `advance` may have work: a timer's deadline or a
    /// cascade point before it; nil when no timer is pending.
    public func nextDeadline() -> Int64? {
        var result: Int64? = nil
        let overdue = slots[Int(_ListID.overdue)]
        if !overdue.isEmpty {
            var earliest = Int64.max
            if overdue.sorted {
                earliest = slab.ptr(overdue.base![Int(overdue.start)]).pointee.deadline
            } else {
                for i in Int(overdue.start) ..< Int(overdue.count) where overdue.base![i] != _nil {
                    earliest = min(earliest, slab.ptr(overdue.base![i]).pointee.deadline)
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
    public mutating func advance(to now: Int64, limit: Int = .max, into fired: inout [TimerHandle]) -> Int {
        guard limit > 0 else { return 0 }
        let target = now < 0 ? 0 : UInt64(tickMilliseconds == 1 ? now : now / tickMilliseconds)
        let overdueEmpty = slots[Int(_ListID.overdue)].isEmpty
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
        let base = slot.pointee.base!
        var firedCount = 0
        var i = Int(slot.pointee.start)
        let end = Int(slot.pointee.count)
        while i < end && firedCount < limit {
            let h = base[i]
            i += 1
            if h == _nil {
                slot.pointee.dead -= 1
                continue
            }
            if i + 8 < end { hg_prefetch(slab.base + Int(base[i + 8])) }
            detachForFiring(h)
            fired.append(TimerHandle(rawValue: h))
            firedCount += 1
        }
        slot.pointee.start = UInt32(i)
        while slot.pointee.start < slot.pointee.count && base[Int(slot.pointee.start)] == _nil {
            slot.pointee.start += 1
            slot.pointee.dead -= 1
        }
        if slot.pointee.isEmpty { emptied(list) }
        return firedCount
    }

    /// Marks a fired timer detached and starts loading what its consumer reads next (its id and
    /// payload) and what removing it touches (its index slot).
    @inline(__always)
    mutating func detachForFiring(_ h: UInt32) {
        let entry = slab.ptr(h)
        entry.pointee.list = _ListID.detached
        hg_prefetch(arena.pointer(entry.pointee.arenaOffset))
        hg_prefetch(index.slots + index.home(entry.pointee.hashTag))
    }

    /// Re-places every timer of a slot of level > 0 (or of the overflow list) relative to the
    /// wheel's current tick: they move to lower levels.
    mutating func cascade(level: Int, tick: UInt64) {
        let list: UInt16
        if level == TimerWheel.levelCount {
            list = _ListID.overflow
            overflowMinTick = .max
        } else {
            list = UInt16(level * TimerWheel.slotsPerLevel + Int((tick >> UInt64(level * TimerWheel.bitsPerLevel)) & 63))
            masks[level] &= ~(1 &<< ((tick >> UInt64(level * TimerWheel.bitsPerLevel)) & 63))
        }
        var taken = slots[Int(list)]
        slots[Int(list)] = _SlotArray()
        if let base = taken.base {
            let end = Int(taken.count)
            for i in Int(taken.start) ..< end {
                if i + 8 < end && base[i + 8] != _nil { hg_prefetch(slab.base + Int(base[i + 8])) }
                let h = base[i]
                if h != _nil { link(h) }
            }
        }
        // Give the memory back to the slot unless it gained a new array meanwhile (overflow).
        if slots[Int(list)].base == nil {
            taken.reset()
            slots[Int(list)] = taken
        } else {
            taken.release()
        }
    }

    /// Fires overdue timers whose tick is at or before `target`, in deadline order.
    mutating func drainOverdue(through target: UInt64, limit: Int, into fired: inout [TimerHandle]) -> Int {
        let list = _ListID.overdue
        if !slots[Int(list)].sorted { compact(list, sorting: true) }
        let slot = slots + Int(list)
        var firedCount = 0
        while firedCount < limit && !slot.pointee.isEmpty {
            let h = slot.pointee.base![Int(slot.pointee.start)]
            guard tick(forDeadline: slab.ptr(h).pointee.deadline) <= target else { break }
            unlinkIfLinked(h)
            detachForFiring(h)
            fired.append(TimerHandle(rawValue: h))
            firedCount += 1
        }
        return firedCount
    }

    // MARK: Statistics

    // MARK: In flight

    /// Timers fired and awaiting acknowledgement (see `markInFlight`).
    public var inFlightCount: Int { slots[Int(_ListID.inFlight)].live }

    /// Parks a fired (detached) timer on the in-flight list until `redeliverAt`. Its deadline,
    /// attempt and generation are kept. The list is first in, first out: `redeliverAt` is raised
    /// to the latest time on the list if it is earlier (a constant redelivery timeout keeps the
    /// order anyway; a wall clock stepping back could break it).
    /// - Complexity: O(1) amortized.
    public mutating func markInFlight(_ handle: TimerHandle, redeliverAt: Int64) {
        let entry = held(handle)
        precondition(entry.pointee.list == _ListID.detached, "only a fired timer can be in flight")
        let list = slots + Int(_ListID.inFlight)
        let time = max(redeliverAt, list.pointee.lastDeadline)
        entry.pointee.position = list.pointee.append(handle.rawValue, time: time)
        entry.pointee.list = _ListID.inFlight
        _checkInvariants()
    }

    /// Starts loading a timer's entry into the cache (for a caller about to read many timers in
    /// a known order). Harmless for a free handle.
    @inline(__always)
    public func prefetch(_ handle: TimerHandle) {
        guard handle.rawValue < slab.highWater else { return }
        let entry = slab.ptr(handle.rawValue)
        hg_prefetch(entry)
    }

    /// The second stage of `prefetch`: reads the entry (loaded by then) and starts loading the
    /// timer's id and payload bytes, up to 256 of them. Harmless for a free handle.
    @inline(__always)
    public func prefetchBytes(_ handle: TimerHandle) {
        guard handle.rawValue < slab.highWater else { return }
        let entry = slab.ptr(handle.rawValue)
        guard entry.pointee.list != _ListID.free else { return }
        let start = arena.pointer(entry.pointee.arenaOffset)
        let length = min(256, Int(entry.pointee.idLength) + Int(entry.pointee.payloadLength))
        var offset = 0
        repeat {
            hg_prefetch(start + offset)
            offset += 64
        } while offset < length
    }

    /// Takes a held timer off its slot or list, leaving it detached (as if it had just fired).
    public mutating func detach(_ handle: TimerHandle) {
        _ = held(handle)
        unlinkIfLinked(handle.rawValue)
        _checkInvariants()
    }

    /// Whether `handle` names a held timer (pending, detached or in flight).
    public func isHeld(_ handle: TimerHandle) -> Bool {
        handle.rawValue < slab.highWater && slab.ptr(handle.rawValue).pointee.list != _ListID.free
    }

    /// Whether the timer is on the in-flight list.
    public func isInFlight(_ handle: TimerHandle) -> Bool { held(handle).pointee.list == _ListID.inFlight }

    /// When the earliest in-flight timer is due for redelivery.
    public func nextRedelivery() -> Int64? {
        let list = slots[Int(_ListID.inFlight)]
        guard !list.isEmpty else { return nil }
        return list.times![Int(list.start)]
    }

    /// Detaches in-flight timers due for redelivery at `now`, oldest first, up to `limit`.
    public mutating func takeRedeliveries(through now: Int64, limit: Int, into taken: inout [TimerHandle]) -> Int {
        var count = 0
        let list = slots + Int(_ListID.inFlight)
        while count < limit && !list.pointee.isEmpty && list.pointee.times![Int(list.pointee.start)] <= now {
            let h = list.pointee.base![Int(list.pointee.start)]
            unlinkIfLinked(h)
            taken.append(TimerHandle(rawValue: h))
            count += 1
        }
        _checkInvariants()
        return count
    }

    /// Bytes of memory the wheel holds: entries, index, arena, slot arrays (allocated, not
    /// necessarily touched).
    public var allocatedBytes: Int {
        var slotBytes = _ListID.count * MemoryLayout<_SlotArray>.stride
        for list in 0 ..< _ListID.count { slotBytes += Int(slots[list].capacity) * (slots[list].keepsTimes ? 12 : 4) }
        return slab.allocatedBytes + index.allocatedBytes + arena.allocatedBytes + slotBytes + TimerWheel.levelCount * 8
    }

    /// Bytes of id and payload blocks in use, including size-class rounding.
    public var arenaLiveBytes: Int { arena.liveUnits * _Arena.unit }

    /// Reserves room for `capacity` timers.
    public mutating func reserveCapacity(_ capacity: Int) {
        slab.reserve(capacity)
        while index.capacity * 3 / 4 < capacity { index.grow() }
    }

    // MARK: Reading a timer

    /// - Precondition: `handle` is held.
    public func deadline(of handle: TimerHandle) -> Int64 { held(handle).pointee.deadline }
    public func attempt(of handle: TimerHandle) -> UInt32 { held(handle).pointee.attempt }
    public func tag(of handle: TimerHandle) -> UInt8 { held(handle).pointee.tag }
    public func generation(of handle: TimerHandle) -> UInt32 { held(handle).pointee.generation }
    /// Whether the timer has fired and not been re-armed or removed.
    public func isDetached(_ handle: TimerHandle) -> Bool { held(handle).pointee.list == _ListID.detached }

    public mutating func setTag(_ tag: UInt8, of handle: TimerHandle) { held(handle).pointee.tag = tag }
    public mutating func setAttempt(_ attempt: UInt32, of handle: TimerHandle) { held(handle).pointee.attempt = attempt }

    /// Calls `body` with the timer's id bytes (valid only during the call).
    @inlinable
    public func withID<R, E: Error>(of handle: TimerHandle, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(_idBytes(of: handle))
    }

    @usableFromInline
    func _idBytes(of handle: TimerHandle) -> UnsafeRawBufferPointer {
        let entry = held(handle)
        return UnsafeRawBufferPointer(start: arena.pointer(entry.pointee.arenaOffset), count: Int(entry.pointee.idLength))
    }

    /// Calls `body` with the timer's payload bytes (valid only during the call).
    @inlinable
    public func withPayload<R, E: Error>(of handle: TimerHandle, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(_payloadBytes(of: handle))
    }

    @usableFromInline
    func _payloadBytes(of handle: TimerHandle) -> UnsafeRawBufferPointer {
        let entry = held(handle)
        let start = arena.pointer(entry.pointee.arenaOffset) + Int(entry.pointee.idLength)
        return UnsafeRawBufferPointer(start: start, count: Int(entry.pointee.payloadLength))
    }

    @inline(__always)
    func held(_ handle: TimerHandle) -> UnsafeMutablePointer<_Entry> {
        precondition(handle.rawValue < slab.highWater, "handle out of bounds")
        let entry = slab.ptr(handle.rawValue)
        precondition(entry.pointee.list != _ListID.free, "handle \(handle) is not held")
        return entry
    }

    /// Calls `body` with every held timer's handle, in slab order (not deadline order). Handles
    /// are stable, so a scan may be split over several calls by `range`.
    public func forEachHandle(in range: Range<UInt32>? = nil, _ body: (TimerHandle) throws -> Void) rethrows {
        let bounds = range.map { $0.clamped(to: 0 ..< slab.highWater) } ?? (0 ..< slab.highWater)
        for h in bounds where slab.ptr(h).pointee.list != _ListID.free {
            try body(TimerHandle(rawValue: h))
        }
    }

    /// One past the highest handle ever handed out: the end of a full `forEachHandle` scan.
    public var handleLimit: UInt32 { slab.highWater }

}

extension TimerWheel {
    /// Convenience for Swift arrays.
    public mutating func schedule(id: [UInt8], deadline: Int64, payload: [UInt8] = [], attempt: UInt32 = 1, tag: UInt8 = 0) throws(CapacityError) -> ScheduleResult {
        let result = id.withUnsafeBytes { idBytes in
            payload.withUnsafeBytes { payloadBytes in
                Result { () throws(CapacityError) -> ScheduleResult in
                    try schedule(id: idBytes, deadline: deadline, payload: payloadBytes, attempt: attempt, tag: tag)
                }
            }
        }
        return try result.get()
    }

    @discardableResult
    public mutating func cancel(id: [UInt8]) -> Bool {
        id.withUnsafeBytes { cancel(id: $0) }
    }


    public func lookup(id: [UInt8]) -> TimerHandle? {
        id.withUnsafeBytes { lookup(id: $0) }
    }

    public func id(of handle: TimerHandle) -> [UInt8] { withID(of: handle) { Array($0) } }
    public func payload(of handle: TimerHandle) -> [UInt8] { withPayload(of: handle) { Array($0) } }
}
