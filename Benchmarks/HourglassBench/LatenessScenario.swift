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

    /// The scenario's plan: 10 s, or N ms when N is under 10 000 (at least 1 s).
    init(timers: Int, loadRate: Int?) {
        self.init(timers: timers, windowMs: timers >= 10_000 ? 10_000 : Int64(max(1000, timers)), loadRate: loadRate)
    }

    /// `timers` due over `windowMs`; the background load defaults to as many schedules per second
    /// as timers fall due per second.
    init(timers: Int, windowMs: Int64, loadRate: Int?) {
        count = timers
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

    /// Timers due per second.
    var dueRate: Int { Int(Int64(count) * 1000 / windowMs) }

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

/// How often a paced caller of the lateness scenario looks at the wall clock for timers whose
/// issue time has come (they are issued a second before their deadline, so a few milliseconds
/// of pacing move no deadline).
let pacingQuantumMs: Int64 = 5

/// The timers of the plan as `callers` paced callers issue them: the producer's round-robin
/// order, each with the wall-clock millisecond at which it is issued.
func pacedAssignments(plan: LatenessPlan, callers: Int, start: Int64, farFuture: Int64) -> [[(issueAt: Int64, item: ScheduleItem)]] {
    var assignments = [[(issueAt: Int64, item: ScheduleItem)]](repeating: [], count: callers)
    var next = 0
    var loaded = 0
    for m in 0 ..< plan.ticks {
        let issueAt = start + Int64(m)
        let deadline = start + plan.leadMs + Int64(m)
        for i in plan.dueRange(tick: m) {
            assignments[next % callers].append((issueAt, ScheduleItem(index: i, deadline: deadline, load: false)))
            next += 1
        }
        let target = plan.loadThrough(tick: m)
        for j in loaded ..< target {
            assignments[next % callers].append((issueAt, ScheduleItem(index: j, deadline: farFuture, load: true)))
            next += 1
        }
        loaded = target
    }
    return assignments
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

/// What one lateness run of one system is given: the plan, its timers and background ids, and
/// how long after the last deadline it may take before it gives up.
struct LatenessRun: Sendable {
    var scenario: String
    var plan: LatenessPlan
    var workload: Workload
    var loadIDs: [TimerID]
    /// Milliseconds after the last deadline before a run gives up on undelivered timers.
    var drainMs: Int64

    init(scenario: String, plan: LatenessPlan, payloadBytes: Int, seed: UInt64, drainMs: Int64) {
        self.scenario = scenario
        self.plan = plan
        // Deadlines are offsets from S; each system adds its own S.
        workload = Workload(count: plan.count, payloadBytes: payloadBytes, seed: seed) { i, _ in plan.offset(i) }
        loadIDs = (0 ..< plan.loadTotal).map { TimerID(bytes: orderID(prefix: "load-", $0)) }
        self.drainMs = drainMs
    }

    var n: Int { plan.count }
    var label: String { "\(scenario) (\((plan.leadMs + plan.windowMs) / 1000) s)" }
}

func latenessScenario(_ ctx: Context) async throws -> [Measurement] {
    let plan = LatenessPlan(timers: ctx.timers, loadRate: ctx.loadRate)
    status("lateness: generating \(ctx.timers) timers")
    let run = LatenessRun(scenario: "lateness", plan: plan, payloadBytes: ctx.payloadBytes, seed: ctx.seed, drainMs: 120_000)
    defer { withExtendedLifetime(run) {} }  // memory readings must not see it freed after its last use
    var results: [Measurement] = []
    results.append(try await latenessHourglass(ctx, run))
    guard ctx.peers else { return results }
    results.append(latenessHeap(ctx, run))
    let (lib, unavailable) = ctx.sqlitePeer(scenario: "lateness", timers: ctx.timers)
    if let unavailable { results.append(unavailable) }
    if let lib { results.append(try latenessSQLite(ctx, run, lib: lib)) }
    return results
}

/// Hourglass: callers schedule each timer with a call of its own; consumers acknowledge every
/// delivery.
func latenessHourglass(_ ctx: Context, _ run: LatenessRun) async throws -> Measurement {
    let plan = run.plan
    let n = run.n
    let workload = run.workload
    let loadIDs = run.loadIDs
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
        let progress = Progress(label: "\(run.label): hourglass", total: n)
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
        // Each caller task schedules its share of the timers (every `callers`-th, in the order a
        // producer would hand them out) with one `schedule` call per timer, each once its issue
        // time has come, as a service's request handlers would: it wakes every
        // `pacingQuantumMs`, issues what has come due since, and sleeps again. Nothing hops
        // between the clock that paces the load and the call that schedules a timer.
        let callers = max(1, ctx.callers)
        let assignments = pacedAssignments(plan: plan, callers: callers, start: start, farFuture: farFuture)
        let stop = StopFlag()
        let startMark = Mark.now()
        let callerTasks = Task {
            await withTaskGroup(of: Void.self) { group in
                for mine in assignments {
                    group.addTask {
                        var k = 0
                        while k < mine.count && !stop.isSet {
                            let now = realtimeMilliseconds()
                            if mine[k].issueAt > now {
                                let wait = min(mine[k].issueAt - now, pacingQuantumMs)
                                try? await Task.sleep(for: .milliseconds(wait))
                                continue
                            }
                            while k < mine.count && mine[k].issueAt <= now && !stop.isSet {
                                let item = mine[k].item
                                k += 1
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
        }
        let timedOut = await waitOrTimeout(latch, until: s + plan.windowMs + run.drainMs)
        let endMark = Mark.now()
        if timedOut { stop.set() }
        await callerTasks.value
        let peak = peakResidentBytes()
        try await engine.close()
        await consumers.value
        progress.finish()
        var collected = samples.value
        collected.lastReceiptMicroseconds = Int64(lastReceipt.current)
        var notes = [plan.description, "\(ctx.callers) callers (one schedule call each per timer, each pacing its own share on the wall clock every \(pacingQuantumMs) ms) and \(ctx.callers) consumers acknowledging every delivery; fired-at is the engine's stamp (ms)"]
        if timedOut { notes.append("TIMED OUT: \(delivered.current) of \(n) delivered \(run.drainMs) ms after the last deadline") }
        if failures.current > 0 { notes.append("\(failures.current) schedules failed") }
        var m = latenessMeasurement(ctx, run, system: "hourglass", durability: ctx.durabilityName, s: s, samples: collected,
                                    scheduledLate: scheduledLate.current, peak: peak, notes: notes)
        m.setCPU(from: startMark, to: endMark)
        m.callers = ctx.callers
        return m
    }
}

/// The heap: a DelayQueue under a lock, a firing thread that sleeps until the head is due (as
/// Java's DelayQueue.take does), the producer inserting under the lock.
func latenessHeap(_ ctx: Context, _ run: LatenessRun) -> Measurement {
    let plan = run.plan
    let n = run.n
    let workload = run.workload
    let loadIDs = run.loadIDs
    do {
        resetPeakResident()
        let queue = LockedDelayQueue()
        let start = realtimeMilliseconds() + 200
        let s = start + plan.leadMs
        let farFuture = s + plan.windowMs + 3_600_000
        let scheduledLate = Counter()
        let progress = Progress(label: "\(run.label): heap", total: n)
        let outcome = Locked(LatenessSamples())
        let giveUp = s + plan.windowMs + run.drainMs
        let stop = StopFlag()
        let startMark = Mark.now()
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
            stop.set()  // done, or given up: the producer need not go on
        }
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
        producer.join()
        let endMark = Mark.now()
        progress.finish()
        let collected = outcome.value
        var notes = [plan.description, "a firing thread sleeps until the head is due (condition variable) and pops what is due; inserts under the same lock"]
        if collected.fired.count < n { notes.append("TIMED OUT: \(collected.fired.count) of \(n) fired \(run.drainMs) ms after the last deadline") }
        var m = latenessMeasurement(ctx, run, system: "heap", durability: "memory", s: s, samples: collected,
                                    scheduledLate: scheduledLate.current, peak: peakResidentBytes(), notes: notes)
        m.setCPU(from: startMark, to: endMark)
        return m
    }
}

/// SQLite: the producer's connection inserts each millisecond's rows in one transaction; the
/// poller's connection polls every millisecond (and again at once after a full batch).
func latenessSQLite(_ ctx: Context, _ run: LatenessRun, lib: SQLiteLibrary) throws -> Measurement {
    let plan = run.plan
    let n = run.n
    let workload = run.workload
    let loadIDs = run.loadIDs
    do {
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
        let progress = Progress(label: "\(run.label): sqlite", total: n)
        let outcome = Locked(LatenessSamples())
        let giveUp = s + plan.windowMs + run.drainMs
        let stop = StopFlag()
        let startMark = Mark.now()
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
            if collected.fired.count < n { stop.set() }  // given up: the writer need not go on
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
        let endMark = Mark.now()
        progress.finish()
        let peak = peakResidentBytes()
        writer.close()
        poller.close()
        let collected = outcome.value
        var notes = [plan.description, "writer connection: one transaction per millisecond's rows; poller connection: every \(pollMs) ms SELECT due LIMIT \(limit), DELETE, COMMIT (fired-at: the poll's clock, ms); synchronous=\(ctx.sqliteSynchronous)"]
        if collected.fired.count < n { notes.append("TIMED OUT or failed: \(collected.fired.count) of \(n) fired \(run.drainMs) ms after the last deadline") }
        notes += errors.value
        var m = latenessMeasurement(ctx, run, system: "sqlite", durability: ctx.durabilityName, s: s, samples: collected,
                                    scheduledLate: scheduledLate.current, peak: peak, notes: notes)
        m.setCPU(from: startMark, to: endMark)
        return m
    }
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

/// The row of a lateness run. Timers not delivered when the run gave up count as `drainMs`
/// late (a lower bound: they were due at the latest at the end of the window), so that a run
/// that could not keep up cannot report a good p99 from the timers it did deliver.
func latenessMeasurement(
    _ ctx: Context, _ run: LatenessRun, system: String, durability: String, s: Int64, samples: LatenessSamples, scheduledLate: Int, peak: Int, notes: [String]
) -> Measurement {
    let delivered = samples.fired.count
    let seconds = max(0.001, Double(samples.lastReceiptMicroseconds - s * 1000) / 1e6)
    var m = Measurement(scenario: run.scenario, system: system, durability: durability, timers: run.n, payloadBytes: ctx.payloadBytes,
                        seconds: seconds, throughput: Double(delivered) / seconds)
    var fired = samples.fired
    var received = samples.received
    let undelivered = max(0, run.n - delivered)
    if undelivered > 0 {
        fired += repeatElement(Double(run.drainMs), count: undelivered)
        received += repeatElement(Double(run.drainMs), count: undelivered)
    }
    m.setLatency(Percentiles(fired))
    m.extra.append(("undelivered", Double(undelivered)))
    if let r = Percentiles(received) {
        m.extra.append(("received_p50_ms", r.p50))
        m.extra.append(("received_p99_ms", r.p99))
        m.extra.append(("received_max_ms", r.max))
    }
    m.extra.append(("scheduled_late", Double(scheduledLate)))
    m.peakResidentBytes = peak
    m.notes = notes
    m.notes.append("throughput: deliveries per second from the first deadline to the last delivery; scheduled_late: timers whose schedule completed after their deadline (the producer fell behind)")
    m.notes.append("CPU: the whole process from the producer's start to the last delivery, per timer due (its schedule, firing and acknowledgement, and the background load's \(run.plan.loadTotal) schedules)")
    if undelivered > 0 { m.notes.append("\(undelivered) timers undelivered when the run gave up, counted in the percentiles as \(run.drainMs) ms late (a lower bound)") }
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
