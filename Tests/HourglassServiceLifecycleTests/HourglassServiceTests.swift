import Hourglass
import HourglassServiceLifecycle
import HourglassTestSupport
import HourglassTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// What the handlers saw, in order.
final class Journal: Sendable {
    private let entries = Mutex<[String]>([])
    func append(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

/// A one-shot signal a test awaits (a handler has started, say).
final class Signal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    func fire() {
        let waiters = state.withLock { state in
            state.fired = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
    func wait() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// A Swift `Clock` that moves only when the test moves it: for the service's grace period.
final class SteppedClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private struct Sleeper {
        var id: Int
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID = 0
        var sleeperWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var now: Instant { state.withLock { $0.now } }
    var minimumResolution: Duration { .zero }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (ready, waiters) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    if deadline <= state.now || Task.isCancelled { return (true, []) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    defer { state.sleeperWaiters.removeAll() }
                    return (false, state.sleeperWaiters)
                }
                for waiter in waiters { waiter.resume() }
                if ready {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume() }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Returns once someone sleeps on this clock.
    func waitForSleeper() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if !state.sleepers.isEmpty { return true }
                state.sleeperWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}

/// A log handler that fires a signal when a message starting with `prefix` is logged: how a
/// test learns, without polling, that the service has reached a step.
struct SignalingLogHandler: LogHandler {
    let prefix: String
    let signal: Signal
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.message.description.hasPrefix(prefix) { signal.fire() }
    }
}

@Suite("HourglassService: a swift-service-lifecycle Service, stopped gracefully")
struct HourglassServiceTests {
    static let silent = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test("in a ServiceGroup, a graceful shutdown lets the running handler finish; nothing acknowledged is lost; the directory is released")
    func gracefulShutdownInAServiceGroup() async throws {
        let timers = try await HourglassTestEngine.open { $0.durability = .always }
        let path = try #require(timers.directory?.path)
        let journal = Journal()
        let slowStarted = Signal()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let stopped = Signal()
        let logger = Logger(label: "test") { _ in SignalingLogHandler(prefix: "hourglass service: graceful shutdown", signal: stopped) }
        let service = HourglassService(engine: timers.engine, concurrency: 1, logger: logger) { delivery in
            if delivery.id == "slow" {
                slowStarted.fire()
                for await _ in release { break }
            }
            journal.append("\(delivery.id)#\(delivery.attempt)")
            return .ack
        }
        let group = ServiceGroup(services: [service], logger: Self.silent)
        let running = Task { try await group.run() }

        for i in 0 ..< 20 { try await timers.engine.schedule(id: TimerID("order-\(i)"), after: .seconds(1)) }
        try await timers.engine.schedule(id: "slow", after: .seconds(2))
        try await timers.engine.schedule(id: "waiting", after: .seconds(2))
        try await timers.engine.schedule(id: "future", after: .seconds(3600))
        await timers.advance(by: .seconds(1))
        await timers.waitUntilHandled()
        #expect(journal.all.count == 20)
        await timers.advance(by: .seconds(1))
        await slowStarted.wait()  // the only handler task holds "slow"; "waiting" is buffered
        #expect(await timers.engine.stats().buffered == 1)

        await group.triggerGracefulShutdown()
        await stopped.wait()  // the service has stopped taking deliveries
        #expect(timers.engine.deliveriesStopped)
        releaseContinuation.yield()  // the running handler finishes after the shutdown began
        try await running.value

        #expect(journal.all.contains("slow#1"), "the running handler finished")
        #expect(!journal.all.contains { $0.hasPrefix("waiting") }, "nothing was taken after the shutdown began")
        await #expect(throws: HourglassError.closed) { try await timers.engine.schedule(id: "after", after: .seconds(1)) }
        // The directory is released: it can be read, and opened again.
        let inspection = try HourglassEngine.inspect(directory: path, includeTimers: true)
        #expect(inspection.pending == 1 && inspection.inFlight == 1, "future pending, waiting in flight: \(inspection.timers.map(\.id))")
        let reopened = try await timers.reopen()
        let again = await timers.takeDeliveries()
        #expect(again.map(\.id) == ["waiting"], "only what was never handled comes back, none of the 21 acknowledged")
        #expect(again.first?.attempt == 2)
        #expect(await reopened.stats().pending == 1)
        try await timers.close()
    }

    @Test("a handler still running after the grace period is cancelled; its timer is delivered again after the restart")
    func gracePeriodBoundsTheHandlers() async throws {
        let timers = try await HourglassTestEngine.open { $0.durability = .always }
        let clock = SteppedClock()
        let journal = Journal()
        let stuckStarted = Signal()
        let (never, neverContinuation) = AsyncStream<Void>.makeStream()
        let service = HourglassService(engine: timers.engine, concurrency: 2, handlerGracePeriod: .seconds(5), clock: clock, logger: Self.silent) { delivery in
            if delivery.id == "stuck" {
                stuckStarted.fire()
                for await _ in never {}  // ends only when the task is cancelled
                journal.append("stuck cancelled: \(Task.isCancelled)")
                throw CancellationError()
            }
            journal.append("\(delivery.id)")
            return .ack
        }
        let group = ServiceGroup(services: [service], logger: Self.silent)
        let running = Task { try await group.run() }
        try await timers.engine.schedule(id: "stuck", after: .seconds(1))
        try await timers.engine.schedule(id: "quick", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        await stuckStarted.wait()

        await group.triggerGracefulShutdown()
        await clock.waitForSleeper()  // the service waits out the grace period
        #expect(!journal.all.contains { $0.hasPrefix("stuck") }, "not cancelled before the grace period ends")
        clock.advance(by: .seconds(5))
        try await running.value
        neverContinuation.finish()

        #expect(journal.all.contains("stuck cancelled: true"))
        let again = try await timers.reopen().takeDeliveries()
        #expect(again.map(\.id) == ["stuck"], "the cancelled handler's timer stayed in flight")
        #expect(again.first?.attempt == 2)
        try await timers.close()
    }

    @Test("a storage failure while acknowledging ends run() with the error; the engine is closed and the directory released")
    func storageFailureEndsTheService() async throws {
        let faults = FaultyFileSystem()
        let timers = try await HourglassTestEngine.open {
            $0.durability = .always
            $0.fileSystem = faults
        }
        let path = try #require(timers.directory?.path)
        let service = HourglassService(engine: timers.engine, logger: Self.silent) { _ in .ack }
        try await timers.engine.schedule(id: "kept", after: .seconds(60))
        try await timers.engine.schedule(id: "due", after: .seconds(1))
        faults.update { $0.failSyncs = .ioError }
        await timers.advance(by: .seconds(1))
        do {
            try await service.run()
            Issue.record("run() returned after the ack failed")
        } catch let error as HourglassError {
            switch error {
            case .io, .stopped: break
            default: Issue.record("expected a storage error, got \(error)")
            }
        }
        #expect(timers.engine.deliveriesStopped)
        faults.update { $0.failSyncs = nil }
        let inspection = try HourglassEngine.inspect(directory: path)
        #expect(inspection.pending + inspection.inFlight == 2, "everything acknowledged is there: kept, and due (its ack failed)")
        try await timers.close()
    }

    @Test("cancelling run() cancels the handlers and closes the engine")
    func cancellation() async throws {
        let timers = try await HourglassTestEngine.open(.memory)
        let started = Signal()
        let journal = Journal()
        let service = HourglassService(engine: timers.engine) { delivery in
            started.fire()
            let (never, _) = AsyncStream<Void>.makeStream()
            for await _ in never {}
            journal.append("cancelled: \(Task.isCancelled)")
            return .ack
        }
        let running = Task { try await service.run() }
        try await timers.engine.schedule(id: "a", after: .seconds(1))
        await timers.advance(by: .seconds(1))
        await started.wait()
        running.cancel()
        try await running.value
        #expect(journal.all == ["cancelled: true"])
        await #expect(throws: HourglassError.closed) { try await timers.engine.schedule(id: "b", after: .seconds(1)) }
    }

    @Test("an engine closed by someone else ends run()")
    func closedElsewhere() async throws {
        let timers = try await HourglassTestEngine.open(.memory)
        let service = HourglassService(engine: timers.engine) { _ in .ack }
        let running = Task { try await service.run() }
        try await timers.engine.close()
        try await running.value
    }
}
