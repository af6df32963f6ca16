// End-to-end tests of the directory commands (dump, inspect, verify, checkpoint), the lock,
// --help, argument errors and the demo: the built binary, run as a script would run it.

import Foundation
import HourglassTestSupport
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

@Suite("hourglass directory commands, end to end")
struct DirectoryEndToEndTests {
    /// dump, inspect and verify scan the zero tail of every 64 MiB segment byte by byte (the
    /// read-only branch of LogRecovery.zero): about 6 s of CPU per call in a debug build, tens of
    /// seconds on a busy machine. They get a longer timeout, and the tests call them as little
    /// as they can (a second `run` checks recovery instead of `dump` where it can).
    static let slow: Duration = .seconds(120)

    static let inspectKeys: Set<String> = ["pending", "in_flight", "next_deadline", "log_bytes", "segments", "checkpoint_sequence", "compression_ratio"]

    /// A directory holding `timers` (far in the future), a cancelled timer and, when asked, a
    /// timer whose payload is not UTF-8; written by `hourglass run` and closed with SIGTERM.
    static func populated(_ tmp: TemporaryDirectory, _ timers: [FarTimer], binary: (id: String, deadline: Int64, bytes: [UInt8])? = nil) async throws -> String {
        let dir = tmp.appending("data")
        var commands = timers.map { (line: $0.line, op: "schedule", id: $0.id) }
        commands.insert((scheduleLine("cancelled", at: nowMilliseconds() + 3_600_000, payload: "c"), "schedule", "cancelled"), at: 1)
        commands.insert((cancelLine("cancelled"), "cancel", "cancelled"), at: 3)
        if let binary {
            commands.append((scheduleLine(binary.id, at: binary.deadline, payloadB64: Data(binary.bytes).base64EncodedString()), "schedule", binary.id))
        }
        try await populate(dir, commands)
        return dir
    }

    @Test("dump prints every pending timer as one line of id, deadline, attempt and payload, in deadline order")
    func dump() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let timers = farTimers(4)
        let bytes: [UInt8] = [0x80, 0xFF, 0x00, 0x7F, 0xC0]
        let binaryDeadline = timers.map(\.deadline).max()! + 1
        let dir = try await Self.populated(tmp, timers, binary: ("binary", binaryDeadline, bytes))

        let dump = try await hourglass(["dump", "--dir", dir], timeout: Self.slow)
        #expect(dump.status == 0, "\(dump.report)")
        #expect(dump.lines.count == timers.count + 1 && !dump.parsed.contains { $0 == nil }, "one JSON line per pending timer\n\(dump.report)")
        for timer in timers {
            let line = dump.events.first { $0["id"] == .string(timer.id) }
            #expect(line == ["id": .string(timer.id), "deadline": .int(timer.deadline), "attempt": .int(1), "payload": .string(timer.payload)],
                    "\(line?.short ?? "\(timer.id) missing")")
        }
        let binary = dump.events.first { $0["id"] == .string("binary") }
        #expect(binary?.keySet == ["id", "deadline", "attempt", "payload_b64"] && binary?["deadline"] == .int(binaryDeadline), "\(binary?.short ?? "binary missing")")
        #expect(binary?["payload_b64"]?.string.flatMap { Data(base64Encoded: $0) }.map { Array($0) } == bytes)
        let deadlines = dump.events.compactMap { $0["deadline"]?.int }
        #expect(deadlines == deadlines.sorted(), "pending timers in deadline order")
        #expect(!dump.events.contains { $0["id"] == .string("cancelled") })
    }

    @Test("inspect prints one JSON object with every documented key and sane values")
    func inspect() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let timers = farTimers(5)
        let dir = try await Self.populated(tmp, timers)

        let result = try await hourglass(["inspect", "--dir", dir], timeout: Self.slow)
        #expect(result.status == 0, "\(result.report)")
        #expect(result.lines.count == 1, "one line\n\(result.report)")
        guard let object = result.parsed.first ?? nil else { Issue.record("not a JSON object: \(result.report)"); return }
        #expect(Self.inspectKeys.isSubset(of: object.keySet), "missing \(Self.inspectKeys.subtracting(object.keySet))")
        #expect(object["pending"] == .int(Int64(timers.count)), "\(object.short)")
        #expect(object["in_flight"] == .int(0), "\(object.short)")
        #expect(object["next_deadline"] == .int(timers.map(\.deadline).min()!), "\(object.short)")
        #expect((object["log_bytes"]?.int ?? 0) > 0, "the log holds the schedules: \(object.short)")
        #expect((object["segments"]?.int ?? 0) >= 1 && object["segments"]?.int == Int64(segments(in: dir).count), "\(object.short) vs \(files(in: dir))")
        #expect(object["checkpoint_sequence"] == .null, "no checkpoint yet: \(object.short)")
        let ratio = object["compression_ratio"]?.number
        #expect(ratio != nil && ratio! > 0 && ratio!.isFinite, "\(object.short)")

    }

    @Test("dump, inspect and verify refuse a directory that does not exist (exit 2) and do not create it")
    func missingDirectory() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("absent")
        for command in ["dump", "inspect", "verify"] {
            let result = try await hourglass([command, "--dir", dir])
            #expect(result.status == 2 && !result.stderr.isEmpty, "\(command): \(result.report)")
        }
        #expect(files(in: tmp.path).isEmpty, "nothing was created: \(files(in: tmp.path))")
    }

    @Test("verify exits 0 on a good directory, and 1 naming the file and offset of a flipped byte in a frame followed by more")
    func verify() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = try await Self.populated(tmp, farTimers(4))

        let good = try await hourglass(["verify", "--dir", dir], timeout: Self.slow)
        #expect(good.status == 0, "\(good.report)")

        // The first frame that has another after it, in the segment that holds the frames.
        var target: (name: String, frame: Int, byte: Int)?
        for name in segments(in: dir) {
            let bytes = readFile(dir + "/" + name)
            let list = frames(ofSegment: bytes)
            if list.count >= 2 {
                let frame = list[0]
                target = (name, frame.offset, frame.offset + frame.header + (frame.length - frame.header) / 2)
                break
            }
        }
        guard let target else { Issue.record("no segment with two frames in \(files(in: dir))"); return }
        let path = dir + "/" + target.name
        let original = readFile(path)[target.byte]
        patchFile(path, at: target.byte, with: [original ^ 0x5A])

        let bad = try await hourglass(["verify", "--dir", dir], timeout: Self.slow)
        #expect(bad.status == 1, "\(bad.report)")
        #expect(bad.all.contains(target.name), "the message names \(target.name)\n\(bad.report)")
        #expect(bad.all.contains("offset \(target.frame)") || bad.all.contains("\(target.byte)"),
                "the message names the offset (frame at \(target.frame), byte \(target.byte))\n\(bad.report)")
    }

    @Test("checkpoint writes checkpoint-*.hgc and empties the log; inspect shows its sequence; the timers survive it")
    func checkpoint() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let timers = farTimers(3)
        let dir = try await Self.populated(tmp, timers)

        let result = try await hourglass(["checkpoint", "--dir", dir])
        #expect(result.status == 0, "\(result.report)")
        let checkpoints = files(in: dir).filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".hgc") }
        #expect(checkpoints.count == 1, "\(files(in: dir))")
        let number = checkpoints.first.flatMap { name -> Int64? in
            let digits = name.dropFirst("checkpoint-".count).dropLast(".hgc".count)
            return digits.count == 20 ? Int64(digits) : nil
        }
        #expect(number != nil, "checkpoint-<20 digits>.hgc: \(checkpoints)")
        let printed = result.parsed.first ?? nil
        #expect(printed?["event"] == .string("checkpoint") && printed?["checkpoint_sequence"]?.int == number && printed?["pending"] == .int(Int64(timers.count)),
                "\(result.report)")

        let inspect = try await hourglass(["inspect", "--dir", dir], timeout: Self.slow)
        let object = inspect.parsed.first ?? nil
        #expect(inspect.status == 0, "\(inspect.report)")
        #expect(object?["checkpoint_sequence"]?.int != nil && object?["checkpoint_sequence"]?.int == number, "\(inspect.report)")
        // The log after the checkpoint holds no records; only the checkpoint command's own close
        // mark (one empty 40-byte frame, Docs/FORMAT.md) may follow it.
        #expect(object?["pending"] == .int(Int64(timers.count)) && object?["log_records"] == .int(0), "\(inspect.report)")
        #expect((object?["log_bytes"]?.int ?? -1) >= 0 && (object?["log_bytes"]?.int ?? 41) <= 40, "\(inspect.report)")

        // A later run recovers from the checkpoint: every cancel finds its timer.
        let run = try await runToIdle(dir, timers.map { cancelLine($0.id) } + [scheduleLine("after", afterMS: 0, payload: "a")])
        #expect(run.status == 0, "\(run.report)")
        for timer in timers {
            #expect(run.events.first(where: isDurable("cancel", timer.id))?["found"] == .bool(true), "\(timer.id)\n\(run.report)")
        }
        #expect(run.events.contains(where: isFired("after")), "\(run.report)")
    }

    @Test("while a run holds the directory, inspect, dump, verify, checkpoint and a second run exit 2 saying it is locked")
    func locked() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let holder = try HourglassProcess(["run", "--dir", dir])
        holder.send(scheduleLine("held", at: nowMilliseconds() + 86_400_000, payload: "h"))
        try await holder.waitForEvents(count: 1, "durable held", where: isDurable("schedule", "held"))

        for arguments in [["inspect"], ["dump"], ["verify"], ["checkpoint"], ["run", "--exit-when-idle"]] {
            let result = try await hourglass([arguments[0], "--dir", dir] + arguments.dropFirst(), input: [cancelLine("held")])
            #expect(result.status == 2, "\(arguments[0]): \(result.report)")
            #expect(result.all.lowercased().contains("locked"), "\(arguments[0]) says the directory is locked\n\(result.report)")
        }

        // The holder is untouched, and once it is gone the directory opens.
        holder.closeInput()
        holder.signal(SIGTERM)
        #expect(try await holder.waitForExit() == 0, "\(holder.stderr)")
        #expect(!holder.events.contains { $0["event"] != .string("durable") }, "\(holder.stdout)")
        try await expectRecovered(dir, ["held"])
    }

    @Test("--help works on the command and every subcommand",
          arguments: [[], ["run"], ["dump"], ["inspect"], ["verify"], ["checkpoint"], ["demo"]])
    func help(subcommand: [String]) async throws {
        let result = try await hourglass(subcommand + ["--help"])
        #expect(result.status == 0, "\(result.report)")
        let usage = (["USAGE: hourglass"] + subcommand).joined(separator: " ")
        #expect(result.stdout.contains(usage), "\(result.report)")
        let options: [String] = switch subcommand.first {
        case nil: ["run", "dump", "inspect", "verify", "checkpoint", "demo"]
        case "run": ["--dir", "--durability", "--exit-when-idle"]
        case "demo": ["--orders"]
        default: ["--dir"]
        }
        for option in options { #expect(result.stdout.contains(option), "help mentions \(option)\n\(result.report)") }
        if let name = subcommand.first {
            let viaHelp = try await hourglass(["help", name])
            #expect(viaHelp.status == 0 && viaHelp.stdout.contains(usage), "hourglass help \(name)\n\(viaHelp.report)")
        }
    }

    @Test("bad arguments exit 2 with a message (Docs/COMMAND.md: 2, the command could not run)",
          arguments: [["run"], ["run", "--dir", "/tmp/x", "--durability", "sometimes"], ["run", "--dir", "/tmp/x", "--durability", "interval:0"],
                      ["dump"], ["inspect", "--dir"], ["demo", "--orders", "0"], ["frobnicate"]])
    func badArguments(arguments: [String]) async throws {
        let result = try await hourglass(arguments)
        #expect(result.status == 2, "\(result.report)")
        #expect(!result.stderr.isEmpty, "\(result.report)")
    }

    @Test("demo --orders 200 exits 0 and prints a summary that adds up")
    func demo() async throws {
        let result = try await hourglass(["demo", "--orders", "200"], timeout: .seconds(60))
        #expect(result.status == 0, "\(result.report)")
        func count(_ label: String) -> Int? {
            guard let line = result.stdout.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix(label) }) else { return nil }
            let afterColon = line.split(separator: ":", maxSplits: 1).last ?? ""
            return Int(afterColon.trimmingCharacters(in: .whitespaces).prefix { $0.isNumber })
        }
        let created = count("created"), paid = count("paid"), closed = count("closed by timeout")
        #expect(created == 200, "created: 200\n\(result.report)")
        #expect(paid != nil && closed != nil && paid! + closed! == 200, "paid + closed by timeout = 200\n\(result.report)")
        #expect(result.stdout.contains("p50") && result.stdout.contains("p99"), "lateness percentiles\n\(result.report)")
    }
}
