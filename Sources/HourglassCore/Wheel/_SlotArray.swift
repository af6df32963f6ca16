#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The timers of one slot, in the order they joined it: a growable array of handles.
///
/// Removing a timer leaves a tombstone (`_nil`) so that order is kept and removal is O(1);
/// handles before `start` are all gone (fired), so a slot drained in several calls is not
/// rescanned. When tombstones outnumber live handles the array is compacted, so memory stays
/// within twice the live handles. Arrays rather than linked lists: cascading and firing walk
/// memory in order and prefetch the entries ahead, instead of chasing one cache miss after another.
struct _SlotArray {
    var base: UnsafeMutablePointer<UInt32>? = nil
    var start: UInt32 = 0
    var count: UInt32 = 0
    var capacity: UInt32 = 0
    /// Tombstones in `start ..< count`.
    var dead: UInt32 = 0
    /// Deadline of the last handle appended, to notice appends out of deadline order.
    var lastDeadline: Int64 = .min
    /// Whether `start ..< count` is in deadline order (ties in array order).
    var sorted: Bool = true
    /// A time per position, kept only by the in-flight list (when each timer is due for
    /// redelivery); nil elsewhere.
    var times: UnsafeMutablePointer<Int64>? = nil
    var keepsTimes: Bool = false

    var live: Int { Int(count - start - dead) }
    var isEmpty: Bool { count == start + dead }

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

    mutating func grow() {
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

    /// Gives up the memory.
    mutating func release() {
        free(base)
        free(times)
        let keepsTimes = self.keepsTimes
        self = _SlotArray()
        self.keepsTimes = keepsTimes
    }
}
