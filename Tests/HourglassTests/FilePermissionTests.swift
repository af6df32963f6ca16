import Hourglass
import HourglassTestSupport
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

/// The permission bits of `path`, or nil when it is gone (a `.tmp` file renamed between the
/// listing and the `stat`).
private func permissions(_ path: String) -> mode_t? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return info.st_mode & 0o7777
}

private func isRegularFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
}

@Suite("File permissions: only the owner reads the timers")
struct FilePermissionTests {
    static let start: Int64 = 1_763_791_200_000

    /// Every file in `directory` is a regular file with mode 0600; returns the names seen.
    @discardableResult
    func expectOwnerOnlyFiles(in directory: String, _ moment: String) -> [String] {
        let names = fileNames(in: directory)
        for name in names {
            let path = directory + "/" + name
            guard let mode = permissions(path) else { continue }
            #expect(isRegularFile(path), "\(moment): \(name) is not a regular file")
            #expect(mode == 0o600, "\(moment): \(name) has mode \(String(mode, radix: 8)), not 600")
        }
        return names
    }

    @Test("under umask 022 the engine creates its directory 0700 and every file 0600: after open, a segment roll, a checkpoint and close")
    func ownerOnlyUnderTheUsualUmask() async throws {
        let parent = TemporaryDirectory()
        defer { parent.remove() }
        // The usual umask, which left the directory 0755 and the files 0644.
        let previousUmask = umask(0o022)
        defer { umask(previousUmask) }

        let path = parent.appending("timers")
        var configuration = Configuration.directory(path, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 64 << 10
        configuration.checkpointLogBytes = 64 << 20  // checkpoints on request only
        let engine = try await HourglassEngine.open(configuration, clock: ManualClock(now: Self.start))

        #expect(permissions(path) == 0o700)
        let afterOpen = expectOwnerOnlyFiles(in: path, "after open")
        #expect(afterOpen.contains("LOCK"))
        #expect(afterOpen.contains { $0.hasPrefix("wal-") })

        // 24 incompressible 60 KiB payloads: more than the 1 MiB segment, so the log rolls.
        var random = SeededRandom(seed: 0x0600)
        for i in 0 ..< 24 {
            let payload = (0 ..< 60 << 10).map { _ in UInt8.random(in: 0 ... 255, using: &random) }
            try await engine.schedule(id: TimerID("order-\(i)"), after: .seconds(3600), payload: payload)
        }
        #expect(await engine.stats().logBytesWritten > configuration.segmentBytes)
        let afterRoll = expectOwnerOnlyFiles(in: path, "after a segment roll")
        #expect(afterRoll.filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }.count >= 2)

        try await engine.checkpoint()
        #expect(await engine.stats().checkpoints == 1)
        let afterCheckpoint = expectOwnerOnlyFiles(in: path, "after checkpoint()")
        #expect(afterCheckpoint.contains { $0.hasPrefix("checkpoint-") })

        try await engine.close()
        #expect(permissions(path) == 0o700)
        let afterClose = expectOwnerOnlyFiles(in: path, "after close")
        #expect(afterClose.contains("LOCK") && afterClose.contains { $0.hasPrefix("checkpoint-") })
    }

    @Test("an existing directory keeps its mode (an operator may loosen it); the files in it are still 0600")
    func existingDirectoryKeepsItsMode() async throws {
        let parent = TemporaryDirectory()
        defer { parent.remove() }
        let previousUmask = umask(0o022)
        defer { umask(previousUmask) }

        let path = parent.appending("timers")
        #expect(mkdir(path, 0o750) == 0)
        #expect(permissions(path) == 0o750)
        var configuration = Configuration.directory(path, durability: .always)
        configuration.segmentBytes = 1 << 20
        configuration.maxPayloadBytes = 64 << 10
        configuration.checkpointLogBytes = 1 << 20
        let engine = try await HourglassEngine.open(configuration, clock: ManualClock(now: Self.start))
        try await engine.schedule(id: "order-1", after: .seconds(60), payload: Array("customer data".utf8))
        try await engine.checkpoint()
        try await engine.close()
        #expect(permissions(path) == 0o750)
        expectOwnerOnlyFiles(in: path, "after close")
    }
}
