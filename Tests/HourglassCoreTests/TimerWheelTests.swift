import HourglassCore
import Testing

/// A wheel at a fixed start time, with helpers that speak in strings.
private final class Wheel {
    var wheel: TimerWheel
    var fired: [TimerHandle] = []

    init(now: Int64 = 1_763_791_200_000, tick: Int64 = 1) {
        wheel = TimerWheel(tickMilliseconds: tick, now: now, hashSeed: 42)
    }

    func schedule(_ id: String, at deadline: Int64, payload: [UInt8] = []) {
        _ = try! wheel.schedule(id: Array(id.utf8), deadline: deadline, payload: payload)
    }

    /// Advances to `now` and returns the ids that fired, removing them.
    func advance(to now: Int64, limit: Int = .max) -> [String] {
        fired.removeAll()
        _ = wheel.advance(to: now, limit: limit, into: &fired)
        var ids: [String] = []
        for handle in fired {
            ids.append(String(decoding: wheel.id(of: handle), as: UTF8.self))
            wheel.remove(handle)
        }
        wheel._checkAllInvariants()
        return ids
    }

    func cancel(_ id: String) -> Bool { wheel.cancel(id: Array(id.utf8)) }
    func handle(_ id: String) -> TimerHandle? { wheel.lookup(id: Array(id.utf8)) }
    var count: Int { wheel.count }
    var nextDeadline: Int64? { wheel.nextDeadline() }
    func generation(_ id: String) -> UInt32 { wheel.generation(of: handle(id)!) }
    func payload(_ id: [UInt8]) -> [UInt8] { wheel.payload(of: wheel.lookup(id: id)!) }
}

@Suite("Timing wheel")
struct TimerWheelTests {
    static let start: Int64 = 1_763_791_200_000

    @Test("fires at its exact millisecond, never a tick early", arguments: [
        0, 1, 2, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 262_145,
        16_777_215, 16_777_216, 16_777_217, 1_073_741_823, 1_073_741_824, 1_073_741_825,
        68_719_476_735, 68_719_476_736, 68_719_476_737, 1_800_000, 604_800_000, 31_536_000_000,
        3_155_760_000_000,  // 100 years
    ] as [Int64])
    func firesAtExactMillisecond(delay: Int64) {
        let w = Wheel(now: Self.start)
        w.schedule("t", at: Self.start + delay)
        if delay > 0 {
            // Jump to one millisecond before, in one step and then in a few more.
            #expect(w.advance(to: Self.start + delay / 2).isEmpty)
            #expect(w.advance(to: Self.start + delay - 1).isEmpty)
            #expect(w.nextDeadline! <= Self.start + delay)
        }
        #expect(w.advance(to: Self.start + delay) == ["t"])
        #expect(w.count == 0)
        #expect(w.nextDeadline == nil)
    }

    @Test("fires at every 64^k boundary of absolute time")
    func firesAtAlignedBoundaries() {
        let w = Wheel(now: Self.start)
        var expected: [(Int64, String)] = []
        for k in 1 ... 6 {
            let size = Int64(1) << (6 * k)
            let boundary = (Self.start / size + 1) * size
            for offset in [-1, 0, 1] as [Int64] {
                let id = "k\(k)\(offset)"
                w.schedule(id, at: boundary + offset)
                expected.append((boundary + offset, id))
            }
        }
        expected.sort { $0.0 < $1.0 }
        for (deadline, id) in expected {
            #expect(w.advance(to: deadline - 1).isEmpty, "\(id) fired early")
            #expect(w.advance(to: deadline) == [id])
        }
    }

    @Test("cancel removes a pending timer and says whether there was one")
    func cancel() {
        let w = Wheel()
        w.schedule("a", at: Self.start + 10)
        w.schedule("b", at: Self.start + 10)
        #expect(w.cancel("a"))
        #expect(!w.cancel("a"))
        #expect(!w.cancel("never"))
        #expect(w.advance(to: Self.start + 100) == ["b"])
    }

    @Test("scheduling a pending id replaces it")
    func upsert() {
        let w = Wheel()
        w.schedule("order-1", at: Self.start + 100, payload: [1])
        let generation = w.generation("order-1")
        w.schedule("order-1", at: Self.start + 50, payload: [2, 3])
        #expect(w.count == 1)
        #expect(w.generation("order-1") != generation)
        #expect(w.payload(Array("order-1".utf8)) == [2, 3])
        #expect(w.advance(to: Self.start + 49).isEmpty)
        #expect(w.advance(to: Self.start + 50) == ["order-1"])
        #expect(w.advance(to: Self.start + 1000).isEmpty)
    }

    @Test("equal deadlines fire in schedule order, across cascades")
    func tiesInScheduleOrder() {
        let w = Wheel()
        let deadline = Self.start + 5_000_000  // far: level 3
        w.schedule("first", at: deadline)
        #expect(w.advance(to: deadline - 300_000).isEmpty)  // "first" cascades partway down
        w.schedule("second", at: deadline)
        #expect(w.advance(to: deadline - 1).isEmpty)
        w.schedule("third", at: deadline)
        w.schedule("fourth", at: deadline)
        #expect(w.advance(to: deadline) == ["first", "second", "third", "fourth"])
    }

    @Test("a slot that starts right after the new time cascades before later timers join it", arguments: [1, 2, 3, 4, 5])
    func cascadeAtArrival(level: Int) {
        let size = Int64(1) << (6 * level)
        let slotStart = (Self.start / size + 2) * size
        let deadline = slotStart + 5
        let w = Wheel()
        w.schedule("older", at: deadline)
        // Stop exactly one tick before the slot starts; the next tick is the slot's.
        #expect(w.advance(to: slotStart - 1).isEmpty)
        w.schedule("newer", at: deadline)
        #expect(w.advance(to: deadline) == ["older", "newer"])
    }

    @Test("past deadlines fire at the next advance, oldest first, before later ones")
    func pastDeadlines() {
        let w = Wheel()
        #expect(w.advance(to: Self.start + 1000).isEmpty)
        w.schedule("later", at: Self.start + 1000)
        w.schedule("recent", at: Self.start + 900)
        w.schedule("old", at: Self.start - 86_400_000)
        w.schedule("epoch", at: 0)
        #expect(w.nextDeadline == 0)
        #expect(w.advance(to: Self.start + 1000) == ["epoch", "old", "recent", "later"])
    }

    @Test("a wall clock that steps back never fires a timer early")
    func clockStepsBack() {
        let w = Wheel()
        w.schedule("a", at: Self.start + 10_000)
        #expect(w.advance(to: Self.start + 5_000).isEmpty)
        // The clock steps back an hour; a timer due in between must wait for its deadline.
        w.schedule("b", at: Self.start + 1_000)
        #expect(w.advance(to: Self.start - 3_600_000).isEmpty)
        #expect(w.advance(to: Self.start + 999).isEmpty)
        #expect(w.advance(to: Self.start + 1_000) == ["b"])
        #expect(w.advance(to: Self.start + 9_999).isEmpty)
        // Forward step: fires what became due.
        #expect(w.advance(to: Self.start + 86_400_000) == ["a"])
    }

    @Test("deadlines beyond the wheel's range wait on the overflow list")
    func overflow() {
        let w = Wheel()
        let far = TimerWheel.maxDeadline
        let farther = far - 1
        w.schedule("year-9999", at: far)
        w.schedule("almost", at: farther)
        w.schedule("soon", at: Self.start + 1)
        #expect(w.advance(to: Self.start + 1) == ["soon"])
        #expect(w.advance(to: far - 2).isEmpty)
        #expect(w.advance(to: far) == ["almost", "year-9999"])
    }

    @Test("overflow timers that come due while far behind fire in order")
    func overflowCatchUp() {
        let w = Wheel(now: 0)
        let epoch: Int64 = 1 << 42
        w.schedule("c", at: 3 * epoch + 5)
        w.schedule("a", at: epoch + 7)
        w.schedule("b", at: 2 * epoch)
        #expect(w.advance(to: epoch + 6).isEmpty)
        #expect(w.advance(to: 4 * epoch) == ["a", "b", "c"])
    }

    @Test("a limit hands out due timers in order over several calls")
    func limit() {
        let w = Wheel()
        for i in 0 ..< 10 { w.schedule("t\(i)", at: Self.start + Int64(i % 3)) }
        w.schedule("past", at: Self.start - 5)
        var all: [String] = []
        while true {
            let batch = w.advance(to: Self.start + 10, limit: 3)
            if batch.isEmpty { break }
            #expect(batch.count <= 3)
            all += batch
            // A timer scheduled between batches at a due deadline joins in deadline order.
            if all.count == 3 { w.schedule("late", at: Self.start + 2) }
        }
        #expect(all == ["past", "t0", "t3", "t6", "t9", "t1", "t4", "t7", "t2", "t5", "t8", "late"])
    }

    @Test("a coarse tick fires at the first tick after the deadline, in deadline order")
    func coarseTick() {
        let w = Wheel(now: 1_000_000, tick: 10)
        w.schedule("b", at: 1_000_025)
        w.schedule("a", at: 1_000_021)
        w.schedule("c", at: 1_000_030)
        #expect(w.advance(to: 1_000_029).isEmpty)
        #expect(w.advance(to: 1_000_030) == ["a", "b", "c"])
    }

    @Test("ids and payloads of every size class survive", arguments: [0, 1, 7, 8, 9, 2039, 2040, 2041, 4096, 65_536, 1_048_576])
    func payloadSizes(size: Int) {
        let w = Wheel()
        let payload = (0 ..< size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let id = Array(repeating: UInt8(ascii: "x"), count: 1 + size % 300)
        _ = try! w.wheel.schedule(id: id, deadline: Self.start + 5, payload: payload)
        _ = try! w.wheel.schedule(id: [1], deadline: Self.start + 5, payload: [9])
        #expect(w.payload(id) == payload)
        let storedID = w.wheel.id(of: w.wheel.lookup(id: id)!)
        #expect(storedID == id)
        w.wheel._checkAllInvariants()
        // Replace with a payload of another size class, then with the original.
        _ = try! w.wheel.schedule(id: id, deadline: Self.start + 6, payload: [1, 2, 3])
        #expect(w.payload(id) == [1, 2, 3])
        _ = try! w.wheel.schedule(id: id, deadline: Self.start + 6, payload: payload)
        #expect(w.payload(id) == payload)
        #expect(w.advance(to: Self.start + 6).count == 2)
    }

    @Test("the longest id works")
    func longestID() {
        let w = Wheel()
        let id = Array(repeating: UInt8(7), count: TimerWheel.maxIDLength)
        _ = try! w.wheel.schedule(id: id, deadline: Self.start, payload: [])
        let found = w.wheel.lookup(id: id) != nil
        #expect(found)
        #expect(w.advance(to: Self.start).count == 1)
    }

    @Test("re-arming a fired timer keeps its generation and fires it again")
    func rearm() {
        let w = Wheel()
        w.schedule("a", at: Self.start + 1)
        var fired: [TimerHandle] = []
        _ = w.wheel.advance(to: Self.start + 1, into: &fired)
        #expect(fired.count == 1)
        let handle = fired[0]
        let detached = w.wheel.isDetached(handle)
        #expect(detached)
        let generation = w.wheel.generation(of: handle)
        w.wheel.rearm(handle, deadline: Self.start + 30_001, attempt: 2)
        let detachedAfter = w.wheel.isDetached(handle)
        #expect(!detachedAfter)
        #expect(w.generation("a") == generation)
        #expect(w.advance(to: Self.start + 30_000).isEmpty)
        #expect(w.advance(to: Self.start + 30_001) == ["a"])
    }

    @Test("thousands of timers with colliding slots and index growth")
    func many() {
        let w = Wheel()
        for i in 0 ..< 20_000 { w.schedule("id-\(i)", at: Self.start + Int64(i % 97) * 1_000) }
        for i in stride(from: 0, to: 20_000, by: 2) { #expect(w.cancel("id-\(i)")) }
        #expect(w.count == 10_000)
        w.wheel._checkAllInvariants()
        let fired = w.advance(to: Self.start + 200_000)
        #expect(fired.count == 10_000)
        #expect(w.count == 0)
    }
}
