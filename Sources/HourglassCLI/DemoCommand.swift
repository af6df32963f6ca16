import ArgumentParser
import Hourglass

/// The order-timeout story in compressed time: orders are created with a 30-minute payment
/// timeout, most are paid (their timers cancelled), the rest are closed when their timer fires.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the order-timeout story in compressed time and print what happened.")

    @Option(help: "Orders to create.")
    var orders: Int = 10_000

    @Option(help: "Share of orders paid before their timeout (0 ... 1).")
    var paidShare: Double = 0.7

    @Option(help: "Seed of the story's random choices.")
    var seed: UInt64 = 42

    func validate() throws {
        guard orders >= 1 && orders <= 10_000_000 else { throw ValidationError("--orders must be 1 ... 10000000") }
        guard paidShare >= 0 && paidShare <= 1 else { throw ValidationError("--paid-share must be between 0 and 1") }
    }

    func run() async throws {
        let start: Int64 = 1_763_791_200_000  // 2025-11-22T06:00:00Z, simulated
        let clock = ManualClock(now: start)
        let engine = try await HourglassEngine.open(.memory, clock: clock)
        let timeout: Int64 = 30 * 60 * 1000
        var random = SplitMix(seed: seed)

        // The story: orders arrive over 10 minutes; a paid order is paid within its 30 minutes.
        enum Event { case create(Int), pay(Int) }
        var events: [(time: Int64, event: Event)] = []
        var paid = 0
        for order in 0 ..< orders {
            let created = start + Int64(random.next() % 600_000)
            events.append((created, .create(order)))
            if Double(random.next() % 1_000_000) / 1_000_000 < paidShare {
                events.append((created + 1 + Int64(random.next() % UInt64(timeout - 1)), .pay(order)))
                paid += 1
            }
        }
        events.sort { $0.time < $1.time }

        print("Hourglass demo: \(orders) orders, each closed 30 minutes after creation unless paid first.")
        var cancelled = 0
        var closed: [Delivery] = []
        var index = 0
        while true {
            // Jump the clock to whichever comes first: the next story event or the next timer.
            let nextTimer = await engine.stats().nextDeadline?.millisecondsSinceEpoch
            let nextEvent = index < events.count ? events[index].time : nil
            guard let next = [nextTimer, nextEvent].compactMap({ $0 }).min() else { break }
            if next > clock.now() { clock.set(to: next) }
            while index < events.count && events[index].time <= clock.now() {
                switch events[index].event {
                case let .create(order):
                    try await engine.schedule(id: TimerID("order-\(order)"), after: .milliseconds(timeout), payload: Array("{\"order\":\(order)}".utf8))
                case let .pay(order):
                    if try await engine.cancel(id: TimerID("order-\(order)")) { cancelled += 1 }
                }
                index += 1
            }
            _ = await engine.stats()
            var iterator = engine.deliveries.makeAsyncIterator()
            for _ in 0 ..< engine.deliveries.buffered {
                guard let delivery = await iterator.next() else { break }
                if closed.count < 3 {
                    print("  closed \(delivery.id) at +\((delivery.firedAt.millisecondsSinceEpoch - start) / 1000) s, \(delivery.latenessMilliseconds) ms after its deadline")
                }
                closed.append(delivery)
                _ = try await engine.ack(delivery)
            }
        }
        let stats = await engine.stats()
        try await engine.close()
        let lateness = closed.map(\.latenessMilliseconds).sorted()
        func percentile(_ p: Double) -> Int64 { lateness.isEmpty ? 0 : lateness[min(lateness.count - 1, Int(Double(lateness.count) * p))] }
        print("""
            created:           \(orders)
            paid (cancelled):  \(cancelled)
            closed by timeout: \(closed.count)
            still pending:     \(stats.pending), in flight: \(stats.inFlight)
            lateness (ms):     p50 \(percentile(0.5)), p99 \(percentile(0.99)), max \(lateness.last ?? 0)
            """)
        guard cancelled + closed.count == orders, stats.pending == 0, stats.inFlight == 0 else {
            throw ValidationError("the story does not add up: every order must be paid or closed exactly once")
        }
    }
}

/// SplitMix64, for a repeatable story.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
