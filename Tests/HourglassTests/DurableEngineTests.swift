import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting

@Suite("Durable engine: the log on disk")
struct DurableEngineTests {
    static let start: Int64 = 1_763_791_200_000

    /// A durable engine under test: `always`, 1 MiB segments, checkpoints every 1 MiB of log.
    func open(_ configure: (inout Configuration) -> Void = { _ in }) async throws -> HourglassTestEngine {
        try await HourglassTestEngine.open(.temporaryDirectory, startingAt: Deadline(millisecondsSinceEpoch: Self.start)) { configuration in
            configuration.durability = .always
            configuration.segmentBytes = 1 << 20
            configuration.maxPayloadBytes = 64 << 10
            configuration.checkpointLogBytes = 1 << 20
            configure(&configuration)
        }
    }

    @Test("reopening after close brings back exactly the pending timers")
    func reopenAfterClose() async throws {
        let timers = try await open()
        let engine = timers.engine
        for i in 0 ..< 100 {
            try await engine.schedule(id: TimerID("order-\(i)"), after: .seconds(Int64(60 + i)), payload: Array("payload \(i)".utf8))
        }
        for i in stride(from: 0, to: 100, by: 3) { _ = try await engine.cancel(id: TimerID("order-\(i)")) }
        try await engine.schedule(id: "order-1", after: .seconds(1000), payload: Array("replaced".utf8))

        let reopened = try await timers.reopen()
        #expect(await reopened.stats().pending == 66)
        #expect(reopened.recoveryReport.records == 135)
        await timers.advance(by: .seconds(200))
        let fired = await reopened.takeDeliveries()
        #expect(fired.count == 65)
        #expect(fired.first?.id == "order-2")
        #expect(fired.first?.payloadString == "payload 2")
        for delivery in fired { #expect(try await reopened.ack(delivery)) }
        await timers.advance(by: .seconds(1000))
        let last = await reopened.takeDeliveries()
        #expect(last.map(\.payloadString) == ["replaced"])
        try await timers.close()
    }

    @Test("a second engine on the same directory gets a clear error")
    func locked() async throws {
        let timers = try await open()
        let path = try #require(timers.directory?.path)
        await #expect(throws: HourglassError.directoryLocked(path: path)) {
            _ = try await HourglassEngine.open(timers.configuration, clock: timers.clock)
        }
        try await timers.engine.close()
        let again = try await HourglassEngine.open(timers.configuration, clock: timers.clock)
        try await again.close()
        try await timers.close()
    }
}

@Suite("Durable engine: storage failures")
struct StorageFailureTests {
    static let start: Int64 = 1_763_791_200_000

    func configuration(_ directory: TemporaryDirectory, _ fileSystem: FaultyFileSystem) -> Configuration {
        var configuration = Configuration.directory(directory.path, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 64 << 10
        configuration.checkpointLogBytes = 64 << 20
        configuration.fileSystem = fileSystem
        return configuration
    }

    @Test("a full disk stops the engine with a clear error; everything acknowledged survives")
    func diskFull() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Room for the first segment and its spare, not for a third.
        let faults = FaultyFileSystem()
        faults.update { $0.allocationBudget = 2 << 20 }
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(configuration(directory, faults), clock: clock)
        var random = SeededRandom(seed: 7)
        var acknowledged: [String] = []
        var failure: HourglassError? = nil
        for i in 0 ..< 1000 {
            // Random bytes do not compress: 10 KB each fills a 1 MiB segment in ~100 timers.
            let payload = (0 ..< 10_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            do {
                try await engine.schedule(id: TimerID("t\(i)"), after: .seconds(60), payload: payload)
                acknowledged.append("t\(i)")
            } catch {
                failure = error
                break
            }
        }
        #expect(failure != nil, "the disk never filled")
        switch failure {
        case .diskFull?: break
        case let .stopped(reason)?: #expect(reason.contains("no space left"))  // found by background work first
        default: Issue.record("expected .diskFull, got \(String(describing: failure))")
        }
        // From then on the engine refuses changes, saying why.
        do {
            try await engine.schedule(id: "after", after: .seconds(1))
            Issue.record("a schedule after the failure succeeded")
        } catch let error {
            guard case .stopped = error else { Issue.record("expected .stopped, got \(error)"); return }
            #expect(error.description.contains("no space left"))
        }
        try? await engine.close()

        // Reopened with room, every acknowledged timer is there.
        let reopened = try await HourglassEngine.open(configuration(directory, FaultyFileSystem()), clock: clock)
        #expect(await reopened.stats().pending == acknowledged.count)
        #expect(acknowledged.count > 150)
        try await reopened.close()
    }

    @Test("a failed sync fails the batch and stops the engine; reopening recovers what was acknowledged")
    func syncFailure() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let faults = FaultyFileSystem()
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(configuration(directory, faults), clock: clock)
        try await engine.schedule(id: "kept", after: .seconds(60))
        faults.update { $0.failSyncs = .ioError }
        await #expect(throws: HourglassError.self) { try await engine.schedule(id: "failed", after: .seconds(60)) }
        await #expect(throws: HourglassError.self) { _ = try await engine.cancel(id: "kept") }
        try? await engine.close()
        let reopened = try await HourglassEngine.open(configuration(directory, FaultyFileSystem()), clock: clock)
        #expect(await reopened.stats().pending >= 1)
        clock.advance(by: .seconds(60))
        #expect(await reopened.takeDeliveries().map(\.id).contains("kept"))
        try await reopened.close()
    }
}
