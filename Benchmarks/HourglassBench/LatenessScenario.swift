import Hourglass
import HourglassStorage
#if canImport(Glibc)
import Glibc
#endif

/// How late timers fire on the real clock under a steady load: N timers due over a 10 s window
/// at 1 ms granularity (timer i at S + i·10000/N ms), each scheduled one second before its
/// deadline by a producer that runs on the wall clock, while a background load schedules
/// far-future timers (never due during the run) at a steady rate. Lateness is fired-at minus
/// deadline of every delivery; `received_*` is the consumer's clock when it got the delivery.
struct LatenessPlan: Sendable {
    /// Milliseconds over which the timers are due: 10 s, or N ms (one timer per millisecond)
    /// when N is under 10 000, at least 1 s.
    let windowMs: Int64
    /// How long before its deadline the producer schedules a timer.
    let leadMs: Int64 = 1000
    /// Background schedules per second.
    let loadRate: Int
    /// `first[m]`: the first timer whose offset from S is m ms or more.
    let first: [Int]
    let count: Int

    init(timers: Int, loadRate: Int?) {
        count = timers
        let windowMs: Int64 = timers >= 10_000 ? 10_000 : Int64(max(1000, timers))
        self.windowMs = windowMs
        self.loadRate = loadRate ?? Int(Int64(timers) * 1000 / windowMs)
        var first: [Int] = []
        first.reserveCapacity(Int(windowMs) + 1)
        var i = 0
        for m in 0 ... windowMs {
            while i < timers && Int64(i) * windowMs / Int64(timers) < m { i += 1 }
            first.append(i)
        }
        self.first = first
    }

    func offset(_ i: Int) -> Int64 { Int64(i) * windowMs / Int64(count) }

    /// Producer ticks: one per millisecond from the start (S − lead) to S + window.
    var ticks: Int { Int(leadMs + windowMs) }

    /// Background schedules due by the end of tick `m` (cumulative).
    func loadThrough(tick m: Int) -> Int { Int(Int64(m + 1) * Int64(loadRate) / 1000) }

    var loadTotal: Int { loadThrough(tick: ticks - 1) }

    /// Timers scheduled at tick `m`: those due at S + m.
    func dueRange(tick m: Int) -> Range<Int> {
        guard m < Int(windowMs) else { return count ..< count }
        return first[m] ..< first[m + 1]
    }

    var description: String {
        "\(count) timers due over \(windowMs) ms, each scheduled \(leadMs) ms ahead; background load \(loadRate) schedules/s of far-future timers (\(loadTotal) in all)"
    }
}

/// Runs the producer on this thread: at `start + m` ms for every tick m, `tick(due, deadline,
/// load)` with the timers due `lead` later and the background timers of that tick.
func runProducer(plan: LatenessPlan, start: Int64, stop: StopFlag, tick: (Range<Int>, Int64, Range<Int>) -> Void) {
    var loaded = 0
    for m in 0 ..< plan.ticks {
        if stop.isSet { return }
        sleepUntilRealtime(milliseconds: start + Int64(m))
        let target = plan.loadThrough(tick: m)
        tick(plan.dueRange(tick: m), start + plan.leadMs + Int64(m), loaded ..< target)
        loaded = target
    }
}

/// A timer for a caller of the lateness scenario: workload timer `index` (or background timer
/// `index` when `load`).
struct ScheduleItem: Sendable {
    var index: Int
    var deadline: Int64
    var load: Bool
}

/// What a lateness run collected.
struct LatenessSamples: Sendable {
    var fired: [Double] = []
    var received: [Double] = []
    var lastReceiptMicroseconds: Int64 = 0
}

func latenessScenario(_ ctx: Context) async throws -> [Measurement] {
    let n = ctx.timers
    let plan = LatenessPlan(timers: n, loadRate: ctx.loadRate)
    status("lateness: generating \(n) timers")
    // Deadlines are offsets from S; each system adds its own S.
    let workload = Workload(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed) { i, _ in plan.offset(i) }
    defer { withExtendedLifetime(workload) {} }  // memory readings must not see it freed after its last use
    let loadIDs: [TimerID] = (0 ..< plan.loadTotal).map { TimerID(bytes: orderID(prefix: "load-", $0)) }
    let seconds = (plan.leadMs + plan.windowMs) / 1000
    var results: [Measurement] = []

    // Hourglass: callers schedule each timer with a call of its own; consumers acknowledge
    // every delivery.
    do {
        let path = scenarioDirectory(base: ctx.base, name: "lateness")
        defer { removeTree(path) }
        resetPeakResident()
        let engine = try await HourglassEngine.open(ctx.configuration(path))
        let start = realtimeMilliseconds() + 200
        let s = start + plan.leadMs
        let farFuture = s + plan.windowMs + 3_600_000
        let samples = Locked(LatenessSamples())
        let lastReceipt = Maximum()
        let scheduledLate = Counter()
        let failures = Counter()
        let delivered = Counter()
        let latch = Latch()
        let progress = Progress(label: "lateness: hourglass (\(seconds) s)", total: n)
        let consumers = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0 ..< max(1, ctx.callers) {
                    group.addTask {
                        var fired: [Double] = []
                        var received: [Double] = []
                        for await delivery in engine.deliveries {
                            let now = realtimeMicroseconds()
                            let deadline = delivery.deadline.millisecondsSinceEpoch
                            fired.append(Double(delivery.firedAt.millisecondsSinceEpoch - deadline))
                            received.append(Double(now - deadline * 1000) / 1000)
                            lastReceipt.record(Int(now))
                            _ = try? await engine.ack(delivery)
                            let total = delivered.add()
                            if total % 256 == 0 { progress.add(256) }
                            if total == n { latch.open() }
                        }
                        samples.withLock { [fired, received] in
                            $0.fired += fired
                            $0.received += received
                        }
                    }
                }
            }
        }
        // The producer hands each timer to one of `callers` caller tasks in turn; each caller
        // awaits `schedule` for one timer at a time (the public API, as a service's request
        // handlers would call it).
        let callers = max(1, ctx.callers)
        var streams: [AsyncStream<ScheduleItem>] = []
        var inputs: [AsyncStream<ScheduleItem>.Continuation] = []
        for _ in 0 ..< callers {
            let (stream, input) = AsyncStream.makeStream(of: ScheduleItem.self, bufferingPolicy: .unbounded)
            streams.append(stream)
            inputs.append(input)
        }
        let stop = StopFlag()
        let callerTasks = Task {
            await withTaskGroup(of: Void.self) { group in
                for stream in streams {
                    group.addTask {
                        for await item in stream where !stop.isSet {
                            let request = item.load
                                ? TimerRequest(id: loadIDs[item.index], deadline: Deadline(millisecondsSinceEpoch: item.deadline), payload: workload.payloads[item.index % n])
                                : TimerRequest(id: workload.ids[item.index], deadline: Deadline(millisecondsSinceEpoch: item.deadline), payload: workload.payloads[item.index])
                            do {
                                try await engine.schedule(id: request.id, at: request.deadline, payload: request.payload)
                            } catch {
                                failures.add()
                            }
                            if !item.load && realtimeMilliseconds() > item.deadline { scheduledLate.add() }
                        }
                    }
                }
            }
        }
        let producer = BenchThread { [inputs] in
            var next = 0
            runProducer(plan: plan, start: start, stop: stop) { due, deadline, load in
                for i in due {
                    inputs[next % callers].yield(ScheduleItem(index: i, deadline: deadline, load: false))
                    next += 1
                }
                for j in load {
                    inputs[next % callers].yield(ScheduleItem(index: j, deadline: farFuture, load: true))
                    next += 1
                }
            }
            for input in inputs { input.finish() }
        }
        let timedOut = await waitOrTimeout(latch, until: s + plan.windowMs + 120_000)
        if timedOut { stop.set() }
        producer.join()
        await callerTasks.value
        let peak = peakResidentBytes()
        try await engine.close()
        await consumers.value
        progress.finish()
        var collected = samples.value
        collected.lastReceiptMicroseconds = Int64(lastReceipt.current)
        var notes = [plan.description, "\(ctx.callers) callers (one schedule call each per timer, fed in turn by the producer) and \(ctx.callers) consumers acknowledging every delivery; fired-at is the engine's stamp (ms)"]
        if timedOut { notes.append("TIMED OUT: \(delivered.current) of \(n) delivered") }
        if failures.current > 0 { notes.append("\(failures.current) schedules failed") }
        results.append(latenessMeasurement(ctx, system: "hourglass", durability: ctx.durabilityName, s: s, samples: collected,
                                           scheduledLate: scheduledLate.current, peak: peak, notes: notes))
    }
    guard ctx.peers else { return results }

    // The heap: a DelayQueue under a lock, a firing thread that sleeps until the head is due
    // (as Java's DelayQueue.take does), the producer inserting under the lock.
    do {
        resetPeakResident()
        let queue = LockedDelayQueue()
        let start = realtimeMilliseconds() + 200
        let s = start + plan.leadMs
        let farFuture = s + plan.windowMs + 3_600_000
        let scheduledLate = Counter()
        let progress = Progress(label: "lateness: heap (\(seconds) s)", total: n)
        let outcome = Locked(LatenessSamples())
        let giveUp = s + plan.windowMs + 120_000
        let firing = BenchThread {
            var collected = LatenessSamples()
            collected.fired.reserveCapacity(n)
            collected.received.reserveCapacity(n)
            queue.run(until: { collected.fired.count >= n || realtimeMilliseconds() > giveUp }) { item, firedAt in
                let now = realtimeMicroseconds()
                collected.fired.append(Double(firedAt - item.deadline))
                collected.received.append(Double(now - item.deadline * 1000) / 1000)
                collected.lastReceiptMicroseconds = now
                if collected.fired.count % 256 == 0 { progress.add(256) }
            }
            outcome.withLock { [collected] in $0 = collected }
        }
        let stop = StopFlag()
        let producer = BenchThread {
            runProducer(plan: plan, start: start, stop: stop) { due, deadline, load in
                for i in due {
                    queue.schedule(id: ownCopy(workload.ids[i].bytes), deadline: deadline, payload: ownCopy(workload.payloads[i]))
                }
                if !due.isEmpty && realtimeMilliseconds() > deadline { scheduledLate.add(due.count) }
                for j in load {
                    queue.schedule(id: ownCopy(loadIDs[j].bytes), deadline: farFuture, payload: ownCopy(workload.payloads[j % n]))
                }
            }
        }
        firing.join()
        stop.set()
        producer.join()
        progress.finish()
        let collected = outcome.value
        var notes = [plan.description, "a firing thread sleeps until the head is due (condition variable) and pops what is due; inserts under the same lock"]
        if collected.fired.count < n { notes.append("TIMED OUT: \(collected.fired.count) of \(n) fired") }
        results.append(latenessMeasurement(ctx, system: "heap", durability: "memory", s: s, samples: collected,
                                           scheduledLate: scheduledLate.current, peak: peakResidentBytes(), notes: notes))
    }

    // SQLite: the producer's connection inserts each millisecond's rows in one transaction; the
    // poller's connection polls every millisecond (and again at once after a full batch).
    let (lib, unavailable) = ctx.sqlitePeer(scenario: "lateness", timers: n)
    if let unavailable { results.append(unavailable) }
    if let lib {
        let dir = scenarioDirectory(base: ctx.base, name: "lateness-sqlite")
        makeDirectory(dir)
        defer { removeTree(dir) }
        resetPeakResident()
        let writer = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        let poller = try SQLiteTimers(lib: lib, path: dir + "/timers.db", fullSync: ctx.fullSync)
        let limit = ctx.sqliteBatch ?? 1000
        let pollMs: Int64 = 1
        let start = realtimeMilliseconds() + 200
        let s = start + plan.leadMs
        let farFuture = s + plan.windowMs + 3_600_000
        let scheduledLate = Counter()
        let errors = Locked<[String]>([])
        let progress = Progress(label: "lateness: sqlite (\(seconds) s)", total: n)
        let outcome = Locked(LatenessSamples())
        let giveUp = s + plan.windowMs + 120_000
        let stop = StopFlag()
        let pollThread = BenchThread {
            var collected = LatenessSamples()
            collected.fired.reserveCapacity(n)
            collected.received.reserveCapacity(n)
            do throws(SQLiteError) {
                while collected.fired.count < n && realtimeMilliseconds() <= giveUp && !stop.isSet {
                    let now = realtimeMilliseconds()
                    let got = try poller.poll(now: now, limit: limit) { id, due, _ in
                        let at = realtimeMicroseconds()
                        collected.fired.append(Double(now - due))
                        collected.received.append(Double(at - due * 1000) / 1000)
                        collected.lastReceiptMicroseconds = at
                        if collected.fired.count % 256 == 0 { progress.add(256) }
                    }
                    if got < limit { sleepUntilRealtime(milliseconds: now + pollMs) }
                }
            } catch {
                errors.withLock { $0.append("poller: \(error)") }
            }
            outcome.withLock { [collected] in $0 = collected }
        }
        let producer = BenchThread {
            var failure: SQLiteError? = nil
            runProducer(plan: plan, start: start, stop: stop) { due, deadline, load in
                do throws(SQLiteError) {
                    try writer.begin()
                    for i in due { try writer.insert(id: workload.ids[i].bytes, due: deadline, payload: workload.payloads[i]) }
                    for j in load { try writer.insert(id: loadIDs[j].bytes, due: farFuture, payload: workload.payloads[j % n]) }
                    try writer.commit()
                } catch {
                    failure = error
                    stop.set()
                }
                if !due.isEmpty && realtimeMilliseconds() > deadline { scheduledLate.add(due.count) }
            }
            if let failure { errors.withLock { $0.append("producer: \(failure)") } }
        }
        producer.join()
        pollThread.join()
        progress.finish()
        let peak = peakResidentBytes()
        writer.close()
        poller.close()
        let collected = outcome.value
        var notes = [plan.description, "writer connection: one transaction per millisecond's rows; poller connection: every \(pollMs) ms SELECT due LIMIT \(limit), DELETE, COMMIT (fired-at: the poll's clock, ms); synchronous=\(ctx.sqliteSynchronous)"]
        if collected.fired.count < n { notes.append("TIMED OUT or failed: \(collected.fired.count) of \(n) fired") }
        notes += errors.value
        results.append(latenessMeasurement(ctx, system: "sqlite", durability: ctx.durabilityName, s: s, samples: collected,
                                           scheduledLate: scheduledLate.current, peak: peak, notes: notes))
    }
    return results
}

/// Waits for the latch, or until the wall clock passes `milliseconds`; true when it timed out.
func waitOrTimeout(_ latch: Latch, until milliseconds: Int64) async -> Bool {
    let timer = Task {
        while !latch.isOpen && realtimeMilliseconds() < milliseconds {
            try? await Task.sleep(for: .milliseconds(50))
        }
        latch.open()
    }
    await latch.wait()
    timer.cancel()
    return realtimeMilliseconds() >= milliseconds
}

func latenessMeasurement(
    _ ctx: Context, system: String, durability: String, s: Int64, samples: LatenessSamples, scheduledLate: Int, peak: Int, notes: [String]
) -> Measurement {
    let seconds = max(0.001, Double(samples.lastReceiptMicroseconds - s * 1000) / 1e6)
    var m = Measurement(scenario: "lateness", system: system, durability: durability, timers: ctx.timers, payloadBytes: ctx.payloadBytes,
                        seconds: seconds, throughput: Double(samples.fired.count) / seconds)
    m.setLatency(Percentiles(samples.fired))
    if let r = Percentiles(samples.received) {
        m.extra.append(("received_p50_ms", r.p50))
        m.extra.append(("received_p99_ms", r.p99))
        m.extra.append(("received_max_ms", r.max))
    }
    m.extra.append(("scheduled_late", Double(scheduledLate)))
    m.peakResidentBytes = peak
    m.notes = notes
    m.notes.append("throughput: deliveries per second from the first deadline to the last delivery; scheduled_late: timers whose schedule completed after their deadline (the producer fell behind)")
    return m
}

/// The heap peer for the lateness scenario: a DelayQueue under a mutex, with a condition
/// variable that wakes the firing thread when its head is due or a new head arrives.
final class LockedDelayQueue: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue = DelayQueue()

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)  // CLOCK_REALTIME: deadlines are wall-clock times
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func schedule(id: [UInt8], deadline: Int64, payload: [UInt8]) {
        pthread_mutex_lock(mutex)
        let head = queue.nextDeadline
        queue.schedule(id: id, deadline: deadline, payload: payload)
        if head.map({ deadline < $0 }) ?? true { pthread_cond_signal(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// The firing loop: pops what is due (by the wall clock, in ms), hands each to `deliver`
    /// outside the lock with the time it was popped at, sleeps until the next head is due.
    func run(until done: () -> Bool, deliver: (DelayQueue.Item, Int64) -> Void) {
        var due: [DelayQueue.Item] = []
        while !done() {
            pthread_mutex_lock(mutex)
            let now = realtimeMilliseconds()
            due.removeAll(keepingCapacity: true)
            queue.popDue(through: now) { due.append($0) }
            if due.isEmpty {
                // Sleep until the head is due (at most 10 ms, to look at `done`).
                let wake = min(queue.nextDeadline ?? .max, now + 10)
                var ts = timespec(tv_sec: Int(wake / 1000), tv_nsec: Int(wake % 1000) * 1_000_000)
                pthread_cond_timedwait(condition, mutex, &ts)
                pthread_mutex_unlock(mutex)
                continue
            }
            pthread_mutex_unlock(mutex)
            for item in due { deliver(item, now) }
        }
    }
}
