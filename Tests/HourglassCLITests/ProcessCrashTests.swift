import HourglassTestSupport
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

// The real thing, killed for real: `hourglass run --durability always` over a real directory,
// fed schedules and cancels on stdin, killed with SIGKILL at random moments (while it starts
// and recovers, while commands are in flight, right after a timer fired), restarted, and at the
// end run with --exit-when-idle until every timer has fired. Its own output is the record: every
// schedule it reported durable fires exactly once or is durably cancelled, nothing fires after a
// durable cancel, nothing fires early, and a timer fires twice only across a kill (it was in
// flight when the process died). See Docs/TESTING.md.

@Suite("Process crashes: hourglass run killed with SIGKILL")
struct ProcessCrashTests {
    @Test("kill -9 at random moments and restart: every durable schedule fires once or is durably cancelled")
    func killAndRestart() async throws {
        let seed = SeededRandom.testSeed()
        let kills = getEnvironment("HOURGLASS_PROCESS_KILLS").flatMap { Int($0) } ?? 40
        print("ProcessCrashTests: seed \(seed), \(kills) kills (replay the choices with HOURGLASS_SEED=\(seed); the timing differs run to run)")
        guard let binary = ProcessCrash.binary() else {
            Issue.record("the hourglass executable is not next to the test bundle; build it first (swift build)")
            return
        }
        let data = TemporaryDirectory("hourglass-kill")
        let logs = TemporaryDirectory("hourglass-kill-logs")
        // HOURGLASS_PROCESS_KEEP=1 keeps the directory and every run's output and stderr after a
        // failure, for `hourglass dump --dir` and a look at each run.
        let keep = getEnvironment("HOURGLASS_PROCESS_KEEP") == "1"
        var failed = false
        defer {
            if keep && failed {
                print("ProcessCrashTests: kept \(data.path) and \(logs.path)")
            } else {
                data.remove()
                logs.remove()
            }
        }
        let report = await onOwnThread {
            var scenario = ProcessCrash.Scenario(seed: seed, binary: binary, directory: data.path, logs: logs.path)
            scenario.run(kills: kills)
            return scenario.report()
        }
        print("ProcessCrashTests: \(report.summary)")
        failed = !report.problems.isEmpty
        for problem in report.problems {
            Issue.record("\(problem)\nseed \(seed) (HOURGLASS_SEED=\(seed) swift test --filter ProcessCrashTests)\n\(report.tail)")
        }
        #expect(report.kills >= min(kills, 20), "only \(report.kills) kills happened")
        #expect(report.durableSchedules > 0, "no schedule was ever reported durable")
        #expect(report.fired > 0, "nothing fired")
    }
}

/// Everything this file needs, in one namespace (the test target has other helpers).
enum ProcessCrash {
    /// `hourglass`, built next to this test bundle (`.build/<triple>/debug/`).
    static func binary() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let exe = String(decoding: buffer[0 ..< count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = exe.lastIndex(of: "/") else { return nil }
        let candidate = String(exe[..<slash]) + "/hourglass"
        return access(candidate, X_OK) == 0 ? candidate : nil
    }

    static func wallMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    static func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    // MARK: A child process

    /// `hourglass run` with its stdin and stdout on socket pairs (created close-on-exec in one
    /// step, so no other child spawned meanwhile inherits them); stderr goes to a file. A thread
    /// collects stdout lines; waits are on a condition variable, with a bound.
    final class Child: @unchecked Sendable {
        let pid: pid_t
        private var input: Int32
        private let output: Int32
        private var mutex = pthread_mutex_t()
        private var condition = pthread_cond_t()
        private var lines: [String] = []
        private var partial: [UInt8] = []
        private var ended = false
        private var reaped = false
        private(set) var status: Int32 = -1

        init?(binary: String, arguments: [String], stderrPath: String) {
            var stdinPair: [Int32] = [-1, -1]
            var stdoutPair: [Int32] = [-1, -1]
            let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            guard socketpair(AF_UNIX, kind, 0, &stdinPair) == 0 else { return nil }
            guard socketpair(AF_UNIX, kind, 0, &stdoutPair) == 0 else {
                Glibc.close(stdinPair[0])
                Glibc.close(stdinPair[1])
                return nil
            }
            // Descriptors another test may have opened without close-on-exec stay out of it.
            let spawned = Result { () throws(ChildProcess.SpawnFailure) in
                try ChildProcess.spawn(
                    [binary] + arguments,
                    files: [.duplicate(stdinPair[1], as: 0), .duplicate(stdoutPair[1], as: 1),
                            .open(2, path: stderrPath, flags: O_WRONLY | O_CREAT | O_APPEND)])
            }
            Glibc.close(stdinPair[1])
            Glibc.close(stdoutPair[1])
            guard case let .success(child) = spawned else {
                Glibc.close(stdinPair[0])
                Glibc.close(stdoutPair[0])
                return nil
            }
            pid = child
            input = stdinPair[0]
            output = stdoutPair[0]
            pthread_mutex_init(&mutex, nil)
            pthread_cond_init(&condition, nil)
            startDetachedThread { [self] in readAll() }
        }

        deinit {
            if !reaped { kill9() }
            if input >= 0 { Glibc.close(input) }
            pthread_cond_destroy(&condition)
            pthread_mutex_destroy(&mutex)
        }

        private func readAll() {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                pthread_mutex_lock(&mutex)
                if count <= 0 {
                    if !partial.isEmpty { lines.append(String(decoding: partial, as: UTF8.self)) }
                    partial = []
                    ended = true
                } else {
                    for byte in buffer[0 ..< count] {
                        if byte == UInt8(ascii: "\n") {
                            lines.append(String(decoding: partial, as: UTF8.self))
                            partial.removeAll(keepingCapacity: true)
                        } else {
                            partial.append(byte)
                        }
                    }
                }
                pthread_cond_broadcast(&condition)
                pthread_mutex_unlock(&mutex)
                if count <= 0 { break }
            }
            Glibc.close(output)
        }

        /// Writes one line; false once the child is gone.
        @discardableResult
        func send(_ line: String) -> Bool {
            guard input >= 0 else { return false }
            var bytes = Array((line + "\n").utf8)
            var done = 0
            while done < bytes.count {
                let written = bytes.withUnsafeMutableBytes { Glibc.send(input, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += written
            }
            bytes.removeAll()
            return true
        }

        /// Ends the child's input (it sees the end of stdin).
        func closeInput() {
            if input >= 0 { Glibc.close(input) }
            input = -1
        }

        /// The lines so far.
        var collected: [String] {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            return lines
        }

        /// Waits until `done(lines, ended)` holds, at most `seconds`. Returns whether it holds.
        @discardableResult
        func wait(seconds: Double, until done: ([String], Bool) -> Bool) -> Bool {
            let deadline = monotonicSeconds() + seconds
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            while !done(lines, ended) {
                let left = deadline - monotonicSeconds()
                if left <= 0 { return false }
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let nanoseconds = Int(now.tv_nsec) + Int(min(left, 1) * 1e9)
                var until = timespec(tv_sec: now.tv_sec + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
                pthread_cond_timedwait(&condition, &mutex, &until)
            }
            return true
        }

        /// SIGKILL, and reap it.
        func kill9() {
            guard !reaped else { return }
            Glibc.kill(pid, SIGKILL)
            reap()
        }

        /// Waits for the process to end (after its stdout closed) and records its status.
        func reap() {
            guard !reaped else { return }
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            reaped = true
            let signal = raw & 0x7F
            status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
            closeInput()
            // The reader ends when the socket's other end is gone with the process.
            _ = wait(seconds: 10) { _, ended in ended }
        }
    }

    // MARK: Events

    /// A flat JSON object as `hourglass run` prints one: string, integer and boolean values.
    static func parse(_ line: String) -> [String: String]? {
        var fields: [String: String] = [:]
        let bytes = Array(line.utf8)
        var i = 0
        func skipSpace() { while i < bytes.count && (bytes[i] == 0x20 || bytes[i] == 0x09) { i += 1 } }
        func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") {
                    i += 1
                    guard i < bytes.count else { return nil }
                    switch bytes[i] {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "u"):
                        guard i + 4 < bytes.count, let scalar = UInt32(String(decoding: bytes[i + 1 ... i + 4], as: UTF8.self), radix: 16) else { return nil }
                        out += Array(String(Character(Unicode.Scalar(scalar) ?? "?")).utf8)
                        i += 4
                    default: out.append(bytes[i])
                    }
                } else {
                    out.append(bytes[i])
                }
                i += 1
            }
            guard i < bytes.count else { return nil }
            i += 1
            return String(decoding: out, as: UTF8.self)
        }
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        skipSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "}") { return fields }
        while true {
            skipSpace()
            guard let key = string() else { return nil }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skipSpace()
            if let value = string() {
                fields[key] = value
            } else {
                let start = i
                while i < bytes.count && bytes[i] != UInt8(ascii: ",") && bytes[i] != UInt8(ascii: "}") { i += 1 }
                fields[key] = String(decoding: bytes[start ..< i], as: UTF8.self).trimmingSpaces
            }
            skipSpace()
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "}") {
                i += 1
                skipSpace()
                return i == bytes.count ? fields : nil
            }
            guard bytes[i] == UInt8(ascii: ",") else { return nil }
            i += 1
        }
    }

    struct Report: Sendable {
        var problems: [String] = []
        var summary = ""
        var tail = ""
        var kills = 0
        var durableSchedules = 0
        var fired = 0
    }

    // MARK: The scenario

    struct Scenario {
        struct Sent {
            var deadline: Int64
            var run: Int
        }

        struct Event {
            var run: Int
            var fields: [String: String]
        }

        var random: SeededRandom
        let binary: String
        let directory: String
        let logs: String
        var sent: [String: Sent] = [:]
        var order: [String] = []
        /// The runs in which a cancel of each id was sent (answered or not).
        var cancelsSent: [String: [Int]] = [:]
        var events: [Event] = []
        var problems: [String] = []
        var kills = 0
        var killMoments: [String: Int] = [:]
        var run = 0
        let started = monotonicSeconds()

        init(seed: UInt64, binary: String, directory: String, logs: String) {
            random = SeededRandom(seed: seed)
            self.binary = binary
            self.directory = directory
            self.logs = logs
        }

        mutating func below(_ n: Int) -> Int { Int(random.next() % UInt64(max(1, n))) }

        func spawn(_ extra: [String] = []) -> Child? {
            Child(binary: binary, arguments: ["run", "--dir", directory, "--durability", "always"] + extra,
                  stderrPath: logs + "/stderr-\(run).txt")
        }

        mutating func record(_ child: Child) {
            let lines = child.collected
            writeFile(logs + "/stdout-\(run).txt", Array(lines.joined(separator: "\n").utf8))
            for line in lines where !line.isEmpty {
                guard let fields = ProcessCrash.parse(line) else {
                    problems.append("run \(run): a line that is not a JSON object: \(line)")
                    continue
                }
                events.append(Event(run: run, fields: fields))
            }
        }

        mutating func commands() -> [String] {
            var lines: [String] = []
            for _ in 0 ..< 3 + below(18) {
                if !order.isEmpty && below(4) == 0 {
                    let id = order[below(order.count)]
                    cancelsSent[id, default: []].append(run)
                    lines.append(#"{"op":"cancel","id":"\#(id)"}"#)
                } else {
                    let id = "r\(run)-\(lines.count)"
                    let deadline = wallMilliseconds() + Int64(below(301))
                    sent[id] = Sent(deadline: deadline, run: run)
                    order.append(id)
                    lines.append(#"{"op":"schedule","id":"\#(id)","at":\#(deadline)}"#)
                }
            }
            return lines
        }

        mutating func run(kills wanted: Int) {
            Glibc.signal(SIGPIPE, SIG_IGN)
            while kills < wanted {
                run += 1
                guard let child = spawn() else {
                    problems.append("run \(run): cannot start \(binary)")
                    return
                }
                let moment: String
                switch below(10) {
                case 0:
                    // While it starts and recovers.
                    moment = "at start"
                case 1, 2, 3:
                    // With commands in flight: written, not yet answered.
                    for line in commands() { child.send(line) }
                    moment = "commands in flight"
                case 4, 5, 6:
                    // After some of them were reported durable.
                    let lines = commands()
                    for line in lines { child.send(line) }
                    let wanted = 1 + below(lines.count)
                    child.wait(seconds: 10) { lines, ended in ended || lines.filter { $0.contains(#""event":"durable""#) }.count >= wanted }
                    moment = "after \(wanted) durable events"
                default:
                    // Right after a timer fired: its ack may not be durable yet.
                    for line in commands() { child.send(line) }
                    let found = child.wait(seconds: 5) { lines, ended in ended || lines.contains { $0.contains(#""event":"fired""#) } }
                    moment = found ? "right after a firing" : "after 5 s without a firing"
                }
                child.kill9()
                kills += 1
                killMoments[moment.hasPrefix("after") && moment.hasSuffix("durable events") ? "after durable events" : moment, default: 0] += 1
                if child.status != 128 + SIGKILL {
                    problems.append("run \(run): the process ended with status \(child.status) before it was killed (see its stderr)")
                }
                record(child)
            }
            // The last run: no more input; it exits once nothing is pending or in flight.
            run += 1
            guard let child = spawn(["--exit-when-idle"]) else {
                problems.append("the final run cannot start")
                return
            }
            child.closeInput()
            if !child.wait(seconds: 30, until: { _, ended in ended }) {
                problems.append("the final run (--exit-when-idle) did not finish within 30 s: some timer never fired or stayed in flight")
                child.kill9()
            } else {
                child.reap()
                if child.status != 0 { problems.append("the final run exited with status \(child.status)") }
            }
            record(child)
        }

        func stderr(of run: Int) -> String {
            let bytes = readFile(logs + "/stderr-\(run).txt")
            return String(decoding: bytes.suffix(2000), as: UTF8.self)
        }

        func report() -> Report {
            var report = Report()
            report.problems = problems
            report.kills = kills
            var durable: [String: Int] = [:]
            var cancels: [String: [(index: Int, found: Bool)]] = [:]
            var fires: [String: [(index: Int, run: Int, deadline: Int64, firedAt: Int64, attempt: Int)]] = [:]
            for (index, event) in events.enumerated() {
                let fields = event.fields
                let id = fields["id"] ?? ""
                switch (fields["event"], fields["op"]) {
                case ("durable", "schedule"):
                    if durable[id] == nil { durable[id] = index }
                case ("durable", "cancel"):
                    cancels[id, default: []].append((index, fields["found"] == "true"))
                case ("fired", _):
                    guard let deadline = fields["deadline"].flatMap({ Int64($0) }), let firedAt = fields["fired_at"].flatMap({ Int64($0) }),
                          let attempt = fields["attempt"].flatMap({ Int($0) })
                    else {
                        report.problems.append("run \(event.run): a fired event without deadline, fired_at or attempt: \(fields)")
                        continue
                    }
                    fires[id, default: []].append((index, event.run, deadline, firedAt, attempt))
                case ("error", _):
                    report.problems.append("run \(event.run): the command reported an error: \(fields["message"] ?? "")")
                default:
                    report.problems.append("run \(event.run): an unknown event: \(fields)")
                }
            }
            for (id, list) in fires where sent[id] == nil {
                report.problems.append("\(id) fired \(list.count) times but was never scheduled")
            }
            var duplicates = 0
            for id in order {
                let sentTimer = sent[id]!
                let fired = fires[id] ?? []
                let cancelled = cancels[id] ?? []
                for fire in fired {
                    if fire.deadline != sentTimer.deadline {
                        report.problems.append("\(id) fired with deadline \(fire.deadline), scheduled for \(sentTimer.deadline)")
                    }
                    if fire.firedAt < fire.deadline {
                        report.problems.append("\(id) fired at \(fire.firedAt), \(fire.deadline - fire.firedAt) ms before its deadline")
                    }
                    if let cancel = cancelled.first(where: { $0.index < fire.index }) {
                        report.problems.append("\(id) fired (run \(fire.run), attempt \(fire.attempt)) after a durable cancel (found \(cancel.found)) in run \(events[cancel.index].run)")
                    }
                }
                // Twice only across a kill: never twice in one run.
                for (earlier, later) in zip(fired, fired.dropFirst()) {
                    duplicates += 1
                    if earlier.run == later.run {
                        report.problems.append("\(id) fired twice in run \(later.run) (attempts \(earlier.attempt), \(later.attempt))")
                    }
                    // Redelivered with the next attempt when its FIRE record was durable, with the
                    // same one when it was not: never a lower one.
                    if later.attempt < earlier.attempt {
                        report.problems.append("\(id) fired with attempt \(later.attempt) in run \(later.run) after attempt \(earlier.attempt) in run \(earlier.run)")
                    }
                }
                if let durableIndex = durable[id] {
                    // A cancel that was sent may have taken effect without its durable event
                    // (the kill came between the sync and the output): only a timer that no
                    // cancel was sent for must fire.
                    let sentCancels = cancelsSent[id] ?? []
                    if fired.isEmpty && sentCancels.isEmpty {
                        report.problems.append("LOST: \(id) was reported durable in run \(events[durableIndex].run) (deadline \(sentTimer.deadline)), never fired, and no cancel was sent for it")
                    }
                    // A cancel finds the timer unless it had fired (and was acknowledged) or an
                    // earlier cancel took it.
                    for cancel in cancelled where !cancel.found && cancel.index > durableIndex
                        && !fired.contains(where: { $0.index < cancel.index })
                        && sentCancels.filter({ $0 <= events[cancel.index].run }).count < 2 {
                        report.problems.append("\(id) was durably scheduled (run \(events[durableIndex].run)), but the only cancel sent for it (run \(events[cancel.index].run)) did not find it, and it had not fired")
                    }
                }
            }
            report.durableSchedules = durable.count
            report.fired = fires.values.reduce(0) { $0 + $1.count }
            let moments = killMoments.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            report.summary = "\(kills) kills (\(moments)) in \(run) runs, \(Int(monotonicSeconds() - started)) s; \(sent.count) schedules sent, \(durable.count) reported durable, \(cancels.values.reduce(0) { $0 + $1.count }) durable cancels, \(report.fired) firings (\(duplicates) repeated across a kill)"
            if !report.problems.isEmpty {
                // The history of every id named in a problem, and what was sent.
                var named = Set<String>()
                for problem in report.problems {
                    for word in problem.split(whereSeparator: { $0 == " " || $0 == ":" }) where sent[String(word)] != nil { named.insert(String(word)) }
                }
                var text = ""
                for id in named.sorted() {
                    text += "\(id): sent in run \(sent[id]!.run), deadline \(sent[id]!.deadline)\n"
                    for (index, event) in events.enumerated() where event.fields["id"] == id {
                        text += "  #\(index) run \(event.run): \(event.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))\n"
                    }
                }
                report.tail = text + "stderr of the final run:\n" + stderr(of: run)
            }
            return report
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var slice = Substring(self)
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return String(slice)
    }
}
