// End-to-end tests of `hourglass run`: the built binary, driven over its stdin and stdout.

import Foundation
import HourglassTestSupport
import Testing
import HourglassTesting
#if canImport(Glibc)
import Glibc
#endif

@Suite("hourglass run, end to end")
struct RunEndToEndTests {
    static let durableScheduleKeys: Set<String> = ["event", "op", "id"]
    static let durableCancelKeys: Set<String> = ["event", "op", "id", "found"]
    static let firedKeys: Set<String> = ["event", "id", "deadline", "fired_at", "attempt", "payload"]
    static let firedB64Keys: Set<String> = ["event", "id", "deadline", "fired_at", "attempt", "payload_b64"]
    static let errorKeys: Set<String> = ["event", "line", "message"]

    @Test("every schedule gets exactly one durable event, then fires, under each durability policy",
          arguments: ["always", "interval:1", "interval:200", "none", "(default)"])
    func durableUnderEachPolicy(policy: String) async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")  // does not exist yet: run creates it
        let now = nowMilliseconds()
        let ids = (0 ..< 6).map { "timer-\($0)" }
        let input = ids.enumerated().map { index, id in
            index % 2 == 0 ? scheduleLine(id, at: now - 1000 - Int64(index), payload: "p-\(id)") : scheduleLine(id, afterMS: Int64(index * 8), payload: "p-\(id)")
        }
        let result = try await runToIdle(dir, durability: policy == "(default)" ? nil : policy, input)

        #expect(result.status == 0, "\(result.report)")
        #expect(!result.parsed.contains { $0 == nil }, "every stdout line is one JSON object\n\(result.report)")
        for id in ids {
            let durable = result.events.filter(isDurable("schedule", id))
            #expect(durable.count == 1, "one durable event for \(id)\n\(result.report)")
            #expect(durable.first?.keySet == Self.durableScheduleKeys, "\(durable.first?.short ?? "none")")
            #expect(result.events.filter(isFired(id)).count == 1, "\(id) fires once\n\(result.report)")
        }
        #expect(result.events.count == ids.count * 2, "nothing but durable and fired events\n\(result.report)")
        #expect(!segments(in: dir).isEmpty, "run created the directory and its log")
    }

    @Test("recurring schedule lines: every_ms with count and cron with tz fire each occurrence, with occurrence and coalesced")
    func recurringLines() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let first = nowMilliseconds() + 50
        let result = try await runToIdle(dir, [
            #"{"op":"schedule","id":"poll","every_ms":40,"count":3,"at":\#(first),"payload":"ask"}"#,
            #"{"op":"schedule","id":"tick","cron":"* * * * * *","tz":"Europe/Berlin","count":2}"#,
            #"{"op":"schedule","id":"bad-zone","cron":"0 0 * * *","tz":"Nowhere/Zone"}"#,
            #"{"op":"schedule","id":"bad-cron","cron":"0 61 * * * *"}"#,
            #"{"op":"schedule","id":"bad-count","at":1,"count":2}"#,
            #"{"op":"schedule","id":"bad-every","every_ms":0}"#,
        ], timeout: .seconds(30))
        #expect(result.status == 0, "\(result.report)")
        let polls = result.events.filter(isFired("poll"))
        #expect(polls.compactMap { $0["occurrence"]?.int } == [first, first + 40, first + 80], "\(result.report)")
        #expect(polls.allSatisfy { $0["coalesced"]?.int == 1 && $0["payload"] == .string("ask") && $0["attempt"]?.int == 1 })
        let ticks = result.events.filter(isFired("tick")).compactMap { $0["occurrence"]?.int }
        #expect(ticks.count == 2 && ticks.allSatisfy { $0 % 1000 == 0 } && ticks.last.map { $0 - ticks[0] } == 1000, "\(ticks)")
        let errors = result.events.filter(isError).compactMap { $0["message"]?.string }
        #expect(errors.count == 4, "\(result.report)")
        #expect(errors.contains { $0.contains("time zone 'Nowhere/Zone'") }, "\(errors)")
        #expect(errors.contains { $0.contains("invalid cron expression: minute at position 3") }, "\(errors)")
        #expect(errors.contains { $0.contains("need \"every_ms\" or \"cron\"") }, "\(errors)")
        #expect(errors.contains { $0.contains("\"every_ms\" must be at least 1") }, "\(errors)")
        #expect(result.events.filter(isDurable("schedule", "poll")).count == 1 && result.events.filter(isDurable("schedule", "tick")).count == 1)
    }

    @Test("run --partitions 3 creates a partitioned directory; later runs and dump read it without being told")
    func partitionedRun() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let far = nowMilliseconds() + 86_400_000
        let ids = (0 ..< 12).map { "order-\($0)" }
        let process = try HourglassProcess(["run", "--dir", dir, "--partitions", "3"])
        process.send(ids.map { scheduleLine($0, at: far, payload: $0) })
        for id in ids { try await process.waitForEvents(count: 1, "durable \(id)", where: isDurable("schedule", id)) }
        process.signal(SIGTERM)
        #expect(try await process.waitForExit() == 0)
        #expect(readFile(dir + "/PARTITIONS") == Array("hourglass partitions 3\n".utf8))
        let dump = try await hourglass(["dump", "--dir", dir], input: [])
        #expect(Set(dump.events.compactMap { $0["id"]?.string }) == Set(ids), "\(dump.report)")
        let refused = try await hourglass(["run", "--dir", dir, "--partitions", "2", "--exit-when-idle"], input: [])
        #expect(refused.status != 0 && refused.stderr.contains("was created with 3 partitions, not 2"), "\(refused.report)")
    }

    @Test("a schedule reported durable survives a kill -9 of the run, under each durability policy",
          arguments: ["always", "interval:1", "interval:200", "none"])
    func durableSurvivesKill(policy: String) async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let timers = farTimers(3)
        let process = try HourglassProcess(["run", "--dir", dir, "--durability", policy])
        process.send(timers.map(\.line))
        for timer in timers { try await process.waitForEvents(count: 1, "durable \(timer.id)", where: isDurable("schedule", timer.id)) }
        process.signal(SIGKILL)
        #expect(try await process.waitForExit() == 128 + SIGKILL)

        // A second run recovers them. (A run rather than `dump`: read-only opens are slow in
        // debug builds, see DirectoryEndToEndTests.)
        try await expectRecovered(dir, timers.map(\.id))
    }

    @Test("cancel reports found true for a pending timer and false otherwise, in input order")
    func cancelFound() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let far = nowMilliseconds() + 86_400_000
        let result = try await runToIdle(dir, [
            scheduleLine("keep", at: far, payload: "k"),
            scheduleLine("gone", at: far + 1, payload: "g"),
            cancelLine("gone"),
            cancelLine("gone"),
            cancelLine("never-scheduled"),
            cancelLine("keep"),
        ])
        #expect(result.status == 0, "\(result.report)")
        let cancels = result.events.filter { $0["event"] == .string("durable") && $0["op"] == .string("cancel") }
        for event in cancels {
            #expect(event.keySet == Self.durableCancelKeys, "\(event.short)")
            #expect(event["found"]?.bool != nil, "found is a JSON boolean: \(event.short)")
        }
        #expect(cancels.filter { $0["id"] == .string("gone") }.map { $0["found"] } == [.bool(true), .bool(false)], "\(result.report)")
        #expect(cancels.filter { $0["id"] == .string("never-scheduled") }.map { $0["found"] } == [.bool(false)], "\(result.report)")
        #expect(cancels.filter { $0["id"] == .string("keep") }.map { $0["found"] } == [.bool(true)], "\(result.report)")
        #expect(!result.events.contains { $0["event"] == .string("fired") || $0["event"] == .string("error") }, "\(result.report)")

        // Nothing is left: the next run finds neither.
        let next = try await runToIdle(dir, [cancelLine("keep"), cancelLine("gone")])
        #expect(next.status == 0 && next.events.filter { $0["found"] == .bool(false) }.count == 2, "\(next.report)")
    }

    @Test("a fired event carries exactly event, id, deadline, fired_at, attempt and payload, with the right values")
    func firedEventFields() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let before = nowMilliseconds()
        let past = before - 5_000
        let fancy = "close order \"42\" \u{2713} back\\slash\nnew line\ttab \u{1F600} \u{01}"
        let result = try await runToIdle(dir, [
            scheduleLine("past", at: past, payload: fancy),
            scheduleLine("soon", afterMS: 40, payload: "soon"),
            scheduleLine("now", afterMS: 0, payload: "now"),
            scheduleLine("no-payload", at: past - 1),
        ])
        let after = nowMilliseconds()
        #expect(result.status == 0, "\(result.report)")

        let expected: [(id: String, payload: String, earliest: Int64, latest: Int64)] = [
            ("past", fancy, past, past), ("soon", "soon", before + 40, after + 40), ("now", "now", before, after), ("no-payload", "", past - 1, past - 1),
        ]
        for timer in expected {
            let fired = result.events.filter(isFired(timer.id))
            #expect(fired.count == 1, "\(timer.id) fires once\n\(result.report)")
            guard let event = fired.first else { continue }
            #expect(event.keySet == Self.firedKeys, "\(event.short)")
            #expect(event["attempt"] == .int(1), "\(event.short)")
            #expect(event["payload"] == .string(timer.payload), "\(event.short)")
            guard let deadline = event["deadline"]?.int, let firedAt = event["fired_at"]?.int else {
                Issue.record("deadline and fired_at are integers: \(event.short)"); continue
            }
            #expect(deadline >= timer.earliest && deadline <= timer.latest, "\(timer.id): deadline \(deadline) in \(timer.earliest) ... \(timer.latest)")
            #expect(firedAt >= deadline, "\(timer.id): fired_at \(firedAt) >= deadline \(deadline)")
            #expect(firedAt >= before - 1 && firedAt <= after + 1, "\(timer.id): fired_at \(firedAt) is the wall clock (ms since the epoch) of the run, \(before) ... \(after)")
        }
    }

    @Test("payload_b64 bytes that are not UTF-8 come back as payload_b64; UTF-8 ones as payload")
    func payloadBase64RoundTrip() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        var random = SeededRandom(seed: 20_251_122)
        var cases: [(id: String, bytes: [UInt8])] = [
            ("ff", [0xFF]), ("nul-ff", [0x00, 0xFF]), ("three", [0xFE, 0x00, 0x80]), ("bad-seq", [0xC3, 0x28, 0xA0, 0xA1]),
        ]
        for length in [5, 64, 1000] {
            cases.append(("random-\(length)", [0xFF] + (1 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &random) }))
        }
        let past = nowMilliseconds() - 1000
        var input = cases.map { scheduleLine($0.id, at: past, payloadB64: Data($0.bytes).base64EncodedString()) }
        input.append(scheduleLine("utf8", at: past, payloadB64: Data("h\u{e9}llo \u{2713}".utf8).base64EncodedString()))
        let result = try await runToIdle(dir, input)
        #expect(result.status == 0, "\(result.report)")

        for (id, bytes) in cases {
            guard let event = result.events.first(where: isFired(id)) else { Issue.record("\(id) did not fire\n\(result.report)"); continue }
            #expect(event.keySet == Self.firedB64Keys, "\(event.short)")
            let decoded = event["payload_b64"]?.string.flatMap { Data(base64Encoded: $0) }.map { Array($0) }
            #expect(decoded == bytes, "\(id): payload_b64 round-trips")
            #expect(event["attempt"] == .int(1) && event["deadline"] == .int(past), "\(event.short)")
        }
        let utf8 = result.events.first(where: isFired("utf8"))
        #expect(utf8?.keySet == Self.firedKeys && utf8?["payload"] == .string("h\u{e9}llo \u{2713}"), "\(utf8?.short ?? "utf8 did not fire")")
    }

    @Test("each malformed or invalid line gets an error event with its line number; the run goes on and exits 0")
    func malformedLines() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let past = nowMilliseconds() - 1000
        let longID = String(repeating: "i", count: 1025)
        let bad: [String] = [
            "this is not json",
            #"{"op":"schedule","id":"truncated","at":1000"#,
            #"["op","schedule"]"#,
            #"{"op":"schedule","at":1000}"#,  // no id
            #"{"id":"no-op","at":1000}"#,  // no op
            #"{"op":"cancel"}"#,  // no id
            #"{"op":"schedule","id":"no-deadline","payload":"x"}"#,
            #"{"op":"schedule","id":"string-at","at":"1000"}"#,
            #"{"op":"schedule","id":"fraction-at","at":1000.5}"#,
            #"{"op":"schedule","id":"string-after","after_ms":"5"}"#,
            #"{"op":"schedule","id":12,"at":1000}"#,
            #"{"op":"cancel","id":true}"#,
            #"{"op":"schedule","id":"number-payload","at":1000,"payload":42}"#,
            #"{"op":"schedule","id":"bad-b64","at":1000,"payload_b64":"not base64!"}"#,
            #"{"op":7,"id":"number-op"}"#,
            #"{"op":"fire","id":"unknown-op"}"#,
            #"{"op":"schedule","id":"both","at":1000,"after_ms":5}"#,
            #"{"op":"schedule","id":"","at":1000}"#,
            #"{"op":"cancel","id":""}"#,
            scheduleLine(longID, at: past, payload: "x"),
            cancelLine(longID),
            scheduleLine("huge-payload", at: past, payload: String(repeating: "p", count: (1 << 20) + 1)),
            scheduleLine("before-epoch", at: -1),
            scheduleLine("after-9999", at: 253_402_300_800_000),
        ]
        // A good line after every bad one: the run goes on. The limits themselves are accepted.
        let maxID = String(repeating: "m", count: 1024)
        let maxPayload = String(repeating: "q", count: 1 << 20)
        var input: [String] = []
        var errorLines: [Int64] = []
        var good: [(id: String, payload: String)] = []
        for (index, line) in bad.enumerated() {
            input.append(line)
            errorLines.append(Int64(input.count))
            let id = index == 3 ? maxID : index == 5 ? "max-payload" : "ok-\(index)"
            let payload = index == 5 ? maxPayload : "good \(index)"
            input.append(scheduleLine(id, at: past, payload: payload))
            good.append((id, payload))
        }
        let result = try await runToIdle(dir, input, timeout: .seconds(30))
        #expect(result.status == 0, "\(result.report)")
        #expect(!result.parsed.contains { $0 == nil }, "every stdout line is one JSON object")

        let errors = result.events.filter(isError)
        #expect(errors.compactMap { $0["line"]?.int }.sorted() == errorLines, "one error per bad line, with its line number\n\(result.report)")
        for error in errors {
            #expect(error.keySet == Self.errorKeys, "\(error.short)")
            #expect(error["line"]?.int != nil && !(error["message"]?.string ?? "").isEmpty, "\(error.short)")
        }
        for (id, payload) in good {
            #expect(result.events.filter(isDurable("schedule", id)).count == 1, "\(id.prefix(20)) is durable\n\(result.report)")
            let fired = result.events.filter(isFired(id))
            #expect(fired.count == 1 && fired.first?["payload"] == .string(payload), "\(id.prefix(20)) fires with its payload")
        }
        let goodIDs = Set(good.map(\.id))
        let strays = result.events.filter { !isError($0) && !goodIDs.contains($0["id"]?.string ?? "") }
        #expect(strays.isEmpty, "no bad line was applied: \(strays.map(\.short))")
    }

    @Test("a schedule and a cancel of one id on consecutive lines: found true, never fires (future deadlines)")
    func scheduleThenCancelInOrder() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        // Were a cancel applied before its schedule, it would find nothing and the timer would
        // fire 5 s later (the run waits for it before exiting). The 5 s leave room for a busy
        // machine: a shorter delay can pass between reading two lines (then the timer is due
        // before its cancel comes, which the next test is about).
        let count = 300
        let input = (0 ..< count).flatMap { [scheduleLine("pair-\($0)", afterMS: 5000, payload: "x"), cancelLine("pair-\($0)")] }
        let result = try await runToIdle(dir, input)
        #expect(result.status == 0, "\(result.report)")
        let cancels = result.events.filter { $0["op"] == .string("cancel") }
        #expect(cancels.count == count && cancels.allSatisfy { $0["found"] == .bool(true) },
                "every cancel finds its timer: \(cancels.filter { $0["found"] != .bool(true) }.map(\.short).prefix(5))")
        let fired = result.events.filter { $0["event"] == .string("fired") }
        #expect(fired.isEmpty, "\(fired.count) cancelled timers fired: \(fired.prefix(5).map(\.short))")
    }

    @Test("a schedule and a cancel of one id on consecutive lines never fire, even with a deadline already past")
    func scheduleThenCancelPastDeadline() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        // Docs/COMMAND.md: "Commands are applied in input order (a schedule and a cancel of one
        // id on consecutive lines never fire)". A due timer is the hard case: the engine must not
        // fire it between the two lines.
        // The input comes in bursts of pairs, each written at once (under PIPE_BUF, so it arrives
        // whole) to an idle run, once the burst before it is durable: the first schedule of a
        // burst wakes the engine, the hard moment for the cancel that follows it.
        let bursts = 100, pairs = 16
        let count = bursts * pairs
        let past = nowMilliseconds() - 1000
        let process = try HourglassProcess(["run", "--dir", dir, "--exit-when-idle", "--durability", "none"])
        for burst in 0 ..< bursts {
            let ids = (0 ..< pairs).map { "due-\(burst)-\($0)" }
            process.send(ids.flatMap { [scheduleLine($0, at: past, payload: "x"), cancelLine($0)] })
            let expected = (burst + 1) * pairs
            try await process.waitForEvents(count: expected, "durable cancels of burst \(burst)") { $0["op"] == .string("cancel") }
        }
        let status = try await process.finish()
        let result = Outcome(status: status, stdout: process.stdout, stderr: process.stderr, lines: process.lines, events: process.events, parsed: process.parsed)
        #expect(result.status == 0, "\(result.report)")
        let fired = result.events.filter { $0["event"] == .string("fired") }
        #expect(fired.isEmpty, "\(fired.count) of \(count) timers cancelled on the next line fired: \(fired.prefix(3).map(\.short))")
        let cancels = result.events.filter { $0["op"] == .string("cancel") }
        #expect(cancels.count == count && cancels.allSatisfy { $0["found"] == .bool(true) },
                "every cancel finds its timer pending: \(cancels.filter { $0["found"] != .bool(true) }.map(\.short).prefix(3))")
    }

    @Test("after stdin ends, a run without --exit-when-idle stops cleanly on a signal; the next run recovers its timers",
          arguments: [SIGTERM, SIGINT])
    func signalThenRecover(signal: Int32) async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let timers = farTimers(3)
        let binary: [UInt8] = [0xFF, 0xFE, 0x00, 0x01]
        let binaryDeadline = nowMilliseconds() + 172_800_000
        let process = try HourglassProcess(["run", "--dir", dir])
        process.send(timers.map(\.line))
        process.send(scheduleLine("binary", at: binaryDeadline, payloadB64: Data(binary).base64EncodedString()))
        process.send(scheduleLine("due", afterMS: 0, payload: "due now"))
        try await process.waitForEvents("durable events and the due timer") { events in
            timers.allSatisfy { timer in events.contains(where: isDurable("schedule", timer.id)) }
                && events.contains(where: isDurable("schedule", "binary")) && events.contains(where: isFired("due"))
        }
        process.closeInput()
        process.signal(signal)
        let status = try await process.waitForExit()
        #expect(status == 0, "exit 0 after signal \(signal)\n\(process.stderr)")

        // A second run recovers them: each cancel finds its timer, and nothing fires again.
        let second = try await runToIdle(dir, (timers.map(\.id) + ["binary", "due"]).map(cancelLine))
        #expect(second.status == 0, "\(second.report)")
        for id in timers.map(\.id) + ["binary"] {
            #expect(second.events.first(where: isDurable("cancel", id))?["found"] == .bool(true), "\(id) recovered by the second run\n\(second.report)")
        }
        #expect(second.events.first(where: isDurable("cancel", "due"))?["found"] == .bool(false), "the acknowledged timer stays gone")
        #expect(!second.events.contains { $0["event"] == .string("fired") }, "\(second.report)")
    }

    @Test("SIGTERM stops a run cleanly (exit 0) even while its stdin is still open")
    func sigtermWithOpenInput() async throws {
        let tmp = TemporaryDirectory("hourglass-cli")
        defer { tmp.remove() }
        let dir = tmp.appending("data")
        let timer = farTimers(1)[0]
        let process = try HourglassProcess(["run", "--dir", dir])
        process.send(timer.line)
        try await process.waitForEvents(count: 1, "durable \(timer.id)", where: isDurable("schedule", timer.id))
        // A service manager stops the process without closing its input.
        process.signal(SIGTERM)
        let status = try await process.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "\(process.stderr)")
        try await expectRecovered(dir, [timer.id])
    }
}

/// A run over `dir` finds every timer in `ids` pending (each cancel reports found true).
func expectRecovered(_ dir: String, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let run = try await runToIdle(dir, ids.map(cancelLine))
    #expect(run.status == 0, "\(run.report)", sourceLocation: sourceLocation)
    for id in ids {
        #expect(run.events.first(where: isDurable("cancel", id))?["found"] == .bool(true), "\(id) recovered\n\(run.report)", sourceLocation: sourceLocation)
    }
}

/// The log segments in a directory.
func segments(in path: String) -> [String] {
    files(in: path).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }
}
