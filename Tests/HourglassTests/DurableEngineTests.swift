import Hourglass
import HourglassTestSupport
import Testing

@Suite("Durable engine: the log on disk")
struct DurableEngineTests {
    static let start: Int64 = 1_763_791_200_000

    func open(_ directory: TemporaryDirectory, clock: ManualClock, _ configure: (inout Configuration) -> Void = { _ in }) async throws -> HourglassEngine {
        var configuration = Configuration.directory(directory.path, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 64 << 10
        configuration.checkpointLogBytes = 1 << 20
        configure(&configuration)
        return try await HourglassEngine.open(configuration, clock: clock)
    }

    @Test("reopening after close brings back exactly the pending timers")
    func reopenAfterClose() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let engine = try await open(directory, clock: clock)
        for i in 0 ..< 100 {
            try await engine.schedule(id: TimerID("order-\(i)"), after: .seconds(Int64(60 + i)), payload: Array("payload \(i)".utf8))
        }
        for i in stride(from: 0, to: 100, by: 3) { _ = try await engine.cancel(id: TimerID("order-\(i)")) }
        try await engine.schedule(id: "order-1", after: .seconds(1000), payload: Array("replaced".utf8))
        try await engine.close()

        let reopened = try await open(directory, clock: clock)
        #expect(await reopened.stats().pending == 66)
        #expect(reopened.recoveryReport.records == 135)
        clock.advance(by: .seconds(200))
        let fired = await drain(reopened)
        #expect(fired.count == 65)
        #expect(fired.first?.id == "order-2")
        #expect(fired.first?.payloadString == "payload 2")
        for delivery in fired { #expect(try await reopened.ack(delivery)) }
        clock.advance(by: .seconds(1000))
        let last = await drain(reopened)
        #expect(last.map(\.payloadString) == ["replaced"])
        try await reopened.close()
    }

    @Test("a second engine on the same directory gets a clear error")
    func locked() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let engine = try await open(directory, clock: clock)
        await #expect(throws: HourglassError.directoryLocked(path: directory.path)) {
            _ = try await open(directory, clock: clock)
        }
        try await engine.close()
        let again = try await open(directory, clock: clock)
        try await again.close()
    }
}
