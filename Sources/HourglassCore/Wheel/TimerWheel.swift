import CHourglass
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
///
/// The code follows the structures: this file holds the type, scheduling and reading a timer;
/// `TimerWheel+Placement.swift` puts a timer in its slot and takes it out, `+Advancing` moves
/// time and fires, `+InFlight` keeps fired timers until they are acknowledged, `+Prefetch` the
/// software pipeline of batches, `+Invariants` the checks. Each structure has its own file and
/// door: entries only through `Slab`, the id index only through `IDIndex.Probe`, slot arrays
/// only through `SlotArray`'s operations.
package struct TimerWheel: ~Copyable {
    package static let levelCount = 7
    package static let slotsPerLevel = 64
    package static let bitsPerLevel = 6
    /// Ticks per epoch: 2^42. Deadlines in a later epoch than the current tick overflow.
    package static let wheelBits = levelCount * bitsPerLevel
    /// The latest deadline the wheel accepts: 9999-12-31T23:59:59.999Z.
    package static let maxDeadline: Int64 = 253_402_300_799_999
    /// The longest id, in bytes.
    package static let maxIDLength = Entry.maxIDLength
    /// The longest payload, in bytes: 16 MiB - 1.
    package static let maxPayloadLength = Entry.maxPayloadLength
    /// The largest attempt number stored; larger ones are stored as this.
    package static let maxAttempt = Entry.maxAttempt
    /// The largest tag.
    package static let maxTag = Entry.maxTag

    /// Milliseconds per tick.
    package let tickMilliseconds: Int64

    var slab: Slab
    var arena: Arena
    var index: IDIndex
    var slots: UnsafeMutablePointer<SlotArray>
    var masks: UnsafeMutablePointer<UInt64>
    /// Every tick before this one is fully processed; this tick may be partly processed.
    var elapsed: UInt64
    /// A lower bound of the ticks on the overflow list.
    var overflowMinTick: UInt64
    /// A lower bound of the next expiration (see `nextExpiration`): while the target of
    /// `advance` stays below it, advancing is a comparison and a store.
    var expirationLowerBound: UInt64

    /// Timers held: pending (in a slot) and detached (fired, not yet removed or re-armed).
    package private(set) var count: Int

    package enum CapacityError: Error, Sendable, Equatable {
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
    package init(tickMilliseconds: Int64 = 1, now: Int64, hashSeed: UInt64? = nil, reservingCapacity: Int = 0) {
        precondition(tickMilliseconds >= 1, "tickMilliseconds must be at least 1")
        precondition(now >= 0 && now <= TimerWheel.maxDeadline, "now is outside the representable range")
        self.tickMilliseconds = tickMilliseconds
        slab = Slab(capacity: reservingCapacity)
        arena = Arena(capacityBytes: reservingCapacity * 32)
        index = IDIndex(minimumCapacity: reservingCapacity, seed: hashSeed ?? UInt64.random(in: .min ... .max))
        slots = .allocate(capacity: ListID.count)
        for list in 0 ..< ListID.count {
            (slots + list).initialize(to: SlotArray(keepsTimes: list == Int(ListID.inFlight)))
        }
        masks = .allocate(capacity: TimerWheel.levelCount)
        masks.initialize(repeating: 0, count: TimerWheel.levelCount)
        elapsed = UInt64(now / tickMilliseconds)
        overflowMinTick = .max
        expirationLowerBound = .max
        count = 0
    }

    deinit {
        slots.deinitialize(count: ListID.count)
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
    package func tick(forDeadlineMs deadline: Int64) -> Int64 { Int64(tick(forDeadline: deadline)) }

    /// The wheel's current time: every deadline before it has been handed out by `advance`.
    package var now: Int64 { Int64(elapsed) * tickMilliseconds }

    // MARK: Scheduling

    /// What `schedule` did.
    package struct ScheduleResult: Sendable {
        package var handle: TimerHandle
        /// Whether a timer with this id was replaced (it was pending or detached).
        package var replaced: Bool
        /// The replaced timer's tag, when one was replaced.
        package var previousTag: UInt8
    }

    /// Schedules a timer, replacing any timer with the same id (an upsert). A deadline that is
    /// already past fires at the next `advance`.
    ///
    /// - Precondition: `deadline` is in `0 ... maxDeadline`; `id` is 1 ... `maxIDLength` bytes;
    ///   the payload at most `maxPayloadLength`; `tag` at most `maxTag`.
    /// - Complexity: O(1) amortized; O(n) when storage grows.
    package mutating func schedule(
        id: UnsafeRawBufferPointer, deadline: Int64, payload: UnsafeRawBufferPointer,
        attempt: UInt32 = 1, tag: UInt8 = 0
    ) throws(CapacityError) -> ScheduleResult {
        precondition(deadline >= 0 && deadline <= TimerWheel.maxDeadline, "deadline outside the representable range")
        precondition(id.count > 0 && id.count <= TimerWheel.maxIDLength, "id length outside 1...\(TimerWheel.maxIDLength)")
        precondition(payload.count <= TimerWheel.maxPayloadLength, "payload longer than \(TimerWheel.maxPayloadLength) bytes")
        precondition(tag <= TimerWheel.maxTag, "tag above \(TimerWheel.maxTag)")
        let tagBits = IDIndex.tag(hashID(id, seed: index.seed))
        var (found, position) = find(id, tag: tagBits)
        if let handle = found {
            let previousTag = slab.ptr(handle).pointee.tag
            try replace(handle, deadline: deadline, payload: payload, attempt: attempt, tag: tag)
            _checkInvariants()
            return ScheduleResult(handle: TimerHandle(rawValue: handle), replaced: true, previousTag: previousTag)
        }
        // A new id.
        guard let offset = arena.allocate(bytes: id.count + payload.count) else { throw .arenaFull }
        guard let handle = slab.allocate() else {
            arena.release(offset, bytes: id.count + payload.count)
            throw .tooManyTimers
        }
        if index.needsGrowth {
            index.grow()
            position = index.emptySlot(for: tagBits)
        }
        index.insert(IDIndex.slotValue(tag: tagBits, handle: handle), at: position)
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
        if !Arena.sameClass(oldBytes, newBytes) {
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
    package func lookup(id: UnsafeRawBufferPointer) -> TimerHandle? {
        guard id.count > 0 && id.count <= TimerWheel.maxIDLength else { return nil }
        return find(id, tag: IDIndex.tag(hashID(id, seed: index.seed))).handle.map { TimerHandle(rawValue: $0) }
    }

    /// The held timer with this id and its index slot; or nil and the empty slot where the id
    /// would go.
    @inline(__always)
    func find(_ id: UnsafeRawBufferPointer, tag: UInt32) -> (handle: UInt32?, position: Int) {
        var probe = index.probe(tag: tag)
        while let handle = probe.nextCandidate() {
            if idEquals(handle, id) { return (handle, probe.position) }
        }
        return (nil, probe.position)
    }

    /// Removes the timer with this id; returns whether there was one.
    /// - Complexity: O(1) expected.
    @discardableResult
    package mutating func cancel(id: UnsafeRawBufferPointer) -> Bool {
        guard id.count > 0 && id.count <= TimerWheel.maxIDLength else { return false }
        let (found, position) = find(id, tag: IDIndex.tag(hashID(id, seed: index.seed)))
        guard let handle = found else { return false }
        index.remove(at: position)
        dispose(handle)
        _checkInvariants()
        return true
    }

    /// Removes a held timer (pending or detached).
    /// - Complexity: O(1) expected.
    package mutating func remove(_ handle: TimerHandle) {
        let h = handle.rawValue
        let entry = held(handle)
        index.remove(at: index.position(of: IDIndex.slotValue(tag: entry.pointee.hashTag, handle: h)))
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
    package mutating func rearm(_ handle: TimerHandle, deadline: Int64, attempt: UInt32? = nil, tag: UInt8? = nil) {
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

    // MARK: Memory

    /// Bytes of memory the wheel holds: entries, index, arena, slot arrays (allocated, not
    /// necessarily touched).
    package var allocatedBytes: Int {
        var slotBytes = ListID.count * MemoryLayout<SlotArray>.stride
        for list in 0 ..< ListID.count { slotBytes += slots[list].allocatedBytes }
        return slab.allocatedBytes + index.allocatedBytes + arena.allocatedBytes + slotBytes + TimerWheel.levelCount * 8
    }

    /// Bytes of id and payload blocks in use, including size-class rounding.
    package var arenaLiveBytes: Int { arena.liveUnits * Arena.unit }

    /// Reserves room for `capacity` timers.
    package mutating func reserveCapacity(_ capacity: Int) {
        slab.reserve(capacity)
        while index.capacity * 3 / 4 < capacity { index.grow() }
    }

    // MARK: Reading a timer

    /// - Precondition: `handle` is held.
    package func deadline(of handle: TimerHandle) -> Int64 { held(handle).pointee.deadline }
    package func attempt(of handle: TimerHandle) -> UInt32 { held(handle).pointee.attempt }
    package func tag(of handle: TimerHandle) -> UInt8 { held(handle).pointee.tag }
    package func generation(of handle: TimerHandle) -> UInt32 { held(handle).pointee.generation }
    /// Whether the timer has fired and not been re-armed or removed.
    package func isDetached(_ handle: TimerHandle) -> Bool { held(handle).pointee.list == ListID.detached }

    package mutating func setTag(_ tag: UInt8, of handle: TimerHandle) { held(handle).pointee.tag = tag }
    /// Changes the deadline of a fired timer not yet re-armed (it is on no list, so nothing moves).
    package mutating func setDeadline(_ deadline: Int64, ofDetached handle: TimerHandle) {
        precondition(deadline >= 0 && deadline <= TimerWheel.maxDeadline, "deadline outside the representable range")
        let entry = held(handle)
        precondition(entry.pointee.list == ListID.detached, "only a detached timer's deadline is set in place")
        entry.pointee.deadline = deadline
    }
    package mutating func setAttempt(_ attempt: UInt32, of handle: TimerHandle) { held(handle).pointee.attempt = attempt }
    /// Gives the timer a new generation: references to its earlier deliveries no longer match
    /// (a recurring timer moving on to its next occurrence).
    package mutating func renew(_ handle: TimerHandle) { held(handle).pointee.generation &+= 1 }

    /// Calls `body` with the timer's id bytes (valid only during the call).
    @inlinable
    package func withID<R, E: Error>(of handle: TimerHandle, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(_idBytes(of: handle))
    }

    @usableFromInline
    func _idBytes(of handle: TimerHandle) -> UnsafeRawBufferPointer {
        let entry = held(handle)
        return UnsafeRawBufferPointer(start: arena.pointer(entry.pointee.arenaOffset), count: Int(entry.pointee.idLength))
    }

    /// Calls `body` with the timer's payload bytes (valid only during the call).
    @inlinable
    package func withPayload<R, E: Error>(of handle: TimerHandle, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(_payloadBytes(of: handle))
    }

    /// Calls `body` with the timer's payload bytes to change in place (the engine keeps a
    /// recurring timer's state at their end).
    package mutating func withMutablePayload<R>(of handle: TimerHandle, _ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        body(UnsafeMutableRawBufferPointer(mutating: _payloadBytes(of: handle)))
    }

    @usableFromInline
    func _payloadBytes(of handle: TimerHandle) -> UnsafeRawBufferPointer {
        let entry = held(handle)
        let start = arena.pointer(entry.pointee.arenaOffset) + Int(entry.pointee.idLength)
        return UnsafeRawBufferPointer(start: start, count: Int(entry.pointee.payloadLength))
    }

    @inline(__always)
    func held(_ handle: TimerHandle) -> UnsafeMutablePointer<Entry> {
        precondition(handle.rawValue < slab.highWater, "handle out of bounds")
        let entry = slab.ptr(handle.rawValue)
        precondition(entry.pointee.list != ListID.free, "handle \(handle) is not held")
        return entry
    }

    /// Calls `body` with every held timer's handle, in slab order (not deadline order). Handles
    /// are stable, so a scan may be split over several calls by `range`.
    package func forEachHandle(in range: Range<UInt32>? = nil, _ body: (TimerHandle) throws -> Void) rethrows {
        let bounds = range.map { $0.clamped(to: 0 ..< slab.highWater) } ?? (0 ..< slab.highWater)
        for h in bounds where slab.ptr(h).pointee.list != ListID.free {
            try body(TimerHandle(rawValue: h))
        }
    }

    /// One past the highest handle ever handed out: the end of a full `forEachHandle` scan.
    package var handleLimit: UInt32 { slab.highWater }
}


extension TimerWheel {
    /// Convenience for Swift arrays.
    package mutating func schedule(id: [UInt8], deadline: Int64, payload: [UInt8] = [], attempt: UInt32 = 1, tag: UInt8 = 0) throws(CapacityError) -> ScheduleResult {
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
    package mutating func cancel(id: [UInt8]) -> Bool {
        id.withUnsafeBytes { cancel(id: $0) }
    }


    package func lookup(id: [UInt8]) -> TimerHandle? {
        id.withUnsafeBytes { lookup(id: $0) }
    }

    package func id(of handle: TimerHandle) -> [UInt8] { withID(of: handle) { Array($0) } }
    package func payload(of handle: TimerHandle) -> [UInt8] { withPayload(of: handle) { Array($0) } }
}

