import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting

@Suite("Checkpoints, truncation and recovery from a checkpoint")
struct CheckpointTests {
    static let start: Int64 = 1_763_791_200_000

    func configuration(_ directory: TemporaryDirectory, _ configure: (inout Configuration) -> Void = { _ in }) -> Configuration {
        // What these tests pin is the checkpoint's content and the recovery decisions, not the
        // syncs (close syncs everything): .none keeps them fast on a busy disk.
        var configuration = Configuration.directory(directory.path, durability: .none)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 64 << 10
        configuration.checkpointLogBytes = 1 << 30  // only when asked, unless a test says otherwise
        configure(&configuration)
        return configuration
    }

    /// Payloads that do not compress, so a few hundred timers span several segments.
    static func payload(_ i: Int, size: Int = 3000) -> [UInt8] {
        var random = SeededRandom(seed: UInt64(i))
        return (0 ..< size).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// Schedules `count` timers a minute apart from +1 h; returns the model.
    func fill(_ engine: HourglassEngine, count: Int, from first: Int = 0, model: inout ReferenceWheel) async throws {
        for i in first ..< first + count {
            let deadline = Self.start + 3_600_000 + Int64(i) * 60_000
            try await engine.schedule(id: TimerID("t\(i)"), at: Deadline(millisecondsSinceEpoch: deadline), payload: Self.payload(i))
            model.schedule(id: Array("t\(i)".utf8), deadline: deadline, payload: Self.payload(i))
        }
    }

    /// Fires everything and compares with the model.
    func expectAllFire(_ engine: HourglassEngine, clock: ManualClock, model: inout ReferenceWheel, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        clock.set(to: Self.start + 1000 * 86_400_000)
        var fired: [Delivery] = []
        for _ in 0 ..< 100 {
            fired += await engine.takeDeliveries()
            if fired.count >= model.count { break }
            await Task.yield()
        }
        let expected = model.advance(to: Self.start + 1000 * 86_400_000)
        #expect(fired.map { Array($0.id.bytes) } == expected.map(\.id), sourceLocation: sourceLocation)
        #expect(fired.map(\.payload) == expected.map(\.payload), sourceLocation: sourceLocation)
    }

    func files(_ directory: TemporaryDirectory, _ prefix: String) -> [String] {
        directory.files().filter { $0.hasPrefix(prefix) }
    }

    /// Waits (by asking the engine, never sleeping) until `condition` holds.
    func waitFor(_ engine: HourglassEngine, _ condition: (EngineStats) -> Bool) async -> EngineStats {
        var stats = await engine.stats()
        for _ in 0 ..< 100_000 where !condition(stats) {
            await Task.yield()
            stats = await engine.stats()
        }
        return stats
    }

    @Test("checkpoint() writes a checkpoint, deletes the segments it covers, and reopening starts from it")
    func checkpointAndTruncate() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 900, model: &model)
        for i in stride(from: 0, to: 900, by: 4) {
            #expect(try await engine.cancel(id: TimerID("t\(i)")))
            model.remove(id: Array("t\(i)".utf8))
        }
        #expect(files(directory, "wal-").count >= 3)
        try await engine.checkpoint()
        #expect(files(directory, "checkpoint-").count == 1)
        // Only the segment started at the checkpoint (and a spare) remain.
        #expect(files(directory, "wal-").filter { !$0.hasSuffix(".tmp") }.count <= 2)
        try await fill(engine, count: 50, from: 900, model: &model)
        try await engine.close()

        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        #expect(reopened.recoveryReport.checkpointSequence != nil)
        #expect(reopened.recoveryReport.records == 50, "only the log after the checkpoint is replayed")
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("changes keep flowing while a checkpoint is written; reopening finds every one")
    func concurrentChanges() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 600, model: &model)
        let checkpoint = Task { try await engine.checkpoint() }
        for i in 0 ..< 300 {
            if i % 3 == 0 {
                _ = try await engine.cancel(id: TimerID("t\(i)"))
                model.remove(id: Array("t\(i)".utf8))
            } else if i % 3 == 1 {
                let deadline = Self.start + 7_200_000 + Int64(i)
                try await engine.schedule(id: TimerID("t\(i)"), at: Deadline(millisecondsSinceEpoch: deadline), payload: [1, 2, 3])
                model.schedule(id: Array("t\(i)".utf8), deadline: deadline, payload: [1, 2, 3])
            } else {
                try await engine.schedule(id: TimerID("new\(i)"), at: Deadline(millisecondsSinceEpoch: Self.start + 10_000_000 + Int64(i)), payload: [9])
                model.schedule(id: Array("new\(i)".utf8), deadline: Self.start + 10_000_000 + Int64(i), payload: [9])
            }
        }
        try await checkpoint.value
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        #expect(await reopened.stats().pending + reopened.recoveryReport.checkpointTimers >= model.count)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("a checkpoint starts by itself once the log passes checkpointLogBytes; the directory stays bounded")
    func automaticAndBounded() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory) { $0.checkpointLogBytes = 1 << 20 }, clock: clock)
        for round in 0 ..< 4 {
            try await fill(engine, count: 400, from: round * 400, model: &model)
            for i in stride(from: round * 400, to: round * 400 + 400, by: 2) {
                _ = try await engine.cancel(id: TimerID("t\(i)"))
                model.remove(id: Array("t\(i)".utf8))
            }
            let stats = await waitFor(engine) { $0.checkpoints > round && !$0.checkpointInProgress }
            #expect(stats.checkpoints > round)
            // The bound: the newest checkpoint, the log since it (a segment or two), a spare.
            #expect(files(directory, "checkpoint-").count == 1)
            #expect(files(directory, "wal-").count <= 4)
        }
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("checkpointInterval: a checkpoint starts once the interval has passed and the log has grown, not before")
    func checkpointInterval() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let configuration = configuration(directory) { $0.checkpointInterval = .seconds(60) }
        let engine = try await HourglassEngine.open(configuration, clock: clock)
        /// Checkpoints begun: done or being written.
        func begun(_ stats: EngineStats) -> Int { stats.checkpoints + (stats.checkpointInProgress ? 1 : 0) }
        clock.advance(by: .seconds(30))
        try await fill(engine, count: 3, model: &model)
        clock.advance(by: .seconds(29))
        #expect(begun(await engine.stats()) == 0, "59 s after open")
        clock.advance(by: .seconds(1))
        var stats = await waitFor(engine) { $0.checkpoints == 1 && !$0.checkpointInProgress }
        #expect(stats.checkpoints == 1, "60 s after open, with the log grown")
        #expect(stats.checkpointSequence != nil && files(directory, "checkpoint-").count == 1)
        clock.advance(by: .seconds(600))
        #expect(begun(await engine.stats()) == 1, "nothing written since the last checkpoint: none needed")
        try await fill(engine, count: 1, from: 3, model: &model)
        stats = await waitFor(engine) { $0.checkpoints == 2 && !$0.checkpointInProgress }
        #expect(stats.checkpoints == 2, "the log grew, and the interval had long passed")
        try await fill(engine, count: 1, from: 4, model: &model)
        clock.advance(by: .seconds(59))
        #expect(begun(await engine.stats()) == 2, "the interval restarts at each checkpoint")
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("the log replayed at open counts toward checkpointLogBytes: restarting often does not keep the log growing")
    func replayedLogCounts() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let configuration = configuration(directory) { $0.checkpointLogBytes = 1 << 20 }
        // Each run writes ~0.6 MiB of log (uncompressible payloads), less than checkpointLogBytes.
        for run in 0 ..< 2 {
            let engine = try await HourglassEngine.open(configuration, clock: clock)
            try await fill(engine, count: 200, from: run * 200, model: &model)
            let stats = await waitFor(engine) { run == 0 || ($0.checkpoints >= 1 && !$0.checkpointInProgress) }
            #expect(stats.checkpoints == (run == 0 ? 0 : 1), "run \(run): \(stats.logBytesSinceCheckpoint) log bytes since the checkpoint")
            try await engine.close()
        }
        #expect(files(directory, "checkpoint-").count == 1)
        let reopened = try await HourglassEngine.open(configuration, clock: clock)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("row C1: a checkpoint interrupted before its rename is ignored and deleted")
    func interruptedCheckpoint() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 100, model: &model)
        try await engine.close()
        writeFile(directory.appending("checkpoint-00000000000000000050.hgc.tmp"), Array(repeating: 7, count: 5000))
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        #expect(!directory.files().contains { $0.hasSuffix(".hgc.tmp") })
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("rows C2 and C3: segments the checkpoint covers that were not deleted yet are skipped and deleted")
    func crashBeforeDeletion() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 700, model: &model)
        let before = directory.snapshot()
        try await engine.checkpoint()
        try await fill(engine, count: 30, from: 700, model: &model)
        try await engine.close()
        // Put back the old segments, as if the crash came before (or during) their deletion.
        directory.restore(before) { $0.hasPrefix("wal-") && !directory.files().contains($0) }
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        #expect(reopened.recoveryReport.obsoleteSegments >= 2)
        #expect(reopened.recoveryReport.records == 30)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("row C4: a damaged newest checkpoint falls back to an older one whose log still exists")
    func fallBack() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 300, model: &model)
        try await engine.checkpoint()
        try await fill(engine, count: 300, from: 300, model: &model)
        let older = directory.snapshot()  // the older checkpoint and all the log since it
        try await engine.checkpoint()
        try await fill(engine, count: 20, from: 600, model: &model)
        try await engine.close()
        // The older checkpoint and its log come back; the newest checkpoint is damaged.
        directory.restore(older) { !directory.files().contains($0) }
        let newest = try #require(files(directory, "checkpoint-").sorted().last)
        patchFile(directory.appending(newest), at: 100, with: [0xFF, 0x00, 0xFF])
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        #expect(reopened.recoveryReport.damagedCheckpoints.count == 1)
        #expect(reopened.recoveryReport.damagedCheckpoints.first?.contains(newest) == true)
        try await expectAllFire(reopened, clock: clock, model: &model)
        try await reopened.close()
    }

    @Test("rows C5 and C7: a damaged checkpoint with no older one to fall back on fails the open, naming the file")
    func damagedWithoutFallback() async throws {
        for damage in ["bit flip", "wrong name"] {
            let directory = TemporaryDirectory()
            defer { directory.remove() }
            let clock = ManualClock(now: Self.start)
            var model = ReferenceWheel()
            let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
            try await fill(engine, count: 400, model: &model)
            try await engine.checkpoint()
            try await engine.close()
            let name = try #require(files(directory, "checkpoint-").first)
            var expectedFile = directory.appending(name)
            if damage == "bit flip" {
                let bytes = readFile(directory.appending(name))
                patchFile(directory.appending(name), at: bytes.count / 2, with: [bytes[bytes.count / 2] ^ 0x10])
            } else {
                let renamed = "checkpoint-00000000000000000002.hgc"
                writeFile(directory.appending(renamed), readFile(directory.appending(name)))
                deleteFile(directory.appending(name))
                expectedFile = directory.appending(renamed)
            }
            do {
                _ = try await HourglassEngine.open(configuration(directory), clock: clock)
                Issue.record("\(damage): open succeeded on a damaged checkpoint")
            } catch let error {
                guard case let .corruption(file, _, _) = error else { Issue.record("\(damage): \(error)"); continue }
                #expect(file == expectedFile, "\(damage)")
            }
        }
    }

    @Test("row C6: a missing segment that the checkpoint needs fails the open, naming what is missing")
    func missingSegment() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        var model = ReferenceWheel()
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await fill(engine, count: 300, model: &model)
        try await engine.checkpoint()
        try await fill(engine, count: 700, from: 300, model: &model)
        try await engine.close()
        let segments = files(directory, "wal-").filter { $0.hasSuffix(".log") }.sorted()
        #expect(segments.count >= 3)
        deleteFile(directory.appending(segments[0]))
        await #expect(throws: HourglassError.self) { _ = try await HourglassEngine.open(configuration(directory), clock: clock) }
    }

    @Test("in-flight timers survive a checkpoint and a restart, and are delivered again")
    func inFlightSurvive() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let engine = try await HourglassEngine.open(configuration(directory), clock: clock)
        try await engine.schedule(id: "paying", after: .seconds(60), payload: [1])
        try await engine.schedule(id: "later", after: .seconds(600), payload: [2])
        clock.advance(by: .seconds(60))
        let first = try #require(await engine.takeDeliveries().first)
        #expect(first.attempt == 1)
        try await engine.checkpoint()
        try await engine.close()
        let reopened = try await HourglassEngine.open(configuration(directory), clock: clock)
        let again = await reopened.takeDeliveries()
        #expect(again.map(\.id) == ["paying"])
        #expect(again.first?.attempt == 2)
        #expect(try await reopened.ack(again[0]))
        clock.advance(by: .seconds(600))
        #expect(await reopened.takeDeliveries().map(\.id) == ["later"])
        try await reopened.close()
    }

    @Test("ready before fully loaded: overdue timers are delivered first, and a cancel of a timer not loaded yet wins")
    func readyBeforeLoaded() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = ManualClock(now: Self.start)
        let settings: (inout Configuration) -> Void = {
            $0.segmentBytes = 64 << 20
            $0.maxInFlight = 100_000
        }
        let engine = try await HourglassEngine.open(configuration(directory, settings), clock: clock)
        var batch: [TimerRequest] = []
        for i in 0 ..< 30_000 {
            // 200 timers due within a minute, the rest over the following days.
            let delay: Int64 = i < 200 ? Int64(i) * 100 : 86_400_000 + Int64(i) * 1000
            batch.append(TimerRequest(id: TimerID("t\(i)"), deadline: Deadline(millisecondsSinceEpoch: Self.start + delay), payload: Array("p\(i)".utf8)))
        }
        try await engine.schedule(batch)
        try await engine.checkpoint()
        try await engine.close()

        clock.advance(by: .seconds(3600))  // the process was down an hour
        let reopened = try await HourglassEngine.open(configuration(directory, settings), clock: clock)
        // The last timer of the checkpoint is almost certainly not loaded yet; its cancel must win.
        #expect(try await reopened.cancel(id: "t29999"))
        #expect(try await reopened.cancel(id: "t15000"))
        #expect(try await reopened.cancel(id: "never-existed") == false)
        let overdue = await reopened.takeDeliveries()
        #expect(overdue.count == 200)
        #expect(overdue.map(\.id) == (0 ..< 200).map { TimerID("t\($0)") }, "oldest first")
        for delivery in overdue { _ = try await reopened.ack(delivery) }
        _ = await waitFor(reopened) { !$0.loading }
        clock.advance(by: .seconds(200 * 86_400))
        let rest = await reopened.takeDeliveries()
        #expect(rest.count == 29_798)
        #expect(!rest.contains { $0.id == "t29999" || $0.id == "t15000" })
        #expect(rest.map(\.deadline) == rest.map(\.deadline).sorted(), "in deadline order")
        try await reopened.close()
    }
}
