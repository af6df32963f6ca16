// Helpers for the end-to-end tests: spawning the built `hourglass`, talking to it over pipes,
// and reading its JSON lines. No sleeps: every wait is a poll(2) on the child's pipes with an
// overall deadline, done on a thread of its own so that the concurrency pool stays free.

import Foundation
import HourglassTestSupport
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

/// A failure of the harness (a timeout, a missing binary), with everything needed to diagnose it.
struct CLITestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The binary

/// The `hourglass` built next to the test executable (`.build/<triple>/debug/hourglass`), or
/// another product of the package (`hourglass-bench`).
func hourglassBinary(_ name: String = "hourglass") throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { throw CLITestFailure("cannot read /proc/self/exe to find the build directory") }
    let executable = String(decoding: buffer[0 ..< count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    let path = directory + "/" + name
    guard access(path, X_OK) == 0 else {
        throw CLITestFailure("""
            the \(name) binary is missing: expected an executable at \(path) (next to the test \
            executable \(executable)); build it first with `swift build --build-tests` or \
            `swift build --product \(name)`
            """)
    }
    return path
}

// MARK: - JSON

/// A JSON value, decoded strictly (a boolean is not a number, a fraction is not an integer).
enum JSON: Decodable, Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSON].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSON].self)) }
    }

    var int: Int64? { if case let .int(value) = self { value } else { nil } }
    var string: String? { if case let .string(value) = self { value } else { nil } }
    var bool: Bool? { if case let .bool(value) = self { value } else { nil } }
    var number: Double? {
        switch self {
        case let .int(value): Double(value)
        case let .double(value): value
        default: nil
        }
    }

    var description: String {
        switch self {
        case .null: "null"
        case let .bool(value): "\(value)"
        case let .int(value): "\(value)"
        case let .double(value): "\(value)"
        case let .string(value): value.count > 80 ? "\"\(value.prefix(80))...\" (\(value.utf8.count) bytes)" : "\"\(value)\""
        case let .array(values): "[" + values.map(\.description).joined(separator: ",") + "]"
        case let .object(fields): "{" + fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
    }

    /// One line of output as a JSON object, or nil when it is not one.
    static func object(_ line: String) -> [String: JSON]? {
        guard case let .object(fields)? = try? JSONDecoder().decode(JSON.self, from: Data(line.utf8)) else { return nil }
        return fields
    }
}

typealias Event = [String: JSON]

extension Dictionary where Key == String, Value == JSON {
    var keySet: Set<String> { Set(keys) }
    var short: String { JSON.object(self).description }
}

/// A JSON string literal, for building input lines.
func quoted(_ text: String) -> String {
    String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
}

/// Milliseconds since the Unix epoch, from the wall clock (as `fired_at` is).
func nowMilliseconds() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
}

// MARK: - Running a thread off the concurrency pool

private final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Starts `body` on a new detached thread.
func startDetachedThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, box)
    precondition(result == 0, "cannot start a thread")
    pthread_detach(thread)
}

/// Runs a blocking `body` on a new thread and waits for it without holding a pool thread.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        startDetachedThread { continuation.resume(returning: body()) }
    }
}

// MARK: - A running hourglass

/// One `hourglass` child process with its stdin, stdout and stderr on pipes. Input is queued by
/// `send` and written while waiting; output is collected while waiting. Calls must not overlap
/// (each test drives its process from one task). A process still running when this object goes
/// away is killed (SIGKILL) and reaped, so a failed test leaves no engine holding a directory.
final class HourglassProcess: @unchecked Sendable {
    let arguments: [String]
    let pid: pid_t
    private var input: Int32
    private var output: Int32
    private var errors: Int32
    private var pendingInput: [UInt8] = []
    private var closeInputWhenSent = false
    private var stdoutBytes: [UInt8] = []
    private var stderrBytes: [UInt8] = []
    private var parsedUpTo = 0
    private(set) var lines: [String] = []
    /// Each line of stdout parsed (nil for a line that is not a JSON object).
    private(set) var parsed: [Event?] = []
    /// The exit code, or 128 + the signal that ended it.
    private(set) var status: Int32?

    // A glibc function Swift does not import.
    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    private static let pipe2 = ChildProcess.symbol("pipe2", Pipe2.self)
    // And the pseudo-terminal calls (behind _XOPEN_SOURCE in glibc's headers).
    private typealias OpenPT = @convention(c) (Int32) -> Int32
    private typealias PTCall = @convention(c) (Int32) -> Int32
    private typealias PTSName = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?

    /// Starts `binary arguments...`. With `stderrTerminal`, the child's stderr is a
    /// pseudo-terminal (so `isatty(2)` holds there), read here like the pipes.
    init(_ arguments: [String], binary name: String = "hourglass", stderrTerminal: Bool = false) throws {
        let binary = try hourglassBinary(name)
        self.arguments = arguments
        // Writing to a child that died must be an error here, not a signal that ends the tests.
        Glibc.signal(SIGPIPE, SIG_IGN)

        var stdinPipe: [Int32] = [-1, -1], stdoutPipe: [Int32] = [-1, -1], stderrPipe: [Int32] = [-1, -1]
        // Close-on-exec from the start (pipe2), so that no child spawned meanwhile, by this test
        // or another, inherits these ends: it would hold a pipe open and hide the end of input.
        guard let pipe2 = Self.pipe2 else { throw CLITestFailure("pipe2 is not in libc") }
        guard pipe2(&stdinPipe, O_CLOEXEC) == 0, pipe2(&stdoutPipe, O_CLOEXEC) == 0 else {
            throw CLITestFailure("pipe2 failed: errno \(errno)")
        }
        if stderrTerminal {
            // A pseudo-terminal: the child writes to the slave, this side reads the master.
            guard let openpt = ChildProcess.symbol("posix_openpt", OpenPT.self), let grantpt = ChildProcess.symbol("grantpt", PTCall.self),
                  let unlockpt = ChildProcess.symbol("unlockpt", PTCall.self), let ptsname = ChildProcess.symbol("ptsname", PTSName.self) else {
                throw CLITestFailure("the pseudo-terminal calls are not in libc")
            }
            let master = openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard master >= 0, grantpt(master) == 0, unlockpt(master) == 0, let name = ptsname(master) else {
                throw CLITestFailure("cannot open a pseudo-terminal: errno \(errno)")
            }
            let slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard slave >= 0 else { throw CLITestFailure("cannot open \(String(cString: name)): errno \(errno)") }
            // No echo, no newline translation: the bytes come back as written.
            var settings = termios()
            tcgetattr(slave, &settings)
            cfmakeraw(&settings)
            tcsetattr(slave, TCSANOW, &settings)
            stderrPipe = [master, slave]
        } else if pipe2(&stderrPipe, O_CLOEXEC) != 0 {
            throw CLITestFailure("pipe2 failed: errno \(errno)")
        }
        // The child gets nothing but 0, 1 and 2, whatever other code in this process opened,
        // and a clean signal state.
        let spawned = Result { () throws(ChildProcess.SpawnFailure) in
            try ChildProcess.spawn(
                [binary] + arguments,
                files: [.duplicate(stdinPipe[0], as: 0), .duplicate(stdoutPipe[1], as: 1), .duplicate(stderrPipe[1], as: 2)])
        }
        close(stdinPipe[0]); close(stdoutPipe[1]); close(stderrPipe[1])
        switch spawned {
        case let .success(child):
            pid = child
        case let .failure(failure):
            close(stdinPipe[1]); close(stdoutPipe[0]); close(stderrPipe[0])
            throw CLITestFailure(failure.description)
        }
        input = stdinPipe[1]
        output = stdoutPipe[0]
        errors = stderrPipe[0]
        for fd in [input, output, errors] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        }
        for fd in [input, output, errors] where fd >= 0 { close(fd) }
    }

    var command: String { "hourglass " + arguments.joined(separator: " ") }
    var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    var stderr: String { String(decoding: stderrBytes, as: UTF8.self) }
    /// stdout and stderr together, for messages that may go to either.
    var allOutput: String { stdout + stderr }
    /// Every line of stdout that parsed as a JSON object.
    var events: [Event] { parsed.compactMap { $0 } }

    /// Queues a line (a newline is added) for the child's stdin.
    func send(_ line: String) {
        precondition(!closeInputWhenSent, "input already closed")
        pendingInput += Array(line.utf8) + [0x0A]
    }

    func send(_ lines: [String]) { for line in lines { send(line) } }

    /// Closes stdin once everything queued is written.
    func closeInput() { closeInputWhenSent = true }

    /// Sends a signal (nothing once the process is reaped: its pid may be someone else's).
    func signal(_ number: Int32) {
        guard status == nil else { return }
        kill(pid, number)
    }

    /// Waits until `done` holds for the events so far. Throws when the output ends first or the
    /// timeout passes (with everything the process wrote, to diagnose it).
    @discardableResult
    func waitForEvents(_ what: String, timeout: Duration = .seconds(20), _ done: @escaping @Sendable ([Event]) -> Bool) async throws -> [Event] {
        let outcome = await onOwnThread { self.pump(timeout: timeout) { done(self.events) } }
        guard outcome else {
            let reason = output < 0 ? "its output ended (status \(status.map(String.init) ?? "unknown"))" : "timed out after \(timeout)"
            throw CLITestFailure("\(command): \(reason) waiting for \(what)\n--- stdout:\n\(stdout.prefix(4000))\n--- stderr:\n\(stderr.prefix(4000))")
        }
        return events
    }

    /// Waits for `count` events matching `match` in all.
    @discardableResult
    func waitForEvents(count: Int, _ what: String, timeout: Duration = .seconds(20), where match: @escaping @Sendable (Event) -> Bool) async throws -> [Event] {
        try await waitForEvents("\(count) \(what)", timeout: timeout) { events in events.count(where: match) >= count }
    }

    /// Moves queued input and reads output for `duration` (less once nothing more can happen:
    /// the process exited and its output ended), without waiting for anything in particular.
    func pumpOutput(for duration: Duration) async {
        _ = await onOwnThread { self.pump(timeout: duration) { false } }
    }

    /// Waits for the process to exit with its output read to the end; returns its status. On a
    /// timeout the process is killed and the test fails with what it wrote.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let exited = await onOwnThread { self.pump(timeout: timeout) { self.status != nil && self.output < 0 && self.errors < 0 } }
        guard exited, let status else {
            kill(pid, SIGKILL)
            _ = await onOwnThread { self.pump(timeout: .seconds(5)) { self.status != nil } }
            throw CLITestFailure("\(command) did not exit within \(timeout) (killed it)\n--- stdout:\n\(stdout.prefix(4000))\n--- stderr:\n\(stderr.prefix(4000))")
        }
        return status
    }

    /// Closes stdin (after what is queued) and waits for the exit.
    @discardableResult
    func finish(timeout: Duration = .seconds(20)) async throws -> Int32 {
        closeInput()
        return try await waitForExit(timeout: timeout)
    }

    // MARK: Moving bytes (on the waiting thread)

    /// Writes queued input and reads output until `done()` holds (true) or the timeout passes
    /// or nothing more can happen (false).
    private func pump(timeout: Duration, _ done: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if done() { return true }
            if input >= 0 && pendingInput.isEmpty && closeInputWhenSent {
                close(input)
                input = -1
            }
            reap()
            if done() { return true }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return false }
            let (seconds, attoseconds) = remaining.components
            var wait = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            if output < 0 && errors < 0 {
                // Output ended: only the exit is left to see, and poll cannot wait for a pid.
                if status != nil { return done() }
                wait = min(wait, 2)
            }
            var fds: [pollfd] = []
            if input >= 0 && !pendingInput.isEmpty { fds.append(pollfd(fd: input, events: Int16(POLLOUT), revents: 0)) }
            if output >= 0 { fds.append(pollfd(fd: output, events: Int16(POLLIN), revents: 0)) }
            if errors >= 0 { fds.append(pollfd(fd: errors, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), wait)
            if ready < 0 && errno != EINTR { return false }
            for fd in fds where fd.revents != 0 {
                if fd.fd == input { writeInput() }
                else if fd.fd == output { if !drain(output, into: &stdoutBytes) { close(output); output = -1 }; parseLines() }
                else if fd.fd == errors { if !drain(errors, into: &stderrBytes) { close(errors); errors = -1 } }
            }
        }
    }

    private func writeInput() {
        let written = pendingInput.withUnsafeBytes { Glibc.write(input, $0.baseAddress, $0.count) }
        if written > 0 {
            pendingInput.removeFirst(written)
        } else if written < 0 && errno != EAGAIN && errno != EINTR {
            // The child closed its stdin (it exited): drop the rest.
            pendingInput = []
            close(input)
            input = -1
        }
    }

    /// Reads what is there; false at the end of the stream.
    private func drain(_ fd: Int32, into bytes: inout [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 { bytes += buffer[0 ..< count]; continue }
            if count == 0 { return false }
            return errno == EAGAIN || errno == EINTR
        }
    }

    private func reap() {
        guard status == nil else { return }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        guard result == pid else { return }
        let signal = raw & 0x7F
        status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
    }

    private func parseLines() {
        while let newline = stdoutBytes[parsedUpTo...].firstIndex(of: 0x0A) {
            let line = String(decoding: stdoutBytes[parsedUpTo ..< newline], as: UTF8.self)
            lines.append(line)
            parsed.append(JSON.object(line))
            parsedUpTo = newline + 1
        }
    }
}

// MARK: - Common runs

/// What a finished command did.
struct Outcome: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    var lines: [String]
    var events: [Event]
    var parsed: [Event?]
    var all: String { stdout + stderr }
    var report: String { "status \(status)\n--- stdout:\n\(stdout.prefix(4000))\n--- stderr:\n\(stderr.prefix(4000))" }
}

/// Runs `hourglass arguments...` with `input` on stdin (then closed) to its exit.
func hourglass(_ arguments: [String], input: [String] = [], timeout: Duration = .seconds(20)) async throws -> Outcome {
    let process = try HourglassProcess(arguments)
    process.send(input)
    let status = try await process.finish(timeout: timeout)
    return Outcome(status: status, stdout: process.stdout, stderr: process.stderr, lines: process.lines, events: process.events, parsed: process.parsed)
}

/// `hourglass run --dir DIR --exit-when-idle [--durability D]` over `input`.
func runToIdle(_ dir: String, durability: String? = nil, _ input: [String], timeout: Duration = .seconds(20)) async throws -> Outcome {
    var arguments = ["run", "--dir", dir, "--exit-when-idle"]
    if let durability { arguments += ["--durability", durability] }
    return try await hourglass(arguments, input: input, timeout: timeout)
}

/// A schedule command line.
func scheduleLine(_ id: String, at: Int64? = nil, afterMS: Int64? = nil, payload: String? = nil, payloadB64: String? = nil) -> String {
    var fields = [#""op":"schedule""#, #""id":"# + quoted(id)]
    if let at { fields.append(#""at":\#(at)"#) }
    if let afterMS { fields.append(#""after_ms":\#(afterMS)"#) }
    if let payload { fields.append(#""payload":"# + quoted(payload)) }
    if let payloadB64 { fields.append(#""payload_b64":"# + quoted(payloadB64)) }
    return "{" + fields.joined(separator: ",") + "}"
}

func cancelLine(_ id: String) -> String { #"{"op":"cancel","id":"# + quoted(id) + "}" }

func isDurable(_ op: String, _ id: String) -> @Sendable (Event) -> Bool {
    { $0["event"] == .string("durable") && $0["op"] == .string(op) && $0["id"] == .string(id) }
}

func isFired(_ id: String) -> @Sendable (Event) -> Bool {
    { $0["event"] == .string("fired") && $0["id"] == .string(id) }
}

let isError: @Sendable (Event) -> Bool = { $0["event"] == .string("error") }

/// Fills `dir` through `hourglass run --durability always`: each line is sent once the one
/// before it is durable (so each lands in a frame of its own), then stdin is closed and the run
/// is ended with SIGTERM, which must close it cleanly (exit 0).
func populate(_ dir: String, _ commands: [(line: String, op: String, id: String)]) async throws {
    let process = try HourglassProcess(["run", "--dir", dir, "--durability", "always"])
    for (index, command) in commands.enumerated() {
        process.send(command.line)
        let (op, id) = (command.op, command.id)
        let expected = commands[...index].count { $0.op == op && $0.id == id }
        try await process.waitForEvents(count: expected, "durable \(op) of \(id)", where: isDurable(op, id))
    }
    process.closeInput()
    process.signal(SIGTERM)
    let status = try await process.waitForExit()
    guard status == 0, process.events.allSatisfy({ $0["event"] == .string("durable") }) else {
        throw CLITestFailure("populating \(dir): status \(status)\n--- stdout:\n\(process.stdout)\n--- stderr:\n\(process.stderr)")
    }
}

/// Far-future timers for a directory: ids, deadlines, payloads.
struct FarTimer: Sendable {
    var id: String
    var deadline: Int64
    var payload: String
    var line: String { scheduleLine(id, at: deadline, payload: payload) }
}

func farTimers(_ count: Int, prefix: String = "far") -> [FarTimer] {
    let base = nowMilliseconds() + 86_400_000  // tomorrow
    return (0 ..< count).map { FarTimer(id: "\(prefix)-\($0)", deadline: base + Int64(count - $0) * 60_000, payload: "payload \($0) \u{e9}") }
}

func files(in path: String) -> [String] {
    guard let handle = opendir(path) else { return [] }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// The frames of a log segment, as (offset, total length), walking from the 64-byte header
/// (FORMAT.md: a 32-byte header with the magic "HGLF" and the stored body length at 8).
func frames(ofSegment bytes: [UInt8]) -> [(offset: Int, length: Int, header: Int)] {
    // Docs/FORMAT.md: a compact header (0x68, 15 bytes, 12-bit stored length at byte 3) or a
    // long one ("HGLF", 40 bytes, u32 stored length at byte 8).
    var frames: [(Int, Int, Int)] = []
    var offset = 64
    while offset + 15 <= bytes.count {
        if bytes[offset] == 0x68 {
            let stored = (Int(bytes[offset + 3]) | Int(bytes[offset + 4]) << 8) & 0xFFF
            frames.append((offset, 15 + stored, 15))
            offset += 15 + stored
        } else if offset + 40 <= bytes.count, Array(bytes[offset ..< offset + 4]) == Array("HGLF".utf8) {
            let stored = Int(bytes[offset + 8]) | Int(bytes[offset + 9]) << 8 | Int(bytes[offset + 10]) << 16 | Int(bytes[offset + 11]) << 24
            frames.append((offset, 40 + stored, 40))
            offset += 40 + stored
        } else {
            break
        }
    }
    return frames
}
