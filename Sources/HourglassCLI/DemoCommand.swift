import ArgumentParser
import Hourglass
import HourglassCore
import HourglassStorage
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The order-timeout story, in compressed time, on a real directory with the real clock:
/// orders are created with a payment timeout, most are paid first (their timers cancelled),
/// the engine is closed and reopened halfway, and the rest fire and close their orders.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the order-timeout story in compressed time and print what happened.",
        discussion: """
            "30 minutes" pass in --timeout-ms milliseconds. Orders arrive over the first half of \
            that, most are paid before their timeout; halfway the engine is closed and reopened on \
            the same directory (a temporary one, removed at the end). Lateness is the real \
            difference between a timer's deadline and its delivery, in milliseconds.
            """)

    @Option(help: "Orders to create.")
    var orders: Int = 10_000

    @Option(help: "Share of orders paid before their timeout (0 ... 1).")
    var paidShare: Double = 0.7

    @Option(help: "The payment timeout, in real milliseconds (the story's \"30 minutes\").")
    var timeoutMs: Int = 3000

    @Option(help: "Seed of the story's random choices.")
    var seed: UInt64 = 42

    func validate() throws {
        guard orders >= 1 && orders <= 5_000_000 else { throw ValidationError("--orders must be 1 ... 5000000") }
        guard paidShare >= 0 && paidShare <= 1 else { throw ValidationError("--paid-share must be between 0 and 1") }
        guard timeoutMs >= 200 && timeoutMs <= 600_000 else { throw ValidationError("--timeout-ms must be 200 ... 600000") }
    }

    /// What happens to an order, and when (milliseconds from the start).
    enum StoryEvent { case create(Int), pay(Int) }

    func run() async throws {
        var template = Array("/tmp/hourglass-demo-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw ValidationError("cannot create a temporary directory under /tmp")
        }
        let directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { _ = removeTree(directory) }
        let events = story()
        let reopenAt = Int64(timeoutMs) * 3 / 4
        print("""
            Hourglass demo: \(orders) orders, each closed \(timeoutMs) ms ("30 minutes") after it is created unless paid first.
            Directory: \(directory)  (closed and reopened at \(reopenAt) ms)
            """)
        let results = DemoResults()
        var configuration = Configuration.directory(directory, durability: .interval(.milliseconds(10)))
        configuration.maxInFlight = 100_000
        let cancelled = try await play(events, configuration: configuration, reopenAt: reopenAt, results: results)
        try summarize(results, cancelled: cancelled)
    }

    /// The story: arrivals over the first half of the timeout; payments within the timeout.
    func story() -> [(at: Int64, event: StoryEvent)] {
        var random = SplitMix64(seed: seed)
        let timeout = Int64(timeoutMs)
        var events: [(at: Int64, event: StoryEvent)] = []
        for order in 0 ..< orders {
            let created = Int64(random.next() % UInt64(timeout / 2))
            events.append((created, .create(order)))
            if Double(random.next() % 1_000_000) / 1_000_000 < paidShare {
                events.append((created + 1 + Int64(random.next() % UInt64(timeout - timeout / 10)), .pay(order)))
            }
        }
        events.sort { $0.at < $1.at }
        return events
    }

    /// Plays the story on the wall clock against an engine, closing and reopening it at
    /// `reopenAt`, then waits until every timer has fired. Returns the payments that cancelled
    /// a timer.
    func play(_ events: [(at: Int64, event: StoryEvent)], configuration: Configuration, reopenAt: Int64, results: DemoResults) async throws -> Int {
        let timeout = Int64(timeoutMs)
        var engine = try await HourglassEngine.open(configuration)
        var consumer = startConsumer(engine, results)
        let start = SystemClock().now()
        let progress = ProgressBar(total: events.count)
        var index = 0
        var reopened = false
        var cancelled = 0
        func reopen() async throws {
            try await engine.close()
            await consumer.value
            engine = try await HourglassEngine.open(configuration)
            consumer = startConsumer(engine, results)
            reopened = true
        }
        while index < events.count {
            let elapsed = SystemClock().now() - start
            if !reopened && elapsed >= reopenAt {
                try await reopen()
                results.note("  reopened at +\(SystemClock().now() - start) ms: \(engine.recoveryReport.records) log records replayed")
            }
            // Everything due by now, as one batch of schedules and a run of cancels.
            var batch: [TimerRequest] = []
            var payments: [TimerID] = []
            while index < events.count && events[index].at <= elapsed {
                switch events[index].event {
                case let .create(order):
                    batch.append(TimerRequest(
                        id: TimerID("order-\(order)"), deadline: Deadline(millisecondsSinceEpoch: start + events[index].at + timeout),
                        payload: Array("{\"order\":\(order),\"action\":\"close-unpaid\"}".utf8)))
                case let .pay(order):
                    payments.append(TimerID("order-\(order)"))
                }
                index += 1
            }
            if !batch.isEmpty { try await engine.schedule(batch) }
            for id in payments where try await engine.cancel(id: id) { cancelled += 1 }
            progress.update(index)
            if index < events.count {
                let wait = max(0, min(events[index].at, reopenAt > elapsed && !reopened ? reopenAt : .max) - (SystemClock().now() - start))
                if wait > 0 { try await Task.sleep(for: .milliseconds(min(wait, 20))) }
            }
        }
        if !reopened { try await reopen() }
        // Wait for the rest to fire.
        while true {
            let stats = await engine.stats()
            if stats.pending == 0 && stats.inFlight == 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        progress.finish()
        try await engine.close()
        await consumer.value
        return cancelled
    }

    /// Prints what happened, and checks that every order was either paid or closed.
    func summarize(_ results: DemoResults, cancelled: Int) throws {
        let (closed, lateness, notes) = results.snapshot()
        for note in notes { print(note) }
        let sorted = lateness.sorted()
        func percentile(_ p: Double) -> Int64 { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        print("""
            created:           \(orders)
            paid (cancelled):  \(cancelled)
            closed by timeout: \(closed)
            lateness (ms):     p50 \(percentile(0.5)), p99 \(percentile(0.99)), max \(sorted.last ?? 0)
            """)
        guard cancelled + closed == orders else {
            throw ValidationError("the story does not add up: \(cancelled) paid + \(closed) closed != \(orders) orders")
        }
    }

    private func startConsumer(_ engine: HourglassEngine, _ results: DemoResults) -> Task<Void, Never> {
        Task {
            for await delivery in engine.deliveries {
                if (try? await engine.ack(delivery)) == true {
                    results.closed(delivery)
                }
            }
        }
    }
}

/// What the demo's consumer saw.
final class DemoResults: Sendable {
    private struct State {
        var closed = 0
        var lateness: [Int64] = []
        var notes: [String] = []
    }

    private let state = Mutex(State())

    func closed(_ delivery: Delivery) {
        state.withLock { state in
            state.closed += 1
            state.lateness.append(delivery.latenessMilliseconds)
            if state.closed <= 3 {
                state.notes.append("  closed \(delivery.id) (unpaid), \(delivery.latenessMilliseconds) ms after its deadline")
            }
        }
    }

    func note(_ text: String) { state.withLock { $0.notes.append(text) } }

    func snapshot() -> (Int, [Int64], [String]) { state.withLock { ($0.closed, $0.lateness, $0.notes) } }
}

/// The demo's progress: events applied so far, on the progress line.
final class ProgressBar: Sendable {
    private let total: Int
    private let line = ProgressLine("demo")

    init(total: Int) { self.total = max(total, 1) }

    func update(_ done: Int) { line.show(fraction: Double(done) / Double(total), "of events") }

    func finish() { line.finish() }
}

