import AsyncHTTPClient
import Foundation
import Hourglass
import HourglassTesting
import NIOCore
import NIOHTTP1
import OrderService
import Synchronization
import Testing

/// The real `order-service` process on 127.0.0.1, driven over HTTP with AsyncHTTPClient,
/// killed with SIGKILL in the middle of a run and started again on the same data directory.
///
/// This test runs on the system clock, because the process does: orders close one second
/// after they are created, and the test waits (polling the API, with a bound) for the
/// restarted process to close what is due. The clock-driven, sleep-free tests of the same
/// logic are `OrderFlowTests`.
@Suite("Order service end to end: kill -9 mid-run, restart, every unpaid order closed once", .serialized)
struct EndToEndTests {
    /// The `order-service` executable next to this test bundle.
    static func executable() throws -> String {
        let bundle = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var directory = URL(fileURLWithPath: bundle).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("order-service").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw TestFailure("order-service is not built next to the test bundle \(bundle): run `swift build` first")
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// One run of the server: its process, its port, what it printed.
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int
        private let output = Pipe()
        private let errors = Pipe()
        private let printed = Mutex<String>("")

        init(data: String, closeAfter: String) throws {
            process.executableURL = URL(fileURLWithPath: try EndToEndTests.executable())
            process.arguments = ["--port", "0", "--data", data, "--close-after", closeAfter, "--durability", "always", "--log-level", "warning"]
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            // The port: the first line the server prints.
            let handle = output.fileHandleForReading
            var seen = ""
            let deadline = Date().addingTimeInterval(60)
            while !seen.contains("\n") {
                guard Date() < deadline, process.isRunning else {
                    throw TestFailure("order-service did not start: \(seen) \(String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self))")
                }
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                seen += String(decoding: chunk, as: UTF8.self)
            }
            guard let line = seen.split(separator: "\n").first, line.hasPrefix("order-service listening on 127.0.0.1:"),
                  let port = Int(line.split(separator: ":").last ?? "") else {
                throw TestFailure("unexpected first line from order-service: \(seen)")
            }
            self.port = port
            printed.withLock { $0 = seen }
        }

        var url: String { "http://127.0.0.1:\(port)" }

        func kill9() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        /// SIGTERM, then the exit status and everything printed.
        func terminate() -> (status: Int32, stdout: String, stderr: String) {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (process.terminationStatus, printed.withLock { $0 } + rest, stderr)
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// What the clients of phase 1 know, shared between them.
    final class Tally: Sendable {
        let known = Mutex<[String: Known]>([:])
        let createFailures = Atomic<Int>(0)
        let running = Atomic<Bool>(true)
    }

    /// What the client knows about one order.
    struct Known: Sendable {
        var id: String
        /// The pay request got 200.
        var paid = false
        /// A pay request was sent and its answer never came (the kill).
        var payUnknown = false
    }

    static func request(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, json: String? = nil) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    static func order(_ client: HTTPClient, _ server: Server, _ id: String) async throws -> Order? {
        let (status, body) = try await request(client, .GET, "\(server.url)/orders/\(id)")
        if status == 404 { return nil }
        guard status == 200 else { throw TestFailure("GET /orders/\(id): \(status) \(body)") }
        return try JSONDecoder().decode(Order.self, from: Data(body.utf8))
    }

    @Test("create and pay orders over HTTP, kill -9 mid-run, restart: every unpaid order closed, no paid order closed, none twice")
    func killNineMidRun() async throws {
        let directory = TemporaryDirectory("order-service-e2e")
        defer { directory.remove() }
        let data = directory.appending("data")
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let first = try Server(data: data, closeAfter: "1s")

        // Phase 1: eight clients create orders and pay two in five, until the kill (after 600
        // orders they keep reading orders, so that requests are in flight when it comes).
        let tally = Tally()
        let workers = (0 ..< 8).map { worker in
            Task {
                var i = 0
                while tally.running.load(ordering: .relaxed) {
                    i += 1
                    if let some = tally.known.withLock({ $0.count >= 600 ? $0.keys.randomElement() : nil }) {
                        _ = try? await Self.request(client, .GET, "\(first.url)/orders/\(some)")
                        continue
                    }
                    let created: (status: Int, body: String)
                    do {
                        created = try await Self.request(client, .POST, "\(first.url)/orders", json: #"{"customer":"c\#(worker)-\#(i)","amount_cents":\#(100 + i)}"#)
                    } catch {
                        tally.createFailures.add(1, ordering: .relaxed)
                        continue
                    }
                    guard created.status == 201, let order = try? JSONDecoder().decode(Order.self, from: Data(created.body.utf8)) else {
                        Issue.record("POST /orders: \(created.status) \(created.body)")
                        continue
                    }
                    tally.known.withLock { $0[order.id] = Known(id: order.id) }
                    guard (worker + i) % 5 < 2 else { continue }
                    tally.known.withLock { $0[order.id]?.payUnknown = true }
                    if let paid = try? await Self.request(client, .POST, "\(first.url)/orders/\(order.id)/pay") {
                        tally.known.withLock { state in
                            state[order.id]?.payUnknown = false
                            state[order.id]?.paid = paid.status == 200
                        }
                        if paid.status != 200 && paid.status != 409 { Issue.record("pay: \(paid.status) \(paid.body)") }
                    }
                }
            }
        }
        // The kill: once at least 100 orders exist and long enough after the start that the
        // first ones' timers have fired (some closes are in flight), while many are still
        // pending. The moment varies from run to run.
        let killAfter = ContinuousClock.now + .milliseconds(Int64.random(in: 1200 ... 1800))
        let giveUp = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < giveUp && (ContinuousClock.now < killAfter || tally.known.withLock({ $0.count }) < 100) {
            try await Task.sleep(for: .milliseconds(20))
        }
        first.kill9()
        tally.running.store(false, ordering: .relaxed)
        for worker in workers { await worker.value }
        let beforeRestart = tally.known.withLock { $0 }
        #expect(beforeRestart.count >= 100, "orders created before the kill: \(beforeRestart.count)")

        // Phase 2: the same data directory, a new process.
        let second = try Server(data: data, closeAfter: "1s")
        let lateOrder = try await Self.request(client, .POST, "\(second.url)/orders", json: #"{"customer":"after","amount_cents":1}"#)
        #expect(lateOrder.status == 201)
        let late = try JSONDecoder().decode(Order.self, from: Data(lateOrder.body.utf8))
        var all = beforeRestart
        all[late.id] = Known(id: late.id)

        // Wait (bounded) until no known order is unpaid any more: the restarted process fires
        // what fell due while it was down at once, the rest at its deadline.
        var final: [String: Order] = [:]
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            for (id, _) in all where final[id].map({ $0.state == .unpaid }) ?? true {
                final[id] = try await Self.order(client, second, id)
            }
            if final.values.allSatisfy({ $0.state != .unpaid }) && final.count == all.count { break }
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(100))
        }

        var closedCount = 0
        var paidCount = 0
        for (id, knownOrder) in all {
            guard let order = final[id] else {
                Issue.record("\(id) was created (201) and is gone")
                continue
            }
            let closes = order.events.filter { $0 == "closed" }.count
            let pays = order.events.filter { $0 == "paid" }.count
            #expect(closes + pays == 1, "\(id): exactly one of paid or closed, once: \(order.events)")
            #expect(order.state != .unpaid, "\(id) is still unpaid: \(order)")
            if knownOrder.paid {
                #expect(order.state == .paid && closes == 0, "\(id) was paid (200) and then closed: \(order.events)")
            } else if !knownOrder.payUnknown {
                #expect(order.state == .closed, "\(id) was never paid and is not closed: \(order)")
            }
            if order.state == .closed {
                closedCount += 1
                #expect((order.closedAt ?? 0) >= order.closesAt, "\(id) closed before its deadline")
            } else {
                paidCount += 1
            }
        }
        #expect(closedCount > 10 && paidCount > 5, "closed \(closedCount), paid \(paidCount)")
        let unknownPayments = beforeRestart.values.filter(\.payUnknown).count
        print("order-service end to end: \(beforeRestart.count) orders before the kill (\(tally.createFailures.load(ordering: .relaxed)) creates and \(unknownPayments) payments cut short by it), \(closedCount) closed, \(paidCount) paid, none twice")

        // A clean stop: SIGTERM, exit 0, and the timers' directory is left with nothing pending
        // but the payment sweep's series (at its next occurrence, or in flight if it was running).
        let stopped = second.terminate()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stdout.contains("order-service stopped"))
        let inspection = try HourglassEngine.inspect(directory: data + "/timers", includeTimers: true)
        #expect(inspection.pending + inspection.inFlight == 1, "\(inspection.pending) pending, \(inspection.inFlight) in flight")
        #expect(inspection.timers.map(\.id) == ["sweep:payments"] && inspection.timers.first?.recurrence == "cron '0/30 * * * * ?' in UTC",
                "\(inspection.timers.map(\.id))")
        #expect(try HourglassEngine.verify(directory: data + "/timers").isEmpty)
        try await client.shutdown()
    }
}
