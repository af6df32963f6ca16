import CHourglass
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The timers of one slot, in the order they joined it: a growable array of handles.
///
/// Removing a timer leaves a tombstone (`nilHandle`) so that order is kept and removal is O(1);
/// handles before `start` are all gone (fired), so a slot drained in several calls is not
/// rescanned. When tombstones outnumber live handles the array is compacted, so memory stays
/// within twice the live handles. Arrays rather than linked lists: cascading and firing walk
/// memory in order and prefetch the entries ahead, instead of chasing one cache miss after another.
///
/// It owns its memory (`malloc`'d), so it cannot be copied: the wheel keeps its arrays in place
/// and moves one out only to cascade it.
struct SlotArray: ~Copyable {
    private(set) var base: UnsafeMutablePointer<UInt32>? = nil
    private(set) var start: UInt32 = 0
    private(set) var count: UInt32 = 0
    private(set) var capacity: UInt32 = 0
    /// Tombstones in `start ..< count`.
    private(set) var dead: UInt32 = 0
    /// Deadline of the last handle appended, to notice appends out of deadline order.
    private(set) var lastDeadline: Int64 = .min
    /// Whether `start ..< count` is in deadline order (ties in array order).
    private(set) var sorted: Bool = true
    /// A time per position, kept only by the in-flight list (when each timer is due for
    /// redelivery); nil elsewhere.
    private(set) var times: UnsafeMutablePointer<Int64>? = nil
    let keepsTimes: Bool

    init(keepsTimes: Bool = false) { self.keepsTimes = keepsTimes }

    deinit {
        free(base)
        free(times)
    }

    var live: Int { Int(count - start - dead) }
    var isEmpty: Bool { count == start + dead }

    /// The handle at `position` (`nilHandle` for a tombstone).
    @inline(__always)
    subscript(position: Int) -> UInt32 { base![position] }

    /// The positions still to visit: from the first live handle to the end (tombstones included).
    var positions: Range<Int> { Int(start) ..< Int(count) }

    /// The first live handle, if any.
    var first: UInt32? { isEmpty ? nil : base![Int(start)] }

    /// The redelivery time of the first handle (the in-flight list).
    var firstTime: Int64? { isEmpty ? nil : times![Int(start)] }

    /// The time kept for `position` (the in-flight list).
    func time(at position: Int) -> Int64 { times![position] }

    /// Starts loading the handle at `position` (clamped to the array) into the cache.
    @inline(__always)
    func prefetch(at position: UInt32) {
        guard let base, count > 0 else { return }
        hg_prefetch(base + Int(min(position, count - 1)))
    }

    /// Appends a handle; returns its position.
    @inline(__always)
    mutating func append(_ handle: UInt32, deadline: Int64) -> UInt32 {
        if count == capacity { grow() }
        base![Int(count)] = handle
        if deadline < lastDeadline { sorted = false }
        lastDeadline = deadline
        count += 1
        return count - 1
    }

    /// Appends a handle with its time (the in-flight list); returns its position.
    mutating func append(_ handle: UInt32, time: Int64) -> UInt32 {
        let position = append(handle, deadline: time)
        times![Int(position)] = time
        return position
    }

    /// Leaves a tombstone at `position`, holding `handle`. Returns whether the slot is now empty
    /// (the caller resets it and clears its occupancy bit) and whether it should be compacted.
    @inline(__always)
    mutating func remove(_ handle: UInt32, at position: UInt32) -> (emptied: Bool, needsCompaction: Bool) {
        assert(base![Int(position)] == handle)
        base![Int(position)] = nilHandle
        if position == start {
            // Keep `start` on a live handle (or the end).
            start += 1
            skipTombstones()
        } else {
            dead += 1
        }
        if isEmpty { return (true, false) }
        return (false, dead >= 32 && Int(dead) * 2 > Int(count - start))
    }

    /// Drops the handles before `position` (visited and taken by the caller), then moves `start`
    /// past any tombstones.
    mutating func dropFront(to position: Int, tombstonesPassed: UInt32) {
        start = UInt32(position)
        dead -= tombstonesPassed
        skipTombstones()
    }

    @inline(__always)
    private mutating func skipTombstones() {
        while start < count && base![Int(start)] == nilHandle {
            start += 1
            dead -= 1
        }
    }

    /// Squeezes tombstones out, keeping order; with `deadline`, also sorts stably by it (once:
    /// a sorted array stays sorted until an append breaks the order). `moved` learns each live
    /// handle's new position, and the handle some places ahead (`nilHandle` near the end), which the
    /// caller may start loading.
    mutating func compact(sortingBy deadline: ((UInt32) -> Int64)? = nil, moved: (_ handle: UInt32, _ position: UInt32, _ ahead: UInt32) -> Void) {
        guard let base else { return }
        var write = 0
        for read in Int(start) ..< Int(count) {
            let h = base[read]
            if h != nilHandle {
                base[write] = h
                if let times { times[write] = times[read] }
                write += 1
            }
        }
        if let deadline, !sorted {
            var keyed = (0 ..< write).map { (deadline(base[$0]), $0, base[$0]) }
            keyed.sort { ($0.0, $0.1) < ($1.0, $1.1) }
            for (i, element) in keyed.enumerated() { base[i] = element.2 }
            sorted = true
            lastDeadline = keyed.last?.0 ?? .min
        }
        for i in 0 ..< write { moved(base[i], UInt32(i), i + 8 < write ? base[i + 8] : nilHandle) }
        start = 0
        count = UInt32(write)
        dead = 0
    }

    private mutating func grow() {
        let newCapacity = capacity == 0 ? 16 : capacity * 2
        precondition(newCapacity > capacity, "Hourglass: a wheel slot cannot hold more than 2^32 timers")
        guard let memory = realloc(base, Int(newCapacity) * 4) else {
            fatalError("Hourglass: out of memory growing a wheel slot to \(newCapacity) timers")
        }
        base = memory.assumingMemoryBound(to: UInt32.self)
        if keepsTimes {
            guard let timesMemory = realloc(times, Int(newCapacity) * 8) else {
                fatalError("Hourglass: out of memory growing the in-flight list to \(newCapacity) timers")
            }
            times = timesMemory.assumingMemoryBound(to: Int64.self)
        }
        capacity = newCapacity
    }

    /// Empties the array, keeping its memory unless it is large.
    mutating func reset() {
        start = 0
        count = 0
        dead = 0
        lastDeadline = .min
        sorted = true
        if capacity > 4096 {
            free(base)
            free(times)
            base = nil
            times = nil
            capacity = 0
        }
    }

    /// Bytes of memory held.
    var allocatedBytes: Int { Int(capacity) * (keepsTimes ? 12 : 4) }
}
