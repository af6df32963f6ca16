import HeapModule
import HourglassCore

/// Fixed-width ids ("order-0000000042"), precomputed in one block so that the measured loops
/// do not format numbers.
struct IDTable: ~Copyable {
    static let width = 16
    let base: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(byteCount: count * IDTable.width, alignment: 8)
        let prefix = Array("order-".utf8)
        for i in 0 ..< count {
            let p = base + i * IDTable.width
            for (k, byte) in prefix.enumerated() { p.storeBytes(of: byte, toByteOffset: k, as: UInt8.self) }
            var value = i
            for k in stride(from: IDTable.width - 1, through: prefix.count, by: -1) {
                p.storeBytes(of: UInt8(48 + value % 10), toByteOffset: k, as: UInt8.self)
                value /= 10
            }
        }
    }

    deinit { base.deallocate() }

    @inline(__always)
    func id(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + i * IDTable.width, count: IDTable.width)
    }
}

struct WheelResult {
    var name: String
    var system: String
    var operations: Int
    var seconds: Double
    /// Process CPU time of the phase.
    var cpu: CPUSpent
    var note: String = ""
    var memoryBytesPerTimer: Double? = nil
    var allocationsPerTimer: Double? = nil
    var throughput: Double { Double(operations) / seconds }

    init(name: String, system: String, operations: Int, timing: Timing, note: String = "",
         memoryBytesPerTimer: Double? = nil, allocationsPerTimer: Double? = nil) {
        self.name = name
        self.system = system
        self.operations = operations
        self.seconds = timing.seconds
        self.cpu = timing.cpu
        self.note = note
        self.memoryBytesPerTimer = memoryBytesPerTimer
        self.allocationsPerTimer = allocationsPerTimer
    }
}

/// The in-memory wheel against swift-collections' `Heap` used as a delay queue, at `pending`
/// timers spread over one hour.
func runWheelScenario(pending: Int, operations: Int, payloadBytes: Int, seed: UInt64, peers: Bool) -> [WheelResult] {
    let start: Int64 = 1_763_791_200_000
    let hour: UInt64 = 3_600_000
    let ids = IDTable(count: pending + 2 * operations)
    var random = WorkloadRandom(seed: seed)
    let deadlines: [Int64] = (0 ..< pending + 2 * operations).map { _ in start + 1 + Int64(random.next() % hour) }
    let payload = [UInt8](repeating: 0x61, count: payloadBytes)
    var results: [WheelResult] = []

    payload.withUnsafeBytes { payloadBytes in
        // 1. Fill, memory, then schedule + cancel in steady state.
        do {
            let rssBefore = baselineAnonymousBytes()
            let marked = Mark.now()
            var wheel = TimerWheel(now: start)
            let fill = measured {
                for i in 0 ..< pending {
                    _ = try! wheel.schedule(id: ids.id(i), deadline: deadlines[i], payload: payloadBytes)
                }
            }
            let allocations = marked.allocations(to: Mark.now())
            let rssAfter = liveAnonymousBytes()
            let userBytes = pending * (IDTable.width + payloadBytes.count)
            let rssPerTimer = Double(rssAfter - rssBefore - userBytes) / Double(pending)
            let allocatedPerTimer = Double(wheel.allocatedBytes - userBytes) / Double(pending)
            results.append(WheelResult(
                name: "schedule (fill to \(pending))", system: "wheel", operations: pending, timing: fill,
                note: "memory beyond id+payload: \(format2(rssPerTimer)) B/timer resident, \(format2(allocatedPerTimer)) B/timer allocated; the fill includes first-touch of the tables' memory",
                memoryBytesPerTimer: Double(rssAfter - rssBefore) / Double(pending),
                allocationsPerTimer: Double(allocations) / Double(pending)))

            // Steady state: schedule a new timer, cancel the oldest pending one (a cold entry).
            let cold = measured {
                for i in 0 ..< operations {
                    _ = try! wheel.schedule(id: ids.id(pending + i), deadline: deadlines[pending + i], payload: payloadBytes)
                    let cancelled = wheel.cancel(id: ids.id(i))
                    precondition(cancelled)
                }
            }
            results.append(WheelResult(name: "schedule + cancel (cancel oldest)", system: "wheel", operations: 2 * operations, timing: cold))
            precondition(wheel.count == pending)

            // The same through the prefetch pipeline the engine uses for a batch of requests.
            // Pending now: ids operations ..< operations + pending. Schedule ids from
            // pending + operations on, cancel from operations on (always the oldest).
            let base = pending + operations
            let pipelined = measured {
                for i in 0 ..< operations {
                    if i + 24 < operations {
                        wheel.prefetchIndex(id: ids.id(base + i + 24))
                        wheel.prefetchIndex(id: ids.id(operations + i + 24))
                    }
                    if i + 12 < operations { wheel.prefetchEntry(id: ids.id(operations + i + 12)) }
                    if i + 4 < operations { wheel.prefetchBytes(id: ids.id(operations + i + 4)) }
                    _ = try! wheel.schedule(id: ids.id(base + i), deadline: deadlines[base + i], payload: payloadBytes)
                    let cancelled = wheel.cancel(id: ids.id(operations + i))
                    precondition(cancelled)
                }
            }
            results.append(WheelResult(name: "schedule + cancel (oldest, pipelined)", system: "wheel", operations: 2 * operations, timing: pipelined))
            precondition(wheel.count == pending)
        }
        do {
            // Steady state, order-service shape: most timers are cancelled soon after they are
            // scheduled (the order is paid), at 1M pending.
            var wheel = TimerWheel(now: start)
            for i in 0 ..< pending { _ = try! wheel.schedule(id: ids.id(i), deadline: deadlines[i], payload: payloadBytes) }
            let lag = 64
            let warm = measured {
                for i in 0 ..< operations {
                    _ = try! wheel.schedule(id: ids.id(pending + i), deadline: deadlines[pending + i], payload: payloadBytes)
                    if i >= lag {
                        let cancelled = wheel.cancel(id: ids.id(pending + i - lag))
                        precondition(cancelled)
                    }
                }
            }
            results.append(WheelResult(name: "schedule + cancel (cancel recent)", system: "wheel", operations: 2 * operations - lag, timing: warm))
        }
        do {
            // Schedule `pending` timers over an hour, then run the clock through all of them in
            // 1 ms steps, removing each as it fires.
            var wheel = TimerWheel(now: start)
            var fired: [TimerHandle] = []
            fired.reserveCapacity(1024)
            var firedCount = 0
            var fillSeconds = 0.0
            let seconds = measured {
                fillSeconds = timed {
                    for i in 0 ..< pending { _ = try! wheel.schedule(id: ids.id(i), deadline: deadlines[i], payload: payloadBytes) }
                }
                var now = start
                let end = start + Int64(hour) + 1
                while now <= end {
                    fired.removeAll(keepingCapacity: true)
                    firedCount += wheel.advance(to: now, into: &fired)
                    for handle in fired { wheel.remove(handle) }
                    now += 1
                }
            }
            precondition(firedCount == pending && wheel.count == 0)
            results.append(WheelResult(name: "schedule + fire (1 ms steps)", system: "wheel", operations: pending, timing: seconds,
                                       note: "schedule \(format2(fillSeconds * 1e9 / Double(pending))) ns, fire \(format2((seconds.seconds - fillSeconds) * 1e9 / Double(pending))) ns per timer"))
        }
    }

    if !peers { return results }
    // The same with a binary heap: a delay queue with lazy cancellation.
    do {
        let rssBefore = baselineAnonymousBytes()
        let marked = Mark.now()
        var heap = DelayQueue()
        let fill = measured {
            for i in 0 ..< pending { heap.schedule(id: ids.id(i), deadline: deadlines[i], payload: ownCopy(payload)) }
        }
        let allocations = marked.allocations(to: Mark.now())
        let rssAfter = liveAnonymousBytes()
        let userBytes = pending * (IDTable.width + payload.count)
        results.append(WheelResult(
            name: "schedule (fill to \(pending))", system: "heap", operations: pending, timing: fill,
            note: "memory beyond id+payload: \(format2(Double(rssAfter - rssBefore - userBytes) / Double(pending))) B/timer resident; the heap keeps its own copy of each id and payload",
            memoryBytesPerTimer: Double(rssAfter - rssBefore) / Double(pending),
            allocationsPerTimer: Double(allocations) / Double(pending)))
        let cold = measured {
            for i in 0 ..< operations {
                heap.schedule(id: ids.id(pending + i), deadline: deadlines[pending + i], payload: ownCopy(payload))
                let cancelled = heap.cancel(id: ids.id(i))
                precondition(cancelled)
            }
        }
        results.append(WheelResult(name: "schedule + cancel (cancel oldest)", system: "heap", operations: 2 * operations, timing: cold))
    }
    do {
        var heap = DelayQueue()
        for i in 0 ..< pending { heap.schedule(id: ids.id(i), deadline: deadlines[i], payload: ownCopy(payload)) }
        let lag = 64
        let warm = measured {
            for i in 0 ..< operations {
                heap.schedule(id: ids.id(pending + i), deadline: deadlines[pending + i], payload: ownCopy(payload))
                if i >= lag {
                    let cancelled = heap.cancel(id: ids.id(pending + i - lag))
                    precondition(cancelled)
                }
            }
        }
        results.append(WheelResult(name: "schedule + cancel (cancel recent)", system: "heap", operations: 2 * operations - lag, timing: warm))
    }
    do {
        var heap = DelayQueue()
        var firedCount = 0
        let seconds = measured {
            for i in 0 ..< pending { heap.schedule(id: ids.id(i), deadline: deadlines[i], payload: ownCopy(payload)) }
            var now = start
            let end = start + Int64(hour) + 1
            while now <= end {
                firedCount += heap.fire(through: now)
                now += 1
            }
        }
        precondition(firedCount == pending)
        results.append(WheelResult(name: "schedule + fire (1 ms steps)", system: "heap", operations: pending, timing: seconds))
    }
    return results
}

/// What an in-memory DelayQueue does (the `heap` peer): a binary heap (swift-collections'
/// `Heap`) ordered by (deadline, sequence), a dictionary from id to the live sequence number,
/// cancellation by forgetting the id (the heap entry is skipped when it surfaces), firing by
/// popping the minimum while it is due. No durability.
struct DelayQueue {
    struct Item: Comparable {
        var deadline: Int64
        var sequence: UInt64
        var id: [UInt8]
        var payload: [UInt8]
        static func < (a: Item, b: Item) -> Bool { (a.deadline, a.sequence) < (b.deadline, b.sequence) }
        static func == (a: Item, b: Item) -> Bool { (a.deadline, a.sequence) == (b.deadline, b.sequence) }
    }

    var heap = Heap<Item>()
    var live: [[UInt8]: UInt64] = [:]
    var sequence: UInt64 = 0

    /// Timers held (not cancelled, not fired).
    var count: Int { live.count }

    mutating func schedule(id: UnsafeRawBufferPointer, deadline: Int64, payload: [UInt8]) {
        schedule(id: Array(id), deadline: deadline, payload: payload)
    }

    /// Schedules (or replaces) a timer; the queue keeps `id` and `payload` as given.
    mutating func schedule(id: [UInt8], deadline: Int64, payload: [UInt8]) {
        sequence += 1
        live[id] = sequence
        heap.insert(Item(deadline: deadline, sequence: sequence, id: id, payload: payload))
    }

    mutating func cancel(id: UnsafeRawBufferPointer) -> Bool {
        live.removeValue(forKey: Array(id)) != nil
    }

    mutating func cancel(id: [UInt8]) -> Bool {
        live.removeValue(forKey: id) != nil
    }

    mutating func fire(through now: Int64) -> Int {
        popDue(through: now) { _ in }
    }

    /// Pops every live timer due by `now` (at most `limit`), in deadline order, handing each to
    /// `deliver`; cancelled entries that surface are dropped.
    @discardableResult
    mutating func popDue(through now: Int64, limit: Int = .max, _ deliver: (Item) -> Void) -> Int {
        var fired = 0
        while fired < limit, let top = heap.min, top.deadline <= now {
            let item = heap.removeMin()
            if live[item.id] == item.sequence {
                live.removeValue(forKey: item.id)
                deliver(item)
                fired += 1
            }
        }
        return fired
    }

    /// The earliest deadline in the heap (possibly of a cancelled entry: a wake-up to drop it).
    var nextDeadline: Int64? { heap.min?.deadline }
}
