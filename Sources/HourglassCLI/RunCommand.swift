import ArgumentParser
import Dispatch
import Hourglass
import HourglassStorage
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `hourglass run`: an engine over a directory, driven by NDJSON on stdin, reporting NDJSON
/// events on stdout. The names and fields are a contract (see README and Docs/COMMAND.md).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an engine over a directory, reading commands from stdin and writing events to stdout, one JSON object per line.",
        discussion: """
            Commands:
              {"op":"schedule","id":"order-1","at":1763791200000,"payload":"..."}
                ("after_ms":1800000 may stand instead of "at"; "payload_b64" carries bytes)
              {"op":"schedule","id":"poll-7","every_ms":60000,"count":3}
              {"op":"schedule","id":"sweep","cron":"30 2 * * *","tz":"Europe/Berlin"}
                (recurring: "at"/"after_ms" name the first occurrence; "misfire" is
                "fire_once_now" (default), "fire_all" or "skip")
              {"op":"cancel","id":"order-1"}
            Events:
              {"event":"durable","op":"schedule","id":"order-1"}
              {"event":"durable","op":"cancel","id":"order-1","found":true}
              {"event":"fired","id":"order-1","deadline":1763791200000,"fired_at":1763791200001,"attempt":1,"payload":"..."}
                (a recurring timer's also carry "occurrence", its scheduled time, and "coalesced")
              {"event":"error","line":N,"message":"..."}
            A durable event is written once the change is durable under --durability. A fired timer \
            is acknowledged only after its line is written. At the end of stdin, --exit-when-idle \
            exits 0 once nothing is pending or in flight; otherwise the command runs until SIGINT \
            or SIGTERM and then closes the directory cleanly.
            """)

    @Option(help: "The engine's directory (created if missing). Not with --postgres.")
    var dir: String?

    @Option(help: "Run a node of a fleet on this PostgreSQL (postgres://user[:password]@host[:port][/database]) instead of a directory.")
    var postgres: String?

    @Option(help: "With --postgres: this node's name in the fleet (unique, stable across restarts).")
    var node: String?

    @Option(help: "With --postgres: the lease, in milliseconds (default 5000).")
    var leaseMs: Int?

    @Option(help: "always, interval:MS or none.")
    var durability: String = "interval:10"

    @Flag(help: "At the end of stdin, exit once no timer is pending or in flight.")
    var exitWhenIdle = false

    @Option(help: "Partitions, when the directory is created (default: what the directory records, or 1).")
    var partitions: Int?

    func validate() throws {
        if let partitions, partitions < 1 || partitions > 256 { throw ValidationError("--partitions must be 1 ... 256, not \(partitions)") }
        if postgres != nil {
            if dir != nil { throw ValidationError("--postgres runs a fleet node, whose partitions live in PostgreSQL: drop --dir") }
            guard let node, !node.isEmpty else { throw ValidationError("--postgres needs --node NAME (this node's name in the fleet)") }
            if durability != "interval:10" && durability != "replicated" {
                throw ValidationError("a fleet node runs under durability replicated, not '\(durability)'")
            }
            if let leaseMs, leaseMs < 100 || leaseMs > 3_600_000 { throw ValidationError("--lease-ms must be 100 ... 3600000, not \(leaseMs)") }
            return
        }
        if dir == nil { throw ValidationError("give --dir DIRECTORY (a local engine) or --postgres URL --node NAME (a fleet node)") }
        if node != nil || leaseMs != nil { throw ValidationError("--node and --lease-ms go with --postgres") }
        _ = try parseDurability(durability)
    }

    func run() async throws {
        if let postgres, let node { return try await runFleetNode(url: postgres, node: node) }
        let dir = dir!
        let policy = try parseDurability(durability)
        let stop = StopSignal()
        let sources = Self.handleSignals(stop)
        defer { for source in sources { source.cancel() } }

        let engine: HourglassEngine
        let opening = ProgressLine("run: opening \(dir)")
        do throws(HourglassError) {
            var configuration = Configuration.directory(dir, durability: policy)
            if let partitions {
                configuration.partitions = partitions
            } else {
                configuration.partitions = try HourglassEngine.recordedPartitions(at: dir) ?? 1
            }
            engine = try await HourglassEngine.open(configuration, progress: { opening.show($0) })
        } catch {
            opening.finish()
            throw fail(error, dir)
        }
        opening.finish()
        let output = Output()
        let outstanding = Counter()
        let consumer = Self.startConsumer(engine, output)
        await Self.readCommands(engine, output, outstanding, stop)

        // End of input (or a signal).
        while !stop.isFired {
            if exitWhenIdle && outstanding.value == 0 {
                let stats = await engine.stats()
                if stats.pending == 0 && stats.inFlight == 0 && stats.buffered == 0 { break }
            }
            try? await Task.sleep(for: .milliseconds(exitWhenIdle ? 5 : 50))
        }
        do {
            try await engine.close()
        } catch {
            printError("hourglass: closing \(dir): \(error)")
            consumer.cancel()
            throw ExitCode(ExitStatus.failure)
        }
        _ = await consumer.value
    }

    /// Signals end the run cleanly: their default action is ignored, and SIGINT and SIGTERM
    /// fire `stop`.
    static func handleSignals(_ stop: StopSignal) -> [DispatchSourceSignal] {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        return [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.fire() }
            source.resume()
            return source
        }
    }

    /// Deliveries: write the line, then acknowledge.
    static func startConsumer(_ engine: HourglassEngine, _ output: Output) -> Task<Void, Never> {
        Task {
            for await delivery in engine.deliveries {
                output.write(firedLine(delivery))
                engine.submitAck(delivery) { _ in }
            }
        }
    }

    /// A delivery's `fired` line (with `"node"` for a fleet node's).
    static func firedLine(_ delivery: Delivery, node: String? = nil) -> String {
        var line = JSONLine()
        line.string("event", "fired")
        line.string("id", delivery.id.string ?? delivery.id.description)
        line.int("deadline", delivery.deadline.millisecondsSinceEpoch)
        line.int("fired_at", delivery.firedAt.millisecondsSinceEpoch)
        line.int("attempt", delivery.attempt)
        if let occurrence = delivery.occurrence {
            line.int("occurrence", occurrence.millisecondsSinceEpoch)
            line.int("coalesced", delivery.coalesced)
        }
        if let node { line.string("node", node) }
        if let text = delivery.payloadString {
            line.string("payload", text)
        } else {
            line.string("payload_b64", Base64.encode(delivery.payload))
        }
        return line.line
    }

    /// A `durable` line: the command's op and id (and, for a local engine's cancel, whether the
    /// timer was there).
    static func durableLine(_ op: String, _ id: TimerID, found: Bool? = nil) -> String {
        var line = JSONLine()
        line.string("event", "durable")
        line.string("op", op)
        line.string("id", id.string ?? id.description)
        if let found { line.bool("found", found) }
        return line.line
    }

    /// Commands, in order, until the end of stdin or a signal. The lines that arrive together
    /// (one read of stdin) go to the engine as one batch, applied before it fires anything;
    /// each command's result is reported when it is durable.
    static func readCommands(_ engine: HourglassEngine, _ output: Output, _ outstanding: Counter, _ stop: StopSignal) async {
        await readCommands(now: { engine.clock.now() }, output, stop) { commands in
            var submissions: [HourglassEngine.Submission] = []
            for (command, reportError) in commands {
                outstanding.add(1)
                submissions.append(submission(for: command, output, outstanding, reportError: reportError))
            }
            if !submissions.isEmpty { engine.submit(submissions) }
        }
    }

    /// Reads stdin until its end or a signal, handing the commands of each chunk (the lines of
    /// one read), parsed, to `submit`; malformed lines are reported as errors.
    static func readCommands(
        now: () -> Int64, _ output: Output, _ stop: StopSignal,
        submit: ([(Command, @Sendable (String) -> Void)]) -> Void
    ) async {
        let lines = StandardInputLines()
        stop.onFire { lines.finish() }
        var number = 0
        for await chunk in lines.stream {
            if stop.isFired { break }
            var commands: [(Command, @Sendable (String) -> Void)] = []
            for text in chunk {
                number += 1
                if text.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
                let lineNumber = number
                @Sendable func reportError(_ message: String) {
                    var line = JSONLine()
                    line.string("event", "error")
                    line.int("line", lineNumber)
                    line.string("message", message)
                    output.write(line.line)
                }
                let parsed = Result { () throws(CommandError) in try Command(parsing: text, now: now()) }
                guard case let .success(command) = parsed else {
                    if case let .failure(error) = parsed { reportError(error.message) }
                    continue
                }
                commands.append((command, reportError))
            }
            submit(commands)
        }
    }

    /// A command as the engine's submission, whose completion writes the `durable` line (or the
    /// error).
    static func submission(
        for command: Command, _ output: Output, _ outstanding: Counter, reportError: @escaping @Sendable (String) -> Void
    ) -> HourglassEngine.Submission {
        @Sendable func scheduled(_ id: TimerID, _ result: Result<Void, HourglassError>) {
            switch result {
            case .success:
                output.write(durableLine("schedule", id))
            case let .failure(error):
                reportError(error.description)
            }
            outstanding.add(-1)
        }
        switch command {
        case let .schedule(request):
            return .schedule(request) { scheduled(request.id, $0) }
        case let .scheduleRecurring(id, recurrence, first, payload):
            return .scheduleRecurring(id: id, recurrence, startingAt: first, payload: payload) { scheduled(id, $0) }
        case let .cancel(id):
            return .cancel(id) { result in
                switch result {
                case let .success(found):
                    output.write(durableLine("cancel", id, found: found))
                case let .failure(error):
                    reportError(error.description)
                }
                outstanding.add(-1)
            }
        }
    }
}

func parseDurability(_ text: String) throws -> Configuration.Durability {
    switch text {
    case "always": return .always
    case "none": return .none
    default:
        if text.hasPrefix("interval:"), let ms = Int(text.dropFirst("interval:".count)), ms >= 1 {
            return .interval(.milliseconds(ms))
        }
        throw ValidationError("--durability must be always, interval:MS (MS >= 1) or none, not '\(text)'")
    }
}

struct CommandError: Error { var message: String }

/// One line of input, checked.
enum Command {
    case schedule(TimerRequest)
    case scheduleRecurring(TimerID, Recurrence, first: Deadline?, payload: [UInt8])
    case cancel(TimerID)

    init(parsing text: String, now: Int64) throws(CommandError) {
        let object: [String: JSONValue]
        do {
            object = try JSONObject.parse(text)
        } catch {
            throw CommandError(message: "malformed JSON: \(error.description)")
        }
        guard case let .string(op)? = object["op"] else { throw CommandError(message: "missing \"op\" (\"schedule\" or \"cancel\")") }
        guard case let .string(idText)? = object["id"] else { throw CommandError(message: "missing \"id\" (a string)") }
        guard !idText.isEmpty else { throw CommandError(message: "\"id\" is empty") }
        let id = TimerID(idText)
        switch op {
        case "cancel":
            self = .cancel(id)
        case "schedule":
            let recurrence = try Command.recurrence(object)
            let deadline: Int64?
            switch (object["at"], object["after_ms"]) {
            case (nil, nil) where recurrence != nil:
                deadline = nil  // the rule's first occurrence
            case let (.integer(at)?, nil):
                deadline = at
            case let (nil, .integer(after)?):
                guard after >= 0 else { throw CommandError(message: "\"after_ms\" must not be negative") }
                let (sum, overflow) = now.addingReportingOverflow(after)
                guard !overflow else { throw CommandError(message: "\"after_ms\" is too large") }
                deadline = sum
            case (nil, nil):
                throw CommandError(message: "a schedule needs \"at\" (ms since the epoch) or \"after_ms\"")
            case (.some, .some):
                throw CommandError(message: "give \"at\" or \"after_ms\", not both")
            default:
                throw CommandError(message: "\"at\" and \"after_ms\" must be integers")
            }
            var payload: [UInt8] = []
            switch (object["payload"], object["payload_b64"]) {
            case let (.string(text)?, nil): payload = Array(text.utf8)
            case let (nil, .string(text)?):
                guard let bytes = Base64.decode(text) else { throw CommandError(message: "\"payload_b64\" is not valid base64") }
                payload = bytes
            case (nil, nil), (.null?, nil): break
            case (.some, .some): throw CommandError(message: "give \"payload\" or \"payload_b64\", not both")
            default: throw CommandError(message: "\"payload\" must be a string")
            }
            if let recurrence {
                self = .scheduleRecurring(id, recurrence, first: deadline.map { Deadline(millisecondsSinceEpoch: $0) }, payload: payload)
            } else if let deadline {
                self = .schedule(TimerRequest(id: id, deadline: Deadline(millisecondsSinceEpoch: deadline), payload: payload))
            } else {
                throw CommandError(message: "a schedule needs \"at\" (ms since the epoch) or \"after_ms\"")
            }
        default:
            throw CommandError(message: "unknown op \"\(op)\" (expected \"schedule\" or \"cancel\")")
        }
    }
}

extension Command {
    /// The recurrence a schedule line asks for ("every_ms" with "count", or "cron" with "tz"),
    /// or nil for a one-shot timer.
    static func recurrence(_ object: [String: JSONValue]) throws(CommandError) -> Recurrence? {
        var count: Int? = nil
        switch object["count"] {
        case nil, .null?: break
        case let .integer(value)?:
            guard value >= 1 else { throw CommandError(message: "\"count\" must be at least 1") }
            count = Int(value)
        default: throw CommandError(message: "\"count\" must be an integer")
        }
        var misfire = MisfirePolicy.fireOnceNow
        switch object["misfire"] {
        case nil, .null?: break
        case .string("fire_once_now")?: misfire = .fireOnceNow
        case .string("fire_all")?: misfire = .fireAll
        case .string("skip")?: misfire = .skip
        default: throw CommandError(message: "\"misfire\" must be \"fire_once_now\", \"fire_all\" or \"skip\"")
        }
        switch (object["every_ms"], object["cron"]) {
        case (nil, nil):
            if count != nil || object["tz"] != nil || object["misfire"] != nil {
                throw CommandError(message: "\"count\", \"tz\" and \"misfire\" need \"every_ms\" or \"cron\"")
            }
            return nil
        case let (.integer(ms)?, nil):
            guard ms >= 1 else { throw CommandError(message: "\"every_ms\" must be at least 1") }
            if object["tz"] != nil { throw CommandError(message: "\"tz\" goes with \"cron\", not \"every_ms\"") }
            return .every(.milliseconds(ms), count: count, misfire: misfire)
        case let (nil, .string(expression)?):
            var zone = "UTC"
            switch object["tz"] {
            case nil, .null?: break
            case let .string(name)?: zone = name
            default: throw CommandError(message: "\"tz\" must be a string (an IANA zone name such as \"Europe/Berlin\")")
            }
            return .cron(expression, timeZone: zone, count: count, misfire: misfire)
        case (.some, .some):
            throw CommandError(message: "give \"every_ms\" or \"cron\", not both")
        default:
            throw CommandError(message: "\"every_ms\" must be an integer and \"cron\" a string")
        }
    }
}

/// Writes whole lines to stdout, one at a time (unbuffered: out when `write` returns).
final class Output: Sendable {
    private let lock = Mutex(())
    func write(_ line: String) { lock.withLock { _ in writeAll(1, line) } }
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ delta: Int) { count.add(delta, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// SIGINT or SIGTERM arrived: set once, then the registered actions run (ending the input).
final class StopSignal: Sendable {
    private let state = Mutex<(fired: Bool, actions: [@Sendable () -> Void])>((false, []))

    func fire() {
        let actions = state.withLock { state -> [@Sendable () -> Void] in
            state.fired = true
            defer { state.actions.removeAll() }
            return state.actions
        }
        for action in actions { action() }
    }

    /// Runs `action` when the signal comes (at once if it came already).
    func onFire(_ action: @escaping @Sendable () -> Void) {
        let already = state.withLock { state -> Bool in
            if !state.fired { state.actions.append(action) }
            return state.fired
        }
        if already { action() }
    }

    var isFired: Bool { state.withLock { $0.fired } }
}

/// Lines of stdin, in chunks: the lines of one `read(2)` together. Read on a thread of its own
/// (a blocking read must not hold one of the few threads of the concurrency pool).
final class StandardInputLines: Sendable {
    let stream: AsyncStream<[String]>
    private let continuation: AsyncStream<[String]>.Continuation

    init() {
        let (stream, continuation) = AsyncStream<[String]>.makeStream(bufferingPolicy: .unbounded)
        self.stream = stream
        self.continuation = continuation
        startThread(name: "hourglass-stdin") {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                pending += buffer[0 ..< count]
                guard let last = pending.lastIndex(of: UInt8(ascii: "\n")) else { continue }
                let lines = pending[..<last].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                continuation.yield(lines.map { String(decoding: $0, as: UTF8.self) })
                pending.removeSubrange(...last)
            }
            if !pending.isEmpty { continuation.yield([String(decoding: pending, as: UTF8.self)]) }
            continuation.finish()
        }
    }

    /// Ends the stream now (a signal): lines still to come are not read.
    func finish() { continuation.finish() }
}
