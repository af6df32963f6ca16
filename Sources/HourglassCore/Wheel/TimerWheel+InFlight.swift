/// In flight: fired timers kept, first in first out, until they are acknowledged or due for
/// redelivery.
extension TimerWheel {

    /// Timers fired and awaiting acknowledgement (see `markInFlight`).
    package var inFlightCount: Int { slots[Int(ListID.inFlight)].live }

    /// Parks a fired (detached) timer on the in-flight list until `redeliverAt`. Its deadline,
    /// attempt and generation are kept. The list is first in, first out: `redeliverAt` is raised
    /// to the latest time on the list if it is earlier (a constant redelivery timeout keeps the
    /// order anyway; a wall clock stepping back could break it).
    /// - Complexity: O(1) amortized.
    package mutating func markInFlight(_ handle: TimerHandle, redeliverAt: Int64) {
        let entry = held(handle)
        precondition(entry.pointee.list == ListID.detached, "only a fired timer can be in flight")
        let time = max(redeliverAt, slots[Int(ListID.inFlight)].lastDeadline)
        entry.pointee.position = slots[Int(ListID.inFlight)].append(handle.rawValue, time: time)
        entry.pointee.list = ListID.inFlight
        _checkInvariants()
    }

    /// Takes a held timer off its slot or list, leaving it detached (as if it had just fired).
    package mutating func detach(_ handle: TimerHandle) {
        _ = held(handle)
        unlinkIfLinked(handle.rawValue)
        _checkInvariants()
    }

    /// Whether `handle` names a held timer (pending, detached or in flight).
    package func isHeld(_ handle: TimerHandle) -> Bool {
        handle.rawValue < slab.highWater && slab.ptr(handle.rawValue).pointee.list != ListID.free
    }

    /// Whether the timer is on the in-flight list.
    package func isInFlight(_ handle: TimerHandle) -> Bool { held(handle).pointee.list == ListID.inFlight }

    /// When the earliest in-flight timer is due for redelivery.
    package func nextRedelivery() -> Int64? { slots[Int(ListID.inFlight)].firstTime }

    /// Detaches in-flight timers due for redelivery at `now`, oldest first, up to `limit`.
    package mutating func takeRedeliveries(through now: Int64, limit: Int, into taken: inout [TimerHandle]) -> Int {
        var count = 0
        let list = Int(ListID.inFlight)
        while count < limit, let time = slots[list].firstTime, time <= now, let h = slots[list].first {
            unlinkIfLinked(h)
            taken.append(TimerHandle(rawValue: h))
            count += 1
        }
        _checkInvariants()
        return count
    }
}
