import Hourglass
import HourglassTestSupport
import HourglassTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `verify`, `dump`, `inspect`, `checkpoint` and `run` draw progress on stderr when it is a
/// terminal (a pseudo-terminal here), and write nothing there when it is not.
@Suite("Progress on a terminal: the directory commands and run's open")
struct ProgressEndToEndTests {
    /// A closed directory with a ~2.4 MiB checkpoint and ~2.4 MiB of log after it.
    static func largeDirectory() async throws -> TemporaryDirectory {
        let directory = TemporaryDirectory("hourglass-progress")
        var configuration = Configuration.directory(directory.path, durability: .none)
        configuration.segmentBytes = 4 << 20
        let engine = try await HourglassEngine.open(configuration, clock: ManualClock())
        var random = SeededRandom(seed: 7)
        for first in stride(from: 0, to: 8000, by: 500) {
            try await engine.schedule((first ..< first + 500).map { i in
                TimerRequest(id: TimerID("t\(i)"), deadline: Deadline(millisecondsSinceEpoch: 4_000_000_000_000 + Int64(i)),
                             payload: (0 ..< 600).map { _ in UInt8(truncatingIfNeeded: random.next()) })
            })
            if first == 3500 { try await engine.checkpoint() }
        }
        try await engine.close()
        return directory
    }

    /// Runs a command with stderr on a terminal or on a pipe.
    static func run(_ arguments: [String], terminal: Bool) async throws -> (status: Int32, stdout: String, stderr: String) {
        let process = try HourglassProcess(arguments, stderrTerminal: terminal)
        let status = try await process.finish(timeout: .seconds(120))
        return (status, process.stdout, process.stderr)
    }

    /// The progress line was drawn (`\r`, the command's name, a bar) and cleared at the end.
    static func expectDrawn(_ stderr: String, _ command: String, steps: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(stderr.contains("\rhourglass \(command)") || stderr.contains("\r\u{1B}[Khourglass \(command)"), "drawn: \(stderr.debugDescription)", sourceLocation: sourceLocation)
        for step in steps {
            #expect(stderr.contains("] 100% \(step):"), "\(step) reaches 100%: \(stderr.debugDescription)", sourceLocation: sourceLocation)
        }
        #expect(stderr.hasSuffix("\r\u{1B}[K"), "cleared at the end: \(stderr.suffix(80).debugDescription)", sourceLocation: sourceLocation)
    }

    @Test("verify, dump, inspect, checkpoint and run's open draw their progress on a terminal and nothing on a pipe; stdout is the same")
    func progressOnATerminal() async throws {
        // One directory for every command (each is slow in a debug build); checkpoint and run
        // come last, since they change it.
        let directory = try await Self.largeDirectory()
        defer { directory.remove() }
        for command in ["verify", "dump", "inspect"] {
            let drawn = try await Self.run([command, "--dir", directory.path], terminal: true)
            let plain = try await Self.run([command, "--dir", directory.path], terminal: false)
            #expect(drawn.status == 0 && plain.status == 0, "\(command): \(drawn.stderr.suffix(300)) \(plain.stderr)")
            Self.expectDrawn(drawn.stderr, command, steps: ["checkpoint", "log"])
            #expect(drawn.stderr.contains("% log: "), "intermediate log reports: \(drawn.stderr.debugDescription)")
            #expect(plain.stderr.isEmpty, "\(command) on a pipe: \(plain.stderr.debugDescription)")
            #expect(drawn.stdout == plain.stdout, "\(command): stdout does not depend on the terminal")
        }

        // run: once a command is durable the open is over; then a clean stop.
        for terminal in [true, false] {
            let process = try HourglassProcess(["run", "--dir", directory.path], stderrTerminal: terminal)
            process.send(scheduleLine("probe-\(terminal)", at: 4_100_000_000_000))
            try await process.waitForEvents(count: 1, "the probe durable", timeout: .seconds(120), where: isDurable("schedule", "probe-\(terminal)"))
            process.signal(SIGTERM)
            let status = try await process.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "\(process.stderr)")
            if terminal {
                Self.expectDrawn(process.stderr, "run: opening \(directory.path)", steps: ["log"])
            } else {
                #expect(process.stderr.isEmpty, "\(process.stderr.debugDescription)")
            }
        }

        // checkpoint: the open's progress, then its JSON line.
        let drawn = try await Self.run(["checkpoint", "--dir", directory.path], terminal: true)
        #expect(drawn.status == 0, "\(drawn.stderr)")
        Self.expectDrawn(drawn.stderr, "checkpoint", steps: ["log"])
        #expect(drawn.stdout.contains(#""event":"checkpoint""#))
        let plain = try await Self.run(["checkpoint", "--dir", directory.path], terminal: false)
        #expect(plain.status == 0 && plain.stderr.isEmpty, "\(plain.stderr.debugDescription)")
    }
}
