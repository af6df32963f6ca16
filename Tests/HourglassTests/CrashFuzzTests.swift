import Hourglass
import HourglassCore
import HourglassTestSupport
import Synchronization
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

// Seeded random workloads through the public API, against a model, on a simulated file system
// that dies at a random operation (process crash, power loss, torn write, EIO, ENOSPC, full
// disk), sometimes with a bit flipped in a closed file afterwards. The restarted engine must
// recover every acknowledged change, keep every durable cancel and ack, fire nothing early, and
// redeliver what was in flight; damage must be reported, never accepted silently.
//
// Replay a failure with the seed it prints: `HOURGLASS_SEED=<seed> HOURGLASS_FUZZ_ITERATIONS=1
// swift test --filter CrashFuzzTests`. Soak: `HOURGLASS_FUZZ_ITERATIONS=1000000`.
// See Docs/TESTING.md.

// MARK: - Settings

enum Fuzz {
    static let directory = "/sim/hourglass"
    static let start: Int64 = 1_763_791_200_000
    static let redeliveryMilliseconds: Int64 = 20_000
    static let defaultIterations = 10_000
    /// Iterations run at once (the engines have threads of their own; two keep both cores busy).
    static let workers = getEnvironment("HOURGLASS_FUZZ_WORKERS").flatMap { Int($0) } ?? 2

    /// HOURGLASS_FUZZ_TRACE=1 prints every step as it happens (to see where a replay hangs).
    static let trace = getEnvironment("HOURGLASS_FUZZ_TRACE") == "1"
    /// The run stops after this many failing iterations (HOURGLASS_FUZZ_MAX_FAILURES).
    static let maxFailures = getEnvironment("HOURGLASS_FUZZ_MAX_FAILURES").flatMap { Int($0) } ?? 3
    /// An iteration running longer than this hangs: the watchdog names it and stops the process.
    static let hangSeconds = getEnvironment("HOURGLASS_FUZZ_HANG_SECONDS").flatMap { Double($0) } ?? 120

    static var iterations: Int {
        getEnvironment("HOURGLASS_FUZZ_ITERATIONS").flatMap { Int($0) } ?? defaultIterations
    }

    /// HOURGLASS_FUZZ_SAME_SEED=1 runs every iteration with the seed itself: the workload is the
    /// same each time, but the background threads (segment preparation, checkpoint writing)
    /// interleave differently, so a failure that depends on their timing shows up in some runs.
    static let sameSeed = getEnvironment("HOURGLASS_FUZZ_SAME_SEED") == "1"

    /// Iteration 0 uses the run's seed itself, so a failing iteration's seed replays it alone.
    static func seed(_ master: UInt64, _ index: Int) -> UInt64 {
        if index == 0 || sameSeed { return master }
        var mixer = SeededRandom(seed: master ^ (UInt64(index) &* 0xD1B5_4A32_D192_ED03))
        return mixer.next()
    }
}

/// A payload: a slice of a fixed pool of random bytes (random bytes do not compress, so large
/// payloads fill 1 MiB segments in a few schedules).
struct PayloadKey: Hashable, CustomStringConvertible {
    var offset: Int
    var count: Int
    var bytes: [UInt8] { Array(payloadPool[offset ..< offset + count]) }
    var description: String { "p\(offset)+\(count)" }
}

let payloadPool: [UInt8] = {
    var random = SeededRandom(seed: 0x9E37_79B9)
    var bytes = [UInt8](repeating: 0, count: 1 << 20)
    bytes.withUnsafeMutableBytes { raw in
        for i in stride(from: 0, to: raw.count, by: 8) { raw.storeBytes(of: random.next(), toByteOffset: i, as: UInt64.self) }
    }
    return bytes
}()

extension SeededRandom {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    mutating func chance(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1_000_000 < p }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

// MARK: - The model

/// A timer as the model holds it.
struct ModelTimer: Hashable, CustomStringConvertible {
    var deadline: Int64
    var payload: PayloadKey
    /// The attempt its next first delivery carries (pending), or the last one delivered (in flight).
    var attempt: Int
    var inFlight: Bool
    /// In flight: when it is delivered again (`Int64.min`: at once, after a restart).
    var redeliverAt: Int64 = 0
    /// Which schedule of the id this is (a delivery of an earlier one cannot be acknowledged).
    var incarnation: Int = 0
    /// A recurring timer (`.every(period)`): 0 for a one-shot timer.
    var period: Int64 = 0
    /// The occurrences left, this one included (0: without end).
    var remaining: Int = 0
    /// The scheduled time of the current occurrence (equal to `deadline` until it is retried).
    var occurrence: Int64 = 0
    /// How many occurrences the current one stands for (misfires folded into it).
    var coalesced: Int = 1
    /// Its misfire policy folds missed occurrences (`.fireOnceNow`), or delivers each (`.fireAll`).
    var foldsMisfires = true

    var isSeries: Bool { period > 0 }

    /// The occurrence is done (acknowledged, or out of attempts): a one-shot timer is removed; a
    /// series is armed at the next occurrence, one period after this one's scheduled time (even
    /// if that has passed), with a fresh attempt, or ends after its last.
    var movedOn: ModelTimer? {
        guard isSeries, remaining != 1 else { return nil }
        var next = self
        next.occurrence += period
        next.deadline = next.occurrence
        next.attempt = 1
        next.inFlight = false
        next.redeliverAt = 0
        next.coalesced = 1
        if remaining > 1 { next.remaining -= 1 }
        return next
    }

    /// The state as delivered for the first time at `firedAt`, under a misfire threshold: a
    /// `.fireOnceNow` occurrence more than the threshold late stands for every occurrence due
    /// through `firedAt` (at most the remaining ones), and names the latest of them.
    func folded(at firedAt: Int64, threshold: Int64) -> ModelTimer {
        guard isSeries, foldsMisfires, !inFlight, attempt == 1, occurrence <= firedAt, firedAt - occurrence > threshold else { return self }
        var count = Int((firedAt - occurrence) / period) + 1
        if remaining > 0 { count = min(count, remaining) }
        guard count > 1 else { return self }
        var copy = self
        copy.occurrence += Int64(count - 1) * period
        copy.deadline = copy.occurrence
        copy.coalesced += count - 1
        if remaining > 0 { copy.remaining -= count - 1 }
        return copy
    }

    /// Whether `delivery` carries this state's deadline, attempt, payload and occurrence.
    func matches(_ delivery: Delivery) -> Bool {
        deadline == delivery.deadline.millisecondsSinceEpoch && attempt == delivery.attempt && payload.bytes == delivery.payload
            && delivery.occurrence?.millisecondsSinceEpoch == (isSeries ? occurrence : nil) && delivery.coalesced == (isSeries ? coalesced : 1)
    }

    /// The state as a restart sees it.
    var restarted: ModelTimer {
        var copy = self
        copy.redeliverAt = inFlight ? .min : 0
        copy.incarnation = 0
        return copy
    }

    var description: String {
        var text = (inFlight ? "in flight" : "pending") + " due \(deadline - Fuzz.start) attempt \(attempt) \(payload)"
        if isSeries {
            text += " series every \(period) ms\(remaining > 0 ? ", \(remaining) left" : "")\(foldsMisfires ? "" : ", fireAll"): occurrence \(occurrence - Fuzz.start)"
            if coalesced > 1 { text += " coalescing \(coalesced)" }
        }
        return text
    }
}

/// What the engine holds if every change so far took effect, and for every id changed since the
/// last point known durable, the states it went through: after a crash the id may be in any of
/// them (the log recovers a prefix of what was written).
struct Model {
    var current: [String: ModelTimer] = [:]
    var history: [String: [ModelTimer?]] = [:]
    var incarnations = 0
    /// Every deadline and payload an id ever had (for salvage, which may bring back any of them).
    var ever: [String: Set<ModelTimer>] = [:]

    mutating func nextIncarnation() -> Int {
        incarnations += 1
        return incarnations
    }

    /// A change whose record is durable: it and everything written before it survive a crash.
    mutating func durable(_ id: String, _ state: ModelTimer?) {
        current[id] = state
        history.removeAll()
        if let state { ever[id, default: []].insert(state.restarted) }
    }

    /// A change whose record may or may not survive a crash.
    mutating func maybe(_ id: String, _ state: ModelTimer?) {
        if history[id] == nil { history[id] = [current[id]] }
        current[id] = state
        history[id]!.append(state)
        if let state { ever[id, default: []].insert(state.restarted) }
    }

    /// Everything so far is durable (a clean close).
    mutating func allDurable() { history.removeAll() }

    var ids: Set<String> { Set(current.keys).union(history.keys) }

    /// The states a restart may find `id` in (nil: not held).
    func possible(_ id: String) -> Set<ModelTimer?> {
        let states: [ModelTimer?] = history[id] ?? [current[id]]
        return Set(states.map { $0?.restarted })
    }
}

/// A delivery the consumer holds, to acknowledge or retry later (maybe too late).
struct Held {
    var delivery: Delivery
    var epoch: Int
    var incarnation: Int
}

// MARK: - Scenarios

enum CrashKind: String, CaseIterable { case processCrash = "process crash", powerLoss = "power loss", tornWrite = "torn write" }

enum Death: CustomStringConvertible {
    /// The file system crashes at this operation.
    case crash(at: Int, CrashKind)
    /// One write or sync at or after this operation fails; then the engine is closed and the
    /// directory reopened (after a power loss, or not).
    case failure(at: Int, SimulatedFileSystem.Failure, powerLoss: Bool)
    /// Files may take only this many bytes.
    case diskFull(budget: Int, powerLoss: Bool)

    var description: String {
        switch self {
        case let .crash(at, kind): return "\(kind.rawValue) at operation \(at)"
        case let .failure(at, failure, powerLoss): return "\(failure == .io ? "EIO" : "ENOSPC") at operation \(at), then \(powerLoss ? "power loss" : "reopen")"
        case let .diskFull(budget, powerLoss): return "disk full at \(budget) bytes, then \(powerLoss ? "power loss" : "reopen")"
        }
    }
}

enum Damage: String { case none, bitFlip = "bit flip", bitFlipSalvage = "bit flip, opened with salvage" }

/// A bit flipped in a file of the crash image.
struct Flip: CustomStringConvertible {
    var name: String
    var path: String
    var isCheckpoint: Bool
    var bit: Int
    var description: String { "bit \(bit % 8) of byte \(bit / 8) of \(name)" }
}

/// What one iteration did, for the run's summary.
struct IterationSummary: Sendable {
    var seed: UInt64
    var crashedDuringWorkload = false
    var crashOperation = ""
    var problems: [String] = []
    var transcript: [String] = []
    var uncertainIDs = 0
    var verifiedDeliveries = 0
    /// Of them, occurrences of recurring timers; and those that folded missed occurrences.
    var seriesDeliveries = 0
    var coalescedDeliveries = 0
    var flipped = false
    var corruptionReported = false
    var salvaged = false
    var checkpoints = 0
    var reopens = 0
    var scenario = ""
    var seconds = 0.0
    var operations = 0
}

// MARK: - One iteration

final class CrashIteration {
    let seed: UInt64
    var random: SeededRandom
    let death: Death
    let damage: Damage
    let large: Bool
    let maxAttempts: Int?
    /// `Configuration.misfireThreshold` in milliseconds. The model folds misfires exactly (see
    /// `ModelTimer.folded`), so any threshold keeps it exact: a huge one (no misfire path at all:
    /// every occurrence is delivered as it is, however late), zero (every late first delivery of
    /// a `.fireOnceNow` occurrence folds all those due), or Quartz's 60 s (folds only after long
    /// advances and restarts, so both sides of the threshold are seen).
    let misfireThreshold: Int64
    let steps: Int
    let clock = ManualClock(now: Fuzz.start)
    let idPool: [String]
    var model = Model()
    var epoch = 0
    var held: [Held] = []
    var summary: IterationSummary
    /// An operation failed: the engine stopped (or the file system died); the workload ends.
    var dead = false

    init(seed: UInt64) {
        self.seed = seed
        random = SeededRandom(seed: seed)
        large = random.chance(0.15)
        steps = 8 + random.below(large ? 20 : 33)
        maxAttempts = random.chance(0.5) ? nil : 2 + random.below(3)
        idPool = (0 ..< (4 + random.below(6))).map { "t\($0)" }
        // About 10 operations to open and 2 per step (a write and its msync); a crash point past
        // the end kills the process after the workload.
        let at = random.chance(0.1) ? 1 + random.below(12) : 12 + random.below(steps * 2)
        let roll = random.below(100)
        if roll < 30 {
            death = .crash(at: at, .processCrash)
        } else if roll < 65 {
            death = .crash(at: at, .powerLoss)
        } else if roll < 78 {
            death = .crash(at: at, .tornWrite)
        } else if roll < 92 {
            death = .failure(at: at, random.chance(0.6) ? .io : .noSpace, powerLoss: random.chance(0.5))
        } else {
            // The log takes 2 MiB (the segment and its spare) and a third during a checkpoint.
            death = .diskFull(budget: (2 << 20) + random.below(large ? 3 << 20 : 1 << 20), powerLoss: random.chance(0.5))
        }
        let damageRoll = random.below(100)
        damage = damageRoll < 10 ? .bitFlip : damageRoll < 15 ? .bitFlipSalvage : .none
        let thresholdRoll = random.below(100)
        misfireThreshold = thresholdRoll < 45 ? 100 * 31_557_600_000 /* Configuration.longestDuration */ : thresholdRoll < 80 ? 0 : 60_000
        summary = IterationSummary(seed: seed)
        summary.scenario = "\(death); damage: \(damage.rawValue); \(large ? "large payloads" : "small payloads"); \(steps) steps; maxAttempts \(maxAttempts.map(String.init) ?? "none"); misfire threshold \(misfireThreshold > 1 << 40 ? "huge" : "\(misfireThreshold) ms")"
    }

    var plan: SimulatedFileSystem.Plan {
        var plan = SimulatedFileSystem.Plan()
        switch death {
        case let .crash(at, kind):
            plan.crashAtOperation = at
            plan.tearCrashingWrite = kind == .tornWrite
        case let .failure(at, failure, _):
            plan.failAtOperation = at
            plan.failure = failure
        case let .diskFull(budget, _):
            plan.allocationBudget = budget
        }
        return plan
    }

    func configuration(_ fileSystem: SimulatedFileSystem, salvage: Bool = false) -> Configuration {
        var configuration = Configuration.directory(Fuzz.directory, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = large ? 256 << 10 : 4096
        configuration.checkpointLogBytes = 1 << 20
        configuration.redeliveryTimeout = .milliseconds(Fuzz.redeliveryMilliseconds)
        configuration.maxAttempts = maxAttempts
        configuration.misfireThreshold = .milliseconds(misfireThreshold)
        configuration.salvage = salvage
        configuration.fileSystem = fileSystem
        return configuration
    }

    func note(_ text: String) {
        let line = "[t+\(clock.now() - Fuzz.start)] \(text)"
        summary.transcript.append(line)
        if Fuzz.trace { print("[\(seed)] \(line)") }
    }

    func problem(_ text: String) {
        summary.problems.append(text)
        note("PROBLEM: \(text)")
    }

    var now: Int64 { clock.now() }

    // MARK: Running

    func run(progress: FuzzProgress? = nil) async -> IterationSummary {
        let fileSystem = SimulatedFileSystem(plan: plan, seed: seed)
        progress?.state.withLock { $0.fileSystems[seed] = fileSystem }
        defer { progress?.state.withLock { $0.fileSystems[seed] = nil } }
        var engine: HourglassEngine? = await openWorkloadEngine(fileSystem)
        if let engine { await settle(engine, fileSystem) }
        var step = 0
        while step < steps, !dead, let current = engine {
            step += 1
            engine = await act(current, fileSystem)
            if let engine, !dead { await settle(engine, fileSystem) }
            if case .crash = death, fileSystem.crashed != nil { dead = true }
        }
        // Whatever the engine had fired is observed before it goes.
        if let engine { await settle(engine, fileSystem) }
        summary.crashedDuringWorkload = fileSystem.hasFaulted
        var crashes = false
        if case .crash = death { crashes = true }
        if fileSystem.crashed == nil && (crashes || !fileSystem.hasFaulted) {
            // The death did not come during the workload: kill the process now.
            fileSystem.crashNow("killed after the workload")
            note("killed after the workload (\(fileSystem.operationCount) operations)")
        }
        summary.crashOperation = fileSystem.crashed?.description ?? fileSystem.injectedFailure ?? "none"
        summary.operations = fileSystem.operationCount
        note("death: \(summary.crashOperation)")
        // The dead engine is closed: it must fail fast and let go of the directory.
        if let engine {
            do {
                try await engine.close()
                note("the dead engine closed cleanly")
            } catch {
                note("the dead engine's close failed: \(error)")
            }
        }
        if fileSystem.isLocked(Fuzz.directory) { problem("the dead engine did not release the directory lock") }
        // What a restart finds.
        let powerLoss: Bool
        switch death {
        case let .crash(_, kind): powerLoss = kind == .powerLoss
        case let .failure(_, _, loss): powerLoss = loss
        case let .diskFull(_, loss): powerLoss = loss
        }
        var image = fileSystem.crashImage(powerLoss: powerLoss, random: &random)
        var flip: Flip? = nil
        if damage != .none {
            flip = chooseFlip(&image)
            if let flip {
                image.flipBit(Fuzz.directory, flip.name, bit: flip.bit)
                note("flipped \(flip)")
                summary.flipped = true
            }
        }
        for violation in fileSystem.violations { problem("storage protocol misuse: \(violation)") }
        let restarted = SimulatedFileSystem(image: image, seed: seed ^ 1)
        await verify(restarted, flip: flip, salvage: damage == .bitFlipSalvage && flip != nil)
        for violation in restarted.violations { problem("storage protocol misuse after the restart: \(violation)") }
        if !summary.problems.isEmpty {
            summary.transcript.append("last file system operations before the death:")
            summary.transcript += fileSystem.recentOperations.map { "  " + $0 }
        }
        return summary
    }

    func openWorkloadEngine(_ fileSystem: SimulatedFileSystem) async -> HourglassEngine? {
        do {
            let engine = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
            epoch += 1
            note("opened (epoch \(epoch)): \(engine.recoveryReport)")
            // In-flight timers are delivered again at once after a restart.
            for (id, timer) in model.current where timer.inFlight {
                model.current[id]!.redeliverAt = .min
            }
            return engine
        } catch {
            note("open failed: \(error)")
            if !fileSystem.hasFaulted { problem("open failed with no fault injected: \(error)") }
            dead = true
            return nil
        }
    }

    /// Whether an error means the engine stopped or failed the write; other errors are wrong.
    func isStorageFailure(_ error: HourglassError) -> Bool {
        switch error {
        case .io, .diskFull, .stopped, .closed: return true
        default: return false
        }
    }

    /// An operation failed: nothing more is attempted. `.stopped` and `.closed` were refused
    /// before anything was written; `.io` and `.diskFull` may have left a record.
    func failed(_ what: String, _ error: HourglassError, _ fileSystem: SimulatedFileSystem) -> Bool {
        note("\(what) failed: \(error)")
        if !isStorageFailure(error) { problem("\(what) failed with \(error)") }
        if !fileSystem.hasFaulted { problem("\(what) failed with no fault injected: \(error)") }
        dead = true
        switch error {
        case .stopped, .closed: return false
        default: return true
        }
    }

    // MARK: Actions

    func newDeadline() -> Int64 {
        // Mostly ahead; sometimes already due (fires at once).
        max(0, now + Int64(random.below(40_000)) - (random.chance(0.12) ? 45_000 : 0))
    }

    func newPayload() -> PayloadKey {
        let count: Int
        if large && random.chance(0.5) {
            count = 20_000 + random.below(200_000)
        } else {
            count = random.below(40)
        }
        return PayloadKey(offset: random.below(payloadPool.count - count), count: count)
    }

    func act(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async -> HourglassEngine? {
        let roll = random.below(100)
        switch roll {
        case 0 ..< 30: await schedule(engine, fileSystem)
        case 30 ..< 42: await cancel(engine, fileSystem)
        case 42 ..< 60:
            advance()
            if !dead { await settle(engine, fileSystem, ordered: true) }
        case 60 ..< 68: await acknowledge(engine, fileSystem, held: pickHeld())
        case 68 ..< 72: await retry(engine, fileSystem, held: pickHeld())
        case 72 ..< 78: await checkpoint(engine, fileSystem)
        case 78 ..< 81: return await reopen(engine, fileSystem)
        case 81 ..< 90: await group(engine, fileSystem)
        case 90 ..< 96: await batch(engine, fileSystem)
        default: await secondOpener(fileSystem)
        }
        return engine
    }

    func pickHeld() -> Held? {
        guard !held.isEmpty else { return nil }
        return held.remove(at: random.below(held.count))
    }

    /// A timer to schedule: mostly one-shot; some are recurring `.every` series (a period of 2 to
    /// 30 s, half of them with a count of 1 to 4, the rest without end; mostly `.fireOnceNow`,
    /// some `.fireAll`), whose first occurrence is a usual deadline (sometimes already past).
    func newTimer() -> ModelTimer {
        var timer = ModelTimer(deadline: newDeadline(), payload: newPayload(), attempt: 1, inFlight: false, incarnation: model.nextIncarnation())
        if random.chance(0.3) {
            timer.period = 2000 + Int64(random.below(28_001))
            timer.remaining = random.chance(0.5) ? 0 : 1 + random.below(4)
            timer.occurrence = timer.deadline
            timer.foldsMisfires = random.chance(0.8)
        }
        return timer
    }

    /// How `timer` repeats (nil: a one-shot timer).
    func recurrence(_ timer: ModelTimer) -> Recurrence? {
        guard timer.isSeries else { return nil }
        return .every(.milliseconds(timer.period), count: timer.remaining == 0 ? nil : timer.remaining,
                      misfire: timer.foldsMisfires ? .fireOnceNow : .fireAll)
    }

    func schedule(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        let id = random.pick(idPool)
        let timer = newTimer()
        note("schedule \(id) \(timer)")
        do {
            if let recurrence = recurrence(timer) {
                try await engine.schedule(id: TimerID(id), repeating: recurrence, startingAt: Deadline(millisecondsSinceEpoch: timer.deadline), payload: timer.payload.bytes)
            } else {
                try await engine.schedule(id: TimerID(id), at: Deadline(millisecondsSinceEpoch: timer.deadline), payload: timer.payload.bytes)
            }
            model.durable(id, timer)
        } catch {
            if failed("schedule \(id)", error, fileSystem) { model.maybe(id, timer) }
        }
    }

    func cancel(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        let id = random.pick(idPool)
        let expected = model.current[id] != nil
        note("cancel \(id) (held: \(expected))")
        do {
            let found = try await engine.cancel(id: TimerID(id))
            if found != expected { problem("cancel \(id) returned \(found), the model holds \(model.current[id].map { "\($0)" } ?? "nothing")") }
            if found { model.durable(id, nil) }
        } catch {
            if failed("cancel \(id)", error, fileSystem), expected { model.maybe(id, nil) }
        }
    }

    func advance() {
        let roll = random.below(10)
        let delta = roll == 0 ? 0 : roll < 5 ? 1 + random.below(3000) : 3000 + random.below(22_000)
        note("advance the clock by \(delta) ms")
        clock.advance(by: .milliseconds(delta))
    }

    /// Whether the model says `held` is the delivery in flight now (so ack and retry apply).
    func isCurrent(_ held: Held) -> Bool {
        guard held.epoch == epoch, let timer = model.current[held.delivery.id.description] else { return false }
        // A series' delivery is current only for its occurrence: acknowledging (or exhausting) it
        // moved the series on, and the next occurrence's attempt 1 is another delivery.
        return timer.inFlight && timer.incarnation == held.incarnation && timer.attempt == held.delivery.attempt
            && held.delivery.occurrence?.millisecondsSinceEpoch == (timer.isSeries ? timer.occurrence : nil)
    }

    func acknowledge(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem, held: Held?) async {
        guard let held else { return }
        let id = held.delivery.id.description
        let expected = isCurrent(held)
        // A one-shot timer is removed; a series moves on to its next occurrence (or ends).
        let after = model.current[id]?.movedOn
        note("ack \(id) attempt \(held.delivery.attempt)\(held.delivery.occurrence.map { " occurrence \($0.millisecondsSinceEpoch - Fuzz.start)" } ?? "") (epoch \(held.epoch), expect \(expected))")
        do {
            let acknowledged = try await engine.ack(held.delivery)
            if acknowledged != expected { problem("ack of \(id) attempt \(held.delivery.attempt) returned \(acknowledged), expected \(expected) (model: \(model.current[id].map { "\($0)" } ?? "nothing"))") }
            if acknowledged { model.durable(id, after) }
        } catch {
            if failed("ack \(id)", error, fileSystem), expected { model.maybe(id, after) }
        }
    }

    func retry(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem, held: Held?) async {
        guard let held else { return }
        let id = held.delivery.id.description
        let delay = Int64(random.chance(0.2) ? 0 : random.below(25_000))
        let current = isCurrent(held)
        var effect: ModelTimer?? = nil  // nil: no change
        var expected = false
        if current, let timer = model.current[id] {
            if let maxAttempts, timer.attempt + 1 > maxAttempts {
                effect = .some(timer.movedOn)  // out of attempts: dropped (a series moves on)
            } else {
                var next = timer
                next.inFlight = false
                next.attempt += 1
                next.deadline = now + delay
                effect = .some(next)
                expected = true
            }
        }
        note("retry \(id) attempt \(held.delivery.attempt) after \(delay) ms (expect \(expected))")
        do {
            let retried = try await engine.retry(held.delivery, after: .milliseconds(delay))
            if retried != expected { problem("retry of \(id) attempt \(held.delivery.attempt) returned \(retried), expected \(expected)") }
            if let effect { model.durable(id, effect) }
        } catch {
            if failed("retry \(id)", error, fileSystem), let effect { model.maybe(id, effect) }
        }
    }

    func checkpoint(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        note("checkpoint()")
        // A checkpoint of a few timers takes milliseconds; one that never ends is a bug, which
        // must fail the iteration rather than hang the run.
        let outcome = await awaitWithTimeout(seconds: 10) { () async -> Result<Void, HourglassError> in
            do throws(HourglassError) {
                try await engine.checkpoint()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case nil:
            problem("checkpoint() did not return within 10 s (\(fileSystem.crashed.map { "\($0)" } ?? fileSystem.injectedFailure ?? "no fault"))")
            dead = true
        case .success?:
            summary.checkpoints += 1
        case let .failure(error)?:
            // A failed checkpoint changes no timer; the engine may go on (the log is intact).
            note("checkpoint failed: \(error)")
            if !isStorageFailure(error) { problem("checkpoint failed with \(error)") }
            if !fileSystem.hasFaulted { problem("checkpoint failed with no fault injected: \(error)") }
            if case .crash = death { dead = true }
        }
    }

    func reopen(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async -> HourglassEngine? {
        note("close and reopen")
        do {
            try await engine.close()
            model.allDurable()
        } catch {
            _ = failed("close", error, fileSystem)
            return nil
        }
        held.removeAll()  // an old engine's deliveries can no longer be acknowledged
        summary.reopens += 1
        return await openWorkloadEngine(fileSystem)
    }

    /// Schedules and cancels of distinct ids at once: one or several group commits.
    func group(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        var ids = idPool
        var operations: [(id: String, timer: ModelTimer?, expectedFound: Bool)] = []
        for _ in 0 ..< 2 + random.below(3) where !ids.isEmpty {
            let id = ids.remove(at: random.below(ids.count))
            if random.chance(0.7) {
                operations.append((id, newTimer(), false))
            } else {
                operations.append((id, nil, model.current[id] != nil))
            }
        }
        note("at once: " + operations.map { $0.timer.map { "schedule \($0)" } ?? "cancel" }.enumerated().map { "\(operations[$0.offset].id) \($0.element)" }.joined(separator: ", "))
        let results = await withTaskGroup(of: (Int, Result<Bool, HourglassError>).self) { group in
            for (index, operation) in operations.enumerated() {
                let id = TimerID(operation.id)
                let deadline = operation.timer.map { Deadline(millisecondsSinceEpoch: $0.deadline) }
                let payload = operation.timer?.payload.bytes ?? []
                let repeating = operation.timer.flatMap { self.recurrence($0) }
                group.addTask {
                    do throws(HourglassError) {
                        if let deadline, let repeating {
                            try await engine.schedule(id: id, repeating: repeating, startingAt: deadline, payload: payload)
                            return (index, .success(true))
                        }
                        if let deadline {
                            try await engine.schedule(id: id, at: deadline, payload: payload)
                            return (index, .success(true))
                        }
                        return (index, .success(try await engine.cancel(id: id)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var results: [(Int, Result<Bool, HourglassError>)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        // Successes first: each is durable with everything written before it. Then failures,
        // which came in a later commit.
        for (index, result) in results {
            guard case let .success(value) = result else { continue }
            let operation = operations[index]
            if let timer = operation.timer {
                model.durable(operation.id, timer)
            } else {
                if value != operation.expectedFound { problem("cancel \(operation.id) (at once with others) returned \(value), expected \(operation.expectedFound)") }
                if value { model.durable(operation.id, nil) }
            }
        }
        for (index, result) in results {
            guard case let .failure(error) = result else { continue }
            let operation = operations[index]
            if failed("\(operation.timer == nil ? "cancel" : "schedule") \(operation.id) (at once with others)", error, fileSystem) {
                if let timer = operation.timer {
                    model.maybe(operation.id, timer)
                } else if operation.expectedFound {
                    model.maybe(operation.id, nil)
                }
            }
        }
    }

    /// Several timers as one request: one frame, or with large payloads sometimes more than
    /// 1 MiB, written as several frames in one commit (which may span two segments).
    func batch(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        var timers: [(String, ModelTimer)] = []
        let huge = large && random.chance(0.3)
        for _ in 0 ..< (huge ? 6 + random.below(3) : 1 + random.below(large ? 7 : 5)) {
            var payload = newPayload()
            if huge {
                payload.count = 150_000 + random.below(50_000)
                payload.offset = random.below(payloadPool.count - payload.count)
            }
            timers.append((random.pick(idPool), ModelTimer(deadline: newDeadline(), payload: payload, attempt: 1, inFlight: false, incarnation: model.nextIncarnation())))
        }
        note("schedule a batch: " + timers.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        let requests = timers.map { TimerRequest(id: TimerID($0.0), deadline: Deadline(millisecondsSinceEpoch: $0.1.deadline), payload: $0.1.payload.bytes) }
        do {
            try await engine.schedule(requests)
            for (id, timer) in timers { model.durable(id, timer) }
        } catch {
            if failed("batch", error, fileSystem) {
                for (id, timer) in timers { model.maybe(id, timer) }
            }
        }
    }

    /// A second engine on the same directory is kept out.
    func secondOpener(_ fileSystem: SimulatedFileSystem) async {
        note("open a second engine on the same directory")
        do {
            let second = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
            problem("a second engine opened the directory while the first holds it")
            try? await second.close()
        } catch .directoryLocked(let path) {
            if path != Fuzz.directory { problem("directoryLocked names \(path)") }
        } catch {
            if !fileSystem.hasFaulted { problem("a second opener got \(error), expected directoryLocked") }
        }
    }

    // MARK: Deliveries

    /// Waits until the engine has fired everything due now (a checkpoint still loading may
    /// hold timers back: wait for it), then takes the deliveries, checks them against the
    /// model, and answers some of them.
    func settle(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem, ordered: Bool = false) async {
        for round in 0 ..< 5 {
            let deliveries = await takeDeliveries(engine)
            let fresh = check(deliveries, fileSystem, ordered: ordered && round == 0)
            if fresh.isEmpty || dead { return }
            if round == 4 {
                // The last round only takes what the answers before it fired (a retry after 0 ms,
                // a series' next occurrence due at once after an ack): nothing is left in the
                // engine's buffer, delivered and logged as fired, that the model has not seen
                // (a close or a replacing schedule next would make it a surprise).
                self.held += fresh
                return
            }
            // The consumer: acknowledge some now, retry some, keep the rest in flight.
            var answered = false
            for held in fresh {
                let roll = random.below(100)
                if roll < 35 {
                    await acknowledge(engine, fileSystem, held: held)
                    answered = true
                } else if roll < 47 {
                    await retry(engine, fileSystem, held: held)
                    answered = true
                } else {
                    self.held.append(held)
                }
                if dead { return }
            }
            if !answered { return }
        }
    }

    func takeDeliveries(_ engine: HourglassEngine) async -> [Delivery] {
        var stats = await engine.stats()
        var rounds = 0
        while stats.loading && rounds < 100_000 {
            await Task.yield()
            stats = await engine.stats()
            rounds += 1
        }
        if rounds > 0 { stats = await engine.stats() }  // one more turn: fire what loading held back
        var taken: [Delivery] = []
        var iterator = engine.deliveries.makeAsyncIterator()
        for _ in 0 ..< engine.deliveries.buffered {
            if let delivery = await iterator.next() { taken.append(delivery) }
        }
        return taken
    }

    /// Compares deliveries with what the model says is due now, and updates the model.
    func check(_ deliveries: [Delivery], _ fileSystem: SimulatedFileSystem, ordered: Bool) -> [Held] {
        let time = now
        var due: [String: ModelTimer] = [:]
        var dropped: [(String, ModelTimer?)] = []
        for (id, timer) in model.current {
            if timer.inFlight && timer.redeliverAt <= time {
                if let maxAttempts, timer.attempt + 1 > maxAttempts {
                    // Out of attempts: a one-shot timer is removed; a series moves on to its next
                    // occurrence, which fires in the same turn when it is due already.
                    let next = timer.movedOn
                    dropped.append((id, next))
                    if let next, next.deadline <= time { due[id] = next }
                } else {
                    var next = timer
                    next.attempt += 1
                    due[id] = next
                }
            } else if !timer.inFlight && timer.deadline <= time {
                due[id] = timer
            }
        }
        // Out of attempts: an ACK record (a NEXT for a series), written before the FIREs.
        for (id, next) in dropped { model.maybe(id, next) }
        var fresh: [Held] = []
        var lastFirstDeadline = Int64.min
        for delivery in deliveries {
            let id = delivery.id.description
            if delivery.firedAt < delivery.deadline { problem("\(id) fired at \(delivery.firedAt.millisecondsSinceEpoch - Fuzz.start), before its deadline \(delivery.deadline.millisecondsSinceEpoch - Fuzz.start)") }
            guard let pending = due.removeValue(forKey: id) else {
                problem("unexpected delivery of \(id): \(describe(delivery)) (model: \(model.current[id].map { "\($0)" } ?? "not held"))")
                continue
            }
            // The first delivery of a late occurrence may fold the missed ones: a NEXT record
            // naming the latest of them, before the FIRE.
            let expected = pending.folded(at: delivery.firedAt.millisecondsSinceEpoch, threshold: misfireThreshold)
            if expected != pending { model.maybe(id, expected) }
            if !expected.matches(delivery) {
                problem("\(id) delivered \(describe(delivery)); the model expects \(expected)")
            }
            if ordered && !pending.inFlight {
                // First deliveries come in deadline order (the wheel's: before a misfire folds).
                if pending.deadline < lastFirstDeadline { problem("\(id) (due \(pending.deadline - Fuzz.start)) delivered after a timer due later") }
                lastFirstDeadline = pending.deadline
            }
            var timer = expected
            timer.inFlight = true
            timer.redeliverAt = delivery.firedAt.millisecondsSinceEpoch + Fuzz.redeliveryMilliseconds
            model.maybe(id, timer)  // the FIRE record is durable once a later change is
            fresh.append(Held(delivery: delivery, epoch: epoch, incarnation: timer.incarnation))
            count(delivery)
        }
        if !fileSystem.hasFaulted {
            for (id, timer) in due { problem("\(id) was due (\(timer)) and did not fire") }
        }
        if !deliveries.isEmpty { note("delivered: " + deliveries.map { "\($0.id) #\($0.attempt)" + ($0.occurrence.map { " @\($0.millisecondsSinceEpoch - Fuzz.start)" } ?? "") + ($0.coalesced > 1 ? " x\($0.coalesced)" : "") }.joined(separator: ", ")) }
        return fresh
    }

    /// A delivery as the transcript shows it.
    func describe(_ delivery: Delivery) -> String {
        var text = "attempt \(delivery.attempt), due \(delivery.deadline.millisecondsSinceEpoch - Fuzz.start), fired \(delivery.firedAt.millisecondsSinceEpoch - Fuzz.start), payload \(delivery.payload.count) bytes"
        if let occurrence = delivery.occurrence { text += ", occurrence \(occurrence.millisecondsSinceEpoch - Fuzz.start)" }
        if delivery.coalesced != 1 || delivery.occurrence != nil { text += ", coalesced \(delivery.coalesced)" }
        return text
    }

    /// Counts a checked delivery in the summary.
    func count(_ delivery: Delivery) {
        summary.verifiedDeliveries += 1
        if delivery.occurrence != nil { summary.seriesDeliveries += 1 }
        if delivery.coalesced > 1 { summary.coalescedDeliveries += 1 }
    }

    // MARK: After the restart

    /// Picks a bit to flip in a file that recovery needs: the newest checkpoint, or a log segment
    /// byte (header or frame, not covered by the newest checkpoint) that the log itself proves
    /// was durable: a later intact frame or segment header records a durable sequence past it.
    /// Damage without such evidence is indistinguishable from a torn write (recovery cuts it as a
    /// torn tail, see Docs/RECOVERY.md), so it is not a bit flip this test can hold recovery to.
    func chooseFlip(_ image: inout SimulatedImage) -> Flip? {
        let directory = Fuzz.directory
        var candidates: [(name: String, bits: Range<Int>, isCheckpoint: Bool)] = []
        let checkpoints = image.names(in: directory).filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".hgc") && $0.count == 35 }
        let newest = checkpoints.max()
        let startSequence = newest.flatMap { UInt64($0.dropFirst(11).dropLast(4)) } ?? 1
        let segments = image.names(in: directory).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") && $0.count == 28 }.sorted()
        let bytes = segments.map { image.file(directory, $0)!.bytes }
        let headers: [SegmentHeader?] = bytes.map { b in
            b.withUnsafeBytes { if case let .valid(header) = SegmentHeader.parse($0) { header } else { nil } }
        }
        /// The intact frames of each segment, in order, up to the first that is not.
        let frames: [[(offset: Int, length: Int, header: FrameHeader)]] = zip(bytes, headers).map { b, segmentHeader in
            b.withUnsafeBytes { raw in
                var found: [(offset: Int, length: Int, header: FrameHeader)] = []
                var offset = LogFormat.segmentHeaderLength
                let context = segmentHeader.map { FrameContext.segment($0) } ?? FrameContext(version: nil, baseSequence: 1)
                while offset + LogFormat.minFrameHeaderLength <= raw.count,
                      case let .success(header) = FrameDecoder.check(UnsafeRawBufferPointer(rebasing: raw[offset...]), context: context) {
                    found.append((offset, header.frameLength, header))
                    offset += header.frameLength
                }
                return found
            }
        }
        /// Whether something written after (`index`, `offset`) says sequence `expected` was durable.
        func proven(_ index: Int, _ offset: Int, _ expected: UInt64) -> Bool {
            for later in index ..< segments.count {
                if later > index, let header = headers[later], header.durableSequence > expected { return true }
                for frame in frames[later] where (later > index || frame.offset > offset) && frame.header.durableSequence > expected {
                    return true
                }
            }
            return false
        }
        // The segments recovery reads: from the last one whose header starts at or before the
        // log's start (the checkpoint's, or 1). Older ones hold nothing it needs (recovery deletes
        // them as covered, RECOVERY.md), also when a segment holding no record at all is followed
        // by one that starts at the same sequence number (a checkpoint that failed after starting
        // its segment): damage there loses nothing and need not be reported.
        var neededFrom = 0
        if let holding = headers.lastIndex(where: { $0.map { $0.firstSequence <= startSequence } ?? false }) {
            neededFrom = holding
        } else if startSequence > 1 {
            return nil
        }
        for index in segments.indices where index >= neededFrom {
            if let header = headers[index], proven(index, 0, max(header.firstSequence, startSequence)) {
                candidates.append((segments[index], 0 ..< LogFormat.segmentHeaderLength * 8, false))
            }
            for frame in frames[index] where frame.header.nextSequence > startSequence {
                if proven(index, frame.offset, max(frame.header.firstSequence, startSequence)) {
                    candidates.append((segments[index], frame.offset * 8 ..< (frame.offset + frame.length) * 8, false))
                }
            }
        }
        if let newest, let file = image.file(directory, newest), file.length > 0 {
            candidates.append((newest, 0 ..< file.length * 8, true))
        }
        guard !candidates.isEmpty else { return nil }
        let choice = random.pick(candidates)
        return Flip(name: choice.name, path: directory + "/" + choice.name, isCheckpoint: choice.isCheckpoint,
                    bit: choice.bits.lowerBound + random.below(choice.bits.count))
    }

    func verify(_ fileSystem: SimulatedFileSystem, flip: Flip?, salvage: Bool) async {
        epoch += 1
        held.removeAll()
        let opened: Result<HourglassEngine, HourglassError>
        do {
            opened = .success(try await HourglassEngine.open(configuration(fileSystem, salvage: salvage), clock: clock))
        } catch {
            opened = .failure(error)
        }
        let engine: HourglassEngine
        switch opened {
        case let .failure(.corruption(file, offset, reason)):
            note("reopen: corruption in \(file) at \(offset): \(reason)")
            if let flip, file == flip.path {
                summary.corruptionReported = true
                if salvage && !flip.isCheckpoint { problem("with salvage, open still refused the damaged \(flip.name): \(reason)") }
            } else {
                problem("the directory cannot be opened after the crash: corruption in \(file) at \(offset): \(reason)" + (flip.map { " (the flipped file was \($0.name))" } ?? ""))
            }
            return
        case let .failure(error):
            problem("reopening after the crash failed: \(error)")
            return
        case let .success(value):
            engine = value
        }
        let report = engine.recoveryReport
        note("reopened: \(report)")
        if let flip {
            if flip.isCheckpoint {
                if !report.damagedCheckpoints.contains(where: { $0.contains(flip.name) }) {
                    problem("the flipped checkpoint \(flip.name) was accepted silently (\(flip); report: \(report))")
                } else {
                    summary.corruptionReported = true
                }
            } else if !salvage {
                problem("the damaged segment \(flip.name) was accepted silently (\(flip); report: \(report))")
            } else if !report.dropped.contains(where: { $0.file == flip.path }) {
                problem("salvage opened past the damaged \(flip.name) without reporting it in dropped (report: \(report))")
            } else {
                summary.salvaged = true
                await checkAfterSalvage(engine, fileSystem)
                return
            }
        }
        await checkRecovered(engine)
        do {
            try await engine.close()
        } catch {
            problem("closing the recovered engine failed: \(error)")
        }
    }

    /// Steps the clock through every deadline the model allows and checks each delivery.
    ///
    /// A one-shot timer is delivered once, checked against the states the model allows, and
    /// acknowledged. A series is followed for two occurrences, which keeps the model exact
    /// without modelling a series without end: its first delivery after the restart is checked
    /// against the states the history allows (what a restart does to each: an in-flight
    /// occurrence is delivered again with the next attempt, or, out of attempts, the series moves
    /// on; a pending one fires at its occurrence or at once, folding missed occurrences as the
    /// misfire threshold says) and acknowledged; then the next occurrence must come, one period
    /// after the acknowledged occurrence (stepping the clock to it, or at once when it has
    /// passed), and is checked and acknowledged too; then the series is cancelled, and cancel
    /// must find it exactly when the model says it has occurrences left. Nothing lost: a state
    /// due by a step that neither fired nor was allowed not to exist is reported; nothing
    /// repeated: an acknowledged occurrence (or timer) delivered again is reported.
    func checkRecovered(_ engine: HourglassEngine) async {
        var possible: [String: Set<ModelTimer?>] = [:]
        for id in model.ids { possible[id] = model.possible(id) }
        summary.uncertainIDs = possible.values.filter { $0.count > 1 }.count
        for (id, states) in possible.sorted(by: { $0.key < $1.key }) {
            note("may hold \(id): " + states.map { $0.map { "\($0)" } ?? "nothing" }.sorted().joined(separator: " | "))
        }
        let openedAt = now
        /// What the restart makes of a state before delivering anything: an in-flight timer out
        /// of attempts is done (removed, or a series moved on); nil: nothing left.
        func restarted(_ state: ModelTimer) -> ModelTimer? {
            if state.inFlight, let maxAttempts, state.attempt + 1 > maxAttempts { return state.movedOn }
            return state
        }
        /// When a state fires after the restart (nil: never).
        func firing(_ state: ModelTimer) -> Int64? {
            guard let state = restarted(state) else { return nil }
            return state.inFlight ? openedAt : max(state.deadline, openedAt)
        }
        /// The state as it is delivered at `firedAt`, the first time after the restart.
        func delivered(_ state: ModelTimer, at firedAt: Int64) -> ModelTimer? {
            guard var state = restarted(state) else { return nil }
            if state.inFlight {
                state.attempt += 1
                return state
            }
            return state.folded(at: firedAt, threshold: misfireThreshold)
        }
        func allowed(_ states: Set<ModelTimer?>) -> String {
            states.map { $0.map { "\($0)" } ?? "nothing" }.sorted().joined(separator: " | ")
        }
        var times = Set([openedAt])
        for states in possible.values {
            for case let state? in states { if let time = firing(state) { times.insert(time) } }
        }
        /// Series whose first delivery was acknowledged: the states their next occurrence may be
        /// in (nil: the acknowledged occurrence was the last), and the occurrence acknowledged.
        var following: [String: (states: Set<ModelTimer?>, acknowledged: Int64)] = [:]
        /// Ids done with: acknowledged (and, for a series, cancelled); nothing more may come.
        var done = Set<String>()
        /// Series cancelled after their second occurrence was acknowledged: the acknowledgement
        /// may have fired the occurrence after it at once, before the cancel (one delivery, in one
        /// of these states, fired by then).
        var cancelled: [String: (states: Set<ModelTimer>, at: Int64)] = [:]

        /// Acknowledges a checked delivery: whether the engine took it.
        func ackRecovered(_ delivery: Delivery, _ id: String) async -> Bool {
            do {
                if try await engine.ack(delivery) { return true }
                problem("after the restart, acknowledging \(id) returned false")
            } catch {
                problem("after the restart, acknowledging \(id) failed: \(error)")
            }
            return false
        }
        func cancelSeries(_ id: String, expected: Bool?) async {
            do {
                let found = try await engine.cancel(id: TimerID(id))
                if let expected, found != expected {
                    problem("after the restart, cancelling the series \(id) returned \(found), the model says it has \(expected ? "occurrences left" : "none left")")
                }
            } catch {
                problem("after the restart, cancelling \(id) failed: \(error)")
            }
        }

        var time = Int64.min
        while let step = times.filter({ $0 > time }).min() {
            time = step
            if time != now { clock.set(to: time) }
            // An acknowledgement may arm a series' next occurrence due at once: take until quiet.
            for _ in 0 ..< 20 {
                let deliveries = await takeDeliveries(engine)
                if deliveries.isEmpty { break }
                for delivery in deliveries {
                    let id = delivery.id.description
                    let firedAt = delivery.firedAt.millisecondsSinceEpoch
                    count(delivery)
                    if delivery.firedAt < delivery.deadline { problem("after the restart \(id) fired at \(firedAt - Fuzz.start), before its deadline \(delivery.deadline.millisecondsSinceEpoch - Fuzz.start)") }
                    if let last = cancelled.removeValue(forKey: id),
                       firedAt <= last.at && last.states.contains(where: { $0.folded(at: firedAt, threshold: misfireThreshold).matches(delivery) }) {
                        continue
                    }
                    if done.contains(id) {
                        problem("after the restart \(id) was delivered again (\(describe(delivery))) after being acknowledged")
                        continue
                    }
                    if let entry = following.removeValue(forKey: id) {
                        // The occurrence after the one acknowledged after the restart.
                        let (states, acknowledged) = (entry.states, entry.acknowledged)
                        done.insert(id)
                        let matching = states.compactMap { $0 }.filter { state in
                            state.folded(at: firedAt, threshold: misfireThreshold).matches(delivery)
                        }
                        if matching.isEmpty {
                            let repeated = delivery.occurrence.map { $0.millisecondsSinceEpoch <= acknowledged } ?? false
                            problem("after the restart, the series \(id) delivered \(describe(delivery)) after its occurrence \(acknowledged - Fuzz.start) was acknowledged: "
                                    + (repeated ? "an acknowledged occurrence came back" : "not its next occurrence") + "; allowed: \(allowed(states))")
                            await cancelSeries(id, expected: nil)
                            continue
                        }
                        let last = matching.allSatisfy { $0.folded(at: firedAt, threshold: misfireThreshold).movedOn == nil }
                        let more = matching.allSatisfy { $0.folded(at: firedAt, threshold: misfireThreshold).movedOn != nil }
                        if await ackRecovered(delivery, id) {
                            let after = Set(matching.compactMap { $0.folded(at: firedAt, threshold: misfireThreshold).movedOn })
                            await cancelSeries(id, expected: last ? false : more ? true : nil)
                            cancelled[id] = (after, now)
                        }
                        continue
                    }
                    let states = possible[id] ?? [nil]
                    let matching = states.compactMap { $0 }.filter { state in
                        guard let fire = firing(state), fire <= time, let expected = delivered(state, at: firedAt) else { return false }
                        return expected.matches(delivery)
                    }
                    if matching.isEmpty {
                        let kind = states.allSatisfy { $0 == nil } ? "came back although it was acknowledged, cancelled or never durably scheduled" : "does not match any state the model allows"
                        problem("after the restart \(id) was delivered (\(describe(delivery))): it \(kind); allowed: \(allowed(states))")
                        // Cancelled rather than acknowledged: a series would go on to a next occurrence.
                        done.insert(id)
                        _ = try? await engine.cancel(id: delivery.id)
                        continue
                    }
                    guard await ackRecovered(delivery, id) else {
                        done.insert(id)
                        continue
                    }
                    let next = Set(matching.map { delivered($0, at: firedAt)!.movedOn })
                    if next == [nil] {
                        done.insert(id)  // a one-shot timer, or the series' last occurrence
                        continue
                    }
                    following[id] = (next, delivery.occurrence?.millisecondsSinceEpoch ?? .min)
                    for case let state? in next { times.insert(max(state.deadline, now)) }
                }
            }
            // Whatever had to fire by now and did not must have been allowed not to exist.
            for (id, states) in possible where !done.contains(id) && following[id] == nil {
                let remaining = states.filter { state in
                    guard let state, let fire = firing(state) else { return true }
                    return fire > time
                }
                if remaining.isEmpty {
                    problem("after the restart \(id) never fired by \(time - Fuzz.start): LOST (the model allows only: \(allowed(states)))")
                    possible[id] = [nil]
                } else {
                    possible[id] = remaining
                }
            }
            for (id, next) in following where next.states.allSatisfy({ $0.map { $0.deadline <= time } ?? false }) {
                // Every state says the next occurrence is due, and it has not come.
                problem("after the restart the series \(id) did not fire its next occurrence by \(time - Fuzz.start) after \(next.acknowledged - Fuzz.start) was acknowledged: LOST (expected: \(allowed(next.states)))")
                following[id] = nil
                done.insert(id)
                await cancelSeries(id, expected: nil)
            }
        }
        let stats = await engine.stats()
        if stats.pending != 0 || stats.inFlight != 0 {
            problem("after every deadline passed and every delivery was acknowledged, the engine still holds \(stats.pending) pending and \(stats.inFlight) in flight")
        }
    }

    /// After a salvage, records were dropped: only check that what fires is plausible, that the
    /// engine writes its checkpoint, and that the next open needs no salvage.
    func checkAfterSalvage(_ engine: HourglassEngine, _ fileSystem: SimulatedFileSystem) async {
        clock.set(to: now + 100_000)
        for delivery in await takeDeliveries(engine) {
            let id = delivery.id.description
            if delivery.firedAt < delivery.deadline { problem("after salvage \(id) fired before its deadline") }
            // A dropped record can leave a mix: a RETRY's deadline on an older SCHEDULE's payload.
            let states = model.ever[id] ?? []
            // A series may also have moved on (out of attempts) or folded misfires at the open:
            // then its deadline is its occurrence, a whole number of periods after one it had.
            let deadline = delivery.deadline.millisecondsSinceEpoch
            let laterOccurrence = delivery.occurrence?.millisecondsSinceEpoch == deadline && states.contains { state in
                state.isSeries && deadline >= state.occurrence && (deadline - state.occurrence) % state.period == 0
            }
            if !laterOccurrence && !states.contains(where: { $0.deadline == deadline }) {
                problem("after salvage \(id) was delivered with a deadline it never had (\(delivery.deadline.millisecondsSinceEpoch - Fuzz.start))")
            }
            if !states.contains(where: { $0.payload.bytes == delivery.payload }) {
                problem("after salvage \(id) was delivered with a payload it never had (\(delivery.payload.count) bytes)")
            }
            _ = try? await engine.ack(delivery)
        }
        var stats = await engine.stats()
        var rounds = 0
        while stats.checkpoints == 0 && rounds < 200_000 {
            await Task.yield()
            stats = await engine.stats()
            rounds += 1
        }
        if stats.checkpoints == 0 { problem("after a salvage the engine did not write its checkpoint") }
        do {
            try await engine.close()
        } catch {
            problem("closing the salvaged engine failed: \(error)")
            return
        }
        do {
            let again = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
            if !again.recoveryReport.dropped.isEmpty { problem("after a salvage and its checkpoint, the next open still drops data: \(again.recoveryReport)") }
            try await again.close()
        } catch {
            problem("after a salvage and its checkpoint, the next open without salvage failed: \(error)")
        }
    }
}

// MARK: - Waiting with a bound

/// A one-shot result that either side of a race may settle.
final class Race<T: Sendable>: Sendable {
    private struct State {
        var settled = false
        var value: T? = nil
        var waiter: CheckedContinuation<T?, Never>? = nil
    }

    private let state = Mutex(State())

    func settle(_ value: T?) {
        let waiter = state.withLock { state -> CheckedContinuation<T?, Never>? in
            guard !state.settled else { return nil }
            state.settled = true
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    func value() async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let ready = state.withLock { state -> T?? in
                if state.settled { return .some(state.value) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Waits for `body` (run in a task of its own) at most `seconds` of wall-clock time: nil if it
/// had not finished by then (it is left running). A bound on waiting for an event, not a sleep
/// standing in for one.
func awaitWithTimeout<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async -> T) async -> T? {
    let race = Race<T>()
    let work = Task { race.settle(await body()) }
    let timer = Task {
        try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
        race.settle(nil)
    }
    let result = await race.value()
    timer.cancel()
    _ = work
    return result
}

// MARK: - The run

/// Threads of this process (to see that dead engines' threads end).
func threadCount() -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("Threads:") { return Int(text.dropFirst(8).trimmingCharacters(in: " \t\n")) ?? -1 }
    }
    return -1
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Progress shared by the workers and the watchdog.
final class FuzzProgress: Sendable {
    struct State {
        var next = 0
        var failures: [IterationSummary] = []
        var done: [IterationSummary] = []
        var running: [Int: (seed: UInt64, started: Double)] = [:]
        /// The file systems of the iterations running, for the watchdog's report.
        var fileSystems: [UInt64: SimulatedFileSystem] = [:]
    }

    let state = Mutex(State())
}

@Suite("Crash fuzzing: nothing acknowledged is ever lost")
struct CrashFuzzTests {
    // RECOVERY rows 2, 3, 6', 9, 10, 16 (crashes and power losses at random file system operations)
    // and 6, 11, 18 (bit flips the log proves durable: refused, or salvaged).
    @Test("random workloads, killed at random file system operations, recover everything acknowledged")
    func crashPoints() async throws {
        let master = SeededRandom.testSeed()
        let iterations = Fuzz.iterations
        print("CrashFuzzTests: seed \(master), \(iterations) iterations (replay: HOURGLASS_SEED=\(master); HOURGLASS_FUZZ_ITERATIONS to change the count)")
        let threadsBefore = threadCount()
        let started = monotonicSeconds()
        let progress = FuzzProgress()
        let watchdog = Task.detached {
            // An iteration takes milliseconds; one that hangs (a deadlock in close, say) would
            // hang the whole run silently: name its seed and stop the process instead.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                let stuck = progress.state.withLock { state in
                    state.running.values.first { monotonicSeconds() - $0.started > Fuzz.hangSeconds }.map { ($0.seed, state.fileSystems[$0.seed]) }
                }
                if let (seed, fileSystem) = stuck {
                    print("""
                        CrashFuzzTests: iteration with seed \(seed) has run for over \(Int(Fuzz.hangSeconds)) s: it hangs. \
                        Replay: HOURGLASS_SEED=\(seed) HOURGLASS_FUZZ_ITERATIONS=1 HOURGLASS_FUZZ_TRACE=1
                        \(fileSystem?.crashed.map { "\($0)" } ?? "no crash")
                        last file system operations:
                        \((fileSystem?.recentOperations ?? []).joined(separator: "\n"))
                        """)
                    fatalError("CrashFuzzTests: iteration with seed \(seed) hangs")
                }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0 ..< Fuzz.workers {
                group.addTask {
                    while true {
                        let index = progress.state.withLock { state -> Int? in
                            guard state.next < iterations, state.failures.count < Fuzz.maxFailures else { return nil }
                            defer { state.next += 1 }
                            return state.next
                        }
                        guard let index else { return }
                        let seed = Fuzz.seed(master, index)
                        progress.state.withLock { $0.running[worker] = (seed, monotonicSeconds()) }
                        let began = monotonicSeconds()
                        var summary = await CrashIteration(seed: seed).run(progress: progress)
                        summary.seconds = monotonicSeconds() - began
                        progress.state.withLock { state in
                            state.running[worker] = nil
                            state.done.append(summary)
                            if !summary.problems.isEmpty { state.failures.append(summary) }
                        }
                    }
                }
            }
        }
        watchdog.cancel()
        let elapsed = monotonicSeconds() - started
        let state = progress.state.withLock { $0 }
        for failure in state.failures {
            let text = """
                crash iteration failed. Replay: HOURGLASS_SEED=\(failure.seed) HOURGLASS_FUZZ_ITERATIONS=1 swift test --filter CrashFuzzTests
                scenario: \(failure.scenario)
                death: \(failure.crashOperation)
                problems:
                \(failure.problems.map { "  - " + $0 }.joined(separator: "\n"))
                transcript:
                \(failure.transcript.suffix(120).map { "  " + $0 }.joined(separator: "\n"))
                """
            print(text)
            Issue.record("\(text)")
        }
        // The run's shape: enough crash points, of every kind.
        let done = state.done
        let midWorkload = done.filter(\.crashedDuringWorkload).count
        var byOperation: [String: Int] = [:]
        for summary in done {
            let words = summary.crashOperation.split(separator: ":").dropFirst().first?.split(separator: " ").first.map(String.init) ?? "end"
            byOperation[words, default: 0] += 1
        }
        let flips = done.filter(\.flipped).count
        let reported = done.filter(\.corruptionReported).count
        let salvaged = done.filter(\.salvaged).count
        let uncertain = done.filter { $0.uncertainIDs > 0 }.count
        let deliveries = done.reduce(0) { $0 + $1.verifiedDeliveries }
        let seriesDeliveries = done.reduce(0) { $0 + $1.seriesDeliveries }
        let coalescedDeliveries = done.reduce(0) { $0 + $1.coalescedDeliveries }
        print("CrashFuzzTests: \(done.count) iterations in \(Int(elapsed * 10) / 10).\(Int(elapsed * 10) % 10) s (seed \(master)); \(midWorkload) died mid-workload; crash points by operation: \(byOperation.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); \(flips) bit flips (\(reported) reported as damage, \(salvaged) salvaged); \(uncertain) with unacknowledged changes at the crash; \(deliveries) deliveries checked (\(seriesDeliveries) of recurring occurrences, \(coalescedDeliveries) folding misfires); \(done.reduce(0) { $0 + $1.checkpoints }) checkpoints, \(done.reduce(0) { $0 + $1.reopens }) reopens")
        if getEnvironment("HOURGLASS_FUZZ_STATS") == "1" {
            let times = done.map(\.seconds).sorted()
            print("iteration seconds: p50 \(times[times.count / 2]) p90 \(times[times.count * 9 / 10]) p99 \(times[times.count * 99 / 100]) max \(times.last!)")
            let killed = done.filter { !$0.crashedDuringWorkload }.map(\.operations).sorted()
            if !killed.isEmpty { print("operations of iterations killed at the end: p10 \(killed[killed.count / 10]) p50 \(killed[killed.count / 2]) p90 \(killed[killed.count * 9 / 10])") }
        }
        #expect(state.failures.count == 0, "\(state.failures.count) iterations failed; their seeds: \(state.failures.map(\.seed))")
        if iterations >= 1000 && state.failures.isEmpty {
            #expect(done.count == iterations)
            #expect(midWorkload * 2 > done.count, "most iterations should die in the middle of the workload")
        }
        // Dead engines' threads end: the process does not accumulate them.
        let threadsAfter = threadCount()
        // (A margin for the other suites running meanwhile; a leak would be one per iteration.)
        #expect(threadsAfter < threadsBefore + 200, "threads: \(threadsBefore) before, \(threadsAfter) after \(done.count) iterations")
    }
}

/// Faults aimed at one moment, each pinning what the fuzzer found or must keep finding.
@Suite("Crash fuzzing: targeted storage faults")
struct TargetedFaultTests {
    func configuration(_ fileSystem: SimulatedFileSystem) -> Configuration {
        var configuration = Configuration.directory(Fuzz.directory, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 4096
        configuration.checkpointLogBytes = 1 << 20
        configuration.fileSystem = fileSystem
        return configuration
    }

    @Test("a checkpoint whose file cannot be created fails checkpoint() with the error; it does not hang", arguments: [SimulatedFileSystem.Failure.io, .noSpace])
    func checkpointFileCannotBeCreated(failure: SimulatedFileSystem.Failure) async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        let engine = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
        try await engine.schedule(id: "a", after: .seconds(60))
        fileSystem.update {
            $0.failPathsContaining = "checkpoint-"
            $0.failure = failure
        }
        let outcome = await awaitWithTimeout(seconds: 5) { () async -> Result<Void, HourglassError> in
            do throws(HourglassError) {
                try await engine.checkpoint()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case nil:
            Issue.record("checkpoint() has not returned 5 s after the checkpoint thread failed to create its file (stats: \(await engine.stats()))")
            try? await engine.close()  // fails the waiting checkpoint() with .closed
            return
        case .success?:
            Issue.record("checkpoint() succeeded although its file could not be created")
        case let .failure(error)?:
            switch (failure, error) {
            case (.io, .io), (.noSpace, .diskFull): break
            default: Issue.record("checkpoint() failed with \(error)")
            }
        }
        // The engine goes on: the log is intact, and a later checkpoint works.
        fileSystem.update { $0.failPathsContaining = nil }
        try await engine.schedule(id: "b", after: .seconds(60))
        let again = await awaitWithTimeout(seconds: 10) { () async -> Bool in (try? await engine.checkpoint()) != nil }
        #expect(again == true, "a checkpoint after the failed one")
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
        #expect(await reopened.stats().pending == 2)
        try await reopened.close()
    }

    /// Reopens a crash image and returns the ids that fire, in order, once every deadline passed.
    func recoveredIDs(_ image: SimulatedImage, clock: ManualClock, durability: Configuration.Durability = .always) async throws -> [String] {
        var configuration = configuration(SimulatedFileSystem(image: image))
        configuration.durability = durability
        configuration.maxPayloadBytes = 400_000
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        clock.set(to: Fuzz.start + 1_000_000)
        _ = await engine.stats()
        var ids: [String] = []
        var iterator = engine.deliveries.makeAsyncIterator()
        for _ in 0 ..< engine.deliveries.buffered {
            if let delivery = await iterator.next() { ids.append(delivery.id.description) }
        }
        try await engine.close()
        return ids
    }

    // RECOVERY row 6'
    @Test("a power loss during a commit whose frames span two segments is a torn tail: the directory opens with everything acknowledged")
    func powerLossInACommitAcrossSegments() async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        var configuration = configuration(fileSystem)
        configuration.maxPayloadBytes = 400_000
        configuration.checkpointLogBytes = 1 << 30  // no checkpoint moves the log meanwhile
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "acknowledged", at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000), payload: [1, 2, 3])
        // Six incompressible 200 KB payloads in one request: a frame of five (most of segment 1)
        // and a frame of one, which does not fit there and starts segment 2. The crash comes as
        // segment 1 is synced; the power loss writes back segment 2's pages, not segment 1's.
        // (LZ4 looks back 64 KiB: payloads overlapping at 100 KB distances stay incompressible.)
        fileSystem.update { $0.crashAtSyncOfPathContaining = "wal-00000000000000000001.log" }
        let batch = (0 ..< 6).map { i in
            TimerRequest(id: TimerID("unacknowledged-\(i)"), deadline: Deadline(millisecondsSinceEpoch: Fuzz.start + 2000 + Int64(i)),
                         payload: Array(payloadPool[i * 100_000 ..< i * 100_000 + 200_000]))
        }
        await #expect(throws: HourglassError.self) { try await engine.schedule(batch) }
        #expect(fileSystem.crashed != nil, "the crash did not happen")
        try? await engine.close()
        var random = SeededRandom(seed: 1)
        let image = fileSystem.crashImage(powerLoss: true, random: &random) { path, _ in !path.hasSuffix("wal-00000000000000000001.log") }
        #expect(image.names(in: Fuzz.directory).contains("wal-00000000000000000002.log"))
        do {
            let ids = try await recoveredIDs(image, clock: clock)
            #expect(ids.first == "acknowledged", "the acknowledged timer is recovered: \(ids)")
            #expect(ids.allSatisfy { $0 == "acknowledged" }, "nothing of the interrupted commit survives its first frame's loss: \(ids)")
        } catch {
            Issue.record("the directory cannot be opened after a power loss in the middle of an unacknowledged commit: \(error)")
        }
    }

    // RECOVERY row 6'
    @Test("after a power loss under durability none, pages written back out of order are a torn tail, not corruption", arguments: [1, 2])
    func outOfOrderWriteback(lostPage: Int) async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        var configuration = configuration(fileSystem)
        configuration.durability = .none
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        // One frame per call, about 60 bytes each: four pages of log, none of them synced.
        for i in 0 ..< 250 {
            try await engine.schedule(id: TimerID("t\(i)"), at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000 + Int64(i)), payload: Array(payloadPool[i ..< i + 20]))
        }
        fileSystem.crashNow("power loss")
        try? await engine.close()
        // The kernel wrote back every page but one.
        var random = SeededRandom(seed: 1)
        let image = fileSystem.crashImage(powerLoss: true, random: &random) { path, page in !(path.hasSuffix("wal-00000000000000000001.log") && page == lostPage) }
        do {
            let ids = try await recoveredIDs(image, clock: clock, durability: .none)
            // What was lost is a suffix: the log is a sequence, recovered up to the hole.
            #expect(ids == (0 ..< ids.count).map { "t\($0)" }, "recovered \(ids.count) timers, not a prefix of the schedules")
        } catch {
            Issue.record("the directory cannot be opened after a power loss under durability none (page \(lostPage) of the log not written back): \(error)")
        }
    }

    // RECOVERY row 11, on the segment holding the checkpoint's start (the rule before the table)
    @Test("a damaged header on the segment holding the checkpoint's start is named in the error, and salvage opens past it")
    func damagedHeaderOfTheHoldingSegment() async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        var configuration = configuration(fileSystem)
        configuration.maxPayloadBytes = 400_000
        configuration.checkpointLogBytes = 1 << 30  // only the checkpoint asked for
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        try await engine.schedule(id: "a", at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000))
        try await engine.checkpoint()  // the log goes on in segment 2, which holds the checkpoint's start
        try await engine.schedule(id: "b", at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000))
        // Five incompressible 250 KB payloads: the fifth starts segment 3.
        for i in 0 ..< 5 {
            try await engine.schedule(id: TimerID("big\(i)"), at: Deadline(millisecondsSinceEpoch: Fuzz.start + 2000),
                                      payload: Array(payloadPool[i * 100_000 ..< i * 100_000 + 250_000]))
        }
        try await engine.close()
        var random = SeededRandom(seed: 1)
        var image = fileSystem.crashImage(powerLoss: false, random: &random)
        let names = image.names(in: Fuzz.directory)
        try #require(names.contains("wal-00000000000000000003.log") && !names.contains("wal-00000000000000000001.log"), "\(names)")
        image.flipBit(Fuzz.directory, "wal-00000000000000000002.log", bit: 20 * 8)  // the segment number field
        let damaged = Fuzz.directory + "/wal-00000000000000000002.log"
        do {
            _ = try await HourglassEngine.open(self.configuration(SimulatedFileSystem(image: image)), clock: clock)
            Issue.record("a damaged segment header was accepted")
        } catch {
            if case let .corruption(file, _, reason) = error {
                #expect(file == damaged, "the error names \(file) (\(reason)), not the damaged \(damaged)")
            } else {
                Issue.record("opening failed with \(error), not .corruption")
            }
        }
        var salvaging = self.configuration(SimulatedFileSystem(image: image))
        salvaging.salvage = true
        salvaging.maxPayloadBytes = 400_000
        salvaging.checkpointLogBytes = 1 << 30
        do {
            let salvaged = try await HourglassEngine.open(salvaging, clock: clock)
            #expect(salvaged.recoveryReport.dropped.contains { $0.file == damaged }, "\(salvaged.recoveryReport)")
            try await salvaged.close()
        } catch {
            Issue.record("salvage does not open past a damaged header on the segment holding the checkpoint's start: \(error)")
        }
    }

    @Test("a damaged newest checkpoint whose predecessor's log is gone fails the open (C5), also when the predecessor starts at sequence 1")
    func damagedCheckpointWithoutItsLog() async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        let engine = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
        try await engine.checkpoint()  // checkpoint-1: the empty log
        for id in ["a", "b", "c"] { try await engine.schedule(id: TimerID(id), at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000)) }
        // The second checkpoint deletes segment 1, then the crash comes before checkpoint-1 goes.
        fileSystem.update { $0.failPathsContaining = "checkpoint-00000000000000000001.hgc" }
        _ = try? await engine.checkpoint()
        fileSystem.crashNow()
        try? await engine.close()
        var random = SeededRandom(seed: 1)
        var image = fileSystem.crashImage(powerLoss: false, random: &random)
        let names = image.names(in: Fuzz.directory)
        let newest = try #require(names.filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".hgc") }.max())
        try #require(names.contains("checkpoint-00000000000000000001.hgc") && newest != "checkpoint-00000000000000000001.hgc"
                     && !names.contains("wal-00000000000000000001.log"), "\(names)")
        let length = image.file(Fuzz.directory, newest)!.length
        image.flipBit(Fuzz.directory, newest, bit: (length - 64 + 24) * 8)  // the trailer's record count
        do {
            let reopened = try await HourglassEngine.open(configuration(SimulatedFileSystem(image: image)), clock: clock)
            clock.set(to: Fuzz.start + 10_000)
            let stats = await reopened.stats()
            Issue.record("opened from checkpoint-1 without the log after it: \(stats.pending + stats.inFlight) timers of 3 (\(reopened.recoveryReport))")
            try await reopened.close()
        } catch {
            if case let .corruption(file, _, _) = error {
                #expect(file == Fuzz.directory + "/" + newest)
            } else {
                Issue.record("opening failed with \(error), not .corruption")
            }
        }
    }

    @Test("log truncation does not close a segment the sync thread is still syncing")
    func truncationWhileASyncIsUnderWay() async throws {
        let fileSystem = SimulatedFileSystem()
        let clock = ManualClock(now: Fuzz.start)
        let engine = try await HourglassEngine.open(configuration(fileSystem), clock: clock)
        try await engine.schedule(id: "a", at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000))
        // The disk is slow: b's msync of segment 1 waits, while a checkpoint moves the log to
        // segment 2 and deletes segment 1.
        fileSystem.holdSyncs(ofPathContaining: "wal-00000000000000000001.log")
        let b = Task { () async -> Result<Void, HourglassError> in
            do throws(HourglassError) {
                try await engine.schedule(id: "b", at: Deadline(millisecondsSinceEpoch: Fuzz.start + 1000))
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        #expect(await fileSystem.waitForHeldSync(seconds: 10), "b's msync never started")
        let checkpoint = await awaitWithTimeout(seconds: 10) { () async -> Bool in (try? await engine.checkpoint()) != nil }
        fileSystem.releaseSyncs()
        #expect(checkpoint == true)
        if case let .failure(error) = await b.value { Issue.record("b failed: \(error)") }
        #expect(fileSystem.violations.isEmpty, "\(fileSystem.violations)")
        try? await engine.close()
    }
}
