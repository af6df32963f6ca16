import HourglassCore
import HourglassTestSupport
import Testing

/// Seeded random operations against the wheel and a sorted-array model, compared after every
/// advance: the same timers fire, in the same order, at the same advance. Replay a failure with
/// `HOURGLASS_SEED=<seed> swift test --filter TimerWheelModel`.
@Suite("Timing wheel against a reference model")
struct TimerWheelModelTests {
    static let years100: Int64 = 3_155_760_000_000

    @Test("100k random operations, 1 ms tick")
    func randomOperations() {
        run(seed: SeededRandom.testSeed(), operations: 100_000, tick: 1)
    }

    @Test("20k random operations, 7 ms tick")
    func randomOperationsCoarseTick() {
        run(seed: SeededRandom.testSeed(), operations: 20_000, tick: 7)
    }

    func run(seed: UInt64, operations: Int, tick: Int64) {
        var random = SeededRandom(seed: seed)
        var now: Int64 = 1_763_791_200_000 + Int64(random.next() % 1_000_000)
        var wheel = TimerWheel(tickMilliseconds: tick, now: now, hashSeed: random.next())
        var model = ReferenceWheel(tickMilliseconds: tick)
        var knownIDs: [[UInt8]] = []
        var fired: [TimerHandle] = []
        var failures = 0

        func randomDelay(_ random: inout SeededRandom) -> Int64 {
            switch random.next() % 16 {
            case 0: return 0
            case 1: return -Int64(random.next() % 100_000)  // in the past
            case 2, 3, 4: return Int64(random.next() % 200)
            case 5, 6: return Int64(random.next() % 100_000)
            case 7: return Int64(random.next() % 86_400_000)
            case 8: return Int64(random.next() % UInt64(Self.years100))
            case 9, 10:  // exactly at, or next to, a 64^k boundary of absolute time
                let k = Int(random.next() % 7) + 1
                let size = Int64(1) << min(6 * k, 50)
                let boundary = (now / size + Int64(random.next() % 3)) * size
                return boundary - now + Int64(random.next() % 3) - 1
            case 11: return Int64(1) << (6 * Int(random.next() % 7)) + Int64(random.next() % 3) - 1
            default: return Int64(random.next() % 5_000)
            }
        }

        for step in 0 ..< operations {
            let choice = random.next() % 100
            if choice < 40 || knownIDs.isEmpty {
                // Schedule a new id.
                let id: [UInt8]
                if random.next() % 50 == 0 {
                    id = Array(repeating: UInt8(truncatingIfNeeded: random.next()), count: Int(random.next() % 600) + 1) + Array("\(step)".utf8)
                } else {
                    id = Array("t\(step)".utf8)
                }
                var deadline = min(max(now + randomDelay(&random), 0), TimerWheel.maxDeadline)
                if random.next() % 8 == 0, !model.timers.isEmpty {
                    // The deadline of a timer already waiting: ties must fire in schedule order.
                    deadline = model.timers[Int(random.next() % UInt64(model.timers.count))].deadline
                }
                let payloadSize = random.next() % 20 == 0 ? Int(random.next() % 5000) : Int(random.next() % 40)
                let payload = (0 ..< payloadSize).map { UInt8(truncatingIfNeeded: $0 ^ step) }
                _ = try! wheel.schedule(id: id, deadline: deadline, payload: payload)
                model.schedule(id: id, deadline: deadline, payload: payload)
                knownIDs.append(id)
            } else if choice < 55 {
                // Re-schedule a known id (pending or not).
                let id = knownIDs[Int(random.next() % UInt64(knownIDs.count))]
                let deadline = min(max(now + randomDelay(&random), 0), TimerWheel.maxDeadline)
                let payload = Array(repeating: UInt8(step & 0xff), count: Int(random.next() % 100))
                let result = try! wheel.schedule(id: id, deadline: deadline, payload: payload)
                let replaced = model.schedule(id: id, deadline: deadline, payload: payload)
                if result.replaced != replaced { failures += 1 }
            } else if choice < 75 {
                // Cancel a known id, or one never seen.
                let id = random.next() % 10 == 0 ? Array("missing-\(step)".utf8) : knownIDs[Int(random.next() % UInt64(knownIDs.count))]
                let a = wheel.cancel(id: id)
                let b = model.remove(id: id)
                if a != b {
                    Issue.record("seed \(seed) step \(step): cancel returned \(a), model \(b)")
                    return
                }
            } else {
                // Advance the clock: mostly forward by small steps, sometimes far, sometimes back.
                let r = random.next() % 20
                if r == 0 {
                    now -= Int64(random.next() % 10_000)
                } else if r == 1 {
                    now += Int64(random.next() % UInt64(Self.years100))
                } else if r == 2, let next = model.nextDeadline {
                    now = max(now, next)  // land exactly on a deadline
                } else if r == 3, let next = model.nextDeadline {
                    now = max(now, next - 1)  // one millisecond before it
                } else if r == 4 || r == 5 {
                    // Just before, or at, the start of a slot of some level.
                    let size = Int64(1) << (6 * (Int(random.next() % 6) + 1))
                    now = (now / size + 1) * size - Int64(r == 4 ? 1 : 0)
                } else {
                    now += Int64(random.next() % 3_000)
                }
                now = min(max(now, 0), TimerWheel.maxDeadline)
                let limit = random.next() % 8 == 0 ? Int(random.next() % 5) + 1 : Int.max
                fired.removeAll(keepingCapacity: true)
                _ = wheel.advance(to: now, limit: limit, into: &fired)
                let expected = model.advance(to: now, limit: limit)
                var got: [ReferenceWheel.Timer] = []
                for handle in fired {
                    let deadline = wheel.deadline(of: handle)
                    if deadline > now && wheel.tick(forDeadlineMs: deadline) > now / tick {
                        Issue.record("seed \(seed) step \(step): fired \(deadline) early at \(now)")
                        return
                    }
                    got.append(.init(id: wheel.id(of: handle), deadline: deadline, payload: wheel.payload(of: handle), sequence: 0))
                    wheel.remove(handle)
                }
                let expectedStripped = expected.map { ReferenceWheel.Timer(id: $0.id, deadline: $0.deadline, payload: $0.payload, sequence: 0) }
                if got != expectedStripped {
                    Issue.record("""
                        seed \(seed) step \(step): advance to \(now) (limit \(limit)) fired \
                        \(got.prefix(8)) but the model fired \(expectedStripped.prefix(8))
                        """)
                    return
                }
            }
            if wheel.count != model.count {
                Issue.record("seed \(seed) step \(step): wheel holds \(wheel.count), model \(model.count)")
                return
            }
            if step % 5_000 == 0 { wheel._checkAllInvariants() }
            if knownIDs.count > 3_000 { knownIDs.removeFirst(1_000) }
        }
        #expect(failures == 0, "seed \(seed): replace flags disagreed \(failures) times")
        wheel._checkAllInvariants()
        // Drain everything at the end of time: the rest must fire in model order.
        fired.removeAll()
        _ = wheel.advance(to: TimerWheel.maxDeadline, into: &fired)
        let rest = model.advance(to: TimerWheel.maxDeadline)
        var drained: [[UInt8]] = []
        for handle in fired { drained.append(wheel.id(of: handle)) }
        #expect(drained == rest.map(\.id), "seed \(seed): final drain differs")
    }
}
