import Foundation
import HourglassTestSupport
import HourglassTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// The fleet's failure test (issue 14, Docs/REPLICATION.md "What each failure loses"): its own
// PostgreSQL on 127.0.0.1, three `hourglass run --postgres` node processes, and this test as the
// driver, scheduling and cancelling through every node. Mid-run it kills a node with SIGKILL
// (and starts it again a little later: a node keeps nothing on disk, so the restarted one
// starts with nothing, as one whose disk is gone does), then kills PostgreSQL itself with
// SIGKILL and restarts it. The nodes' own output is the record:
// - every schedule a node reported durable, and never cancelled, fired at least once;
// - no timer fired whose cancel was reported durable before its deadline;
// - nothing fired before its deadline;
// - the killed node's partitions were taken over (the first owner line of another node, which
//   comes after the first delivery under the new owner) within the lease plus recovery;
// - a timer fired twice only around a death (the node's, or the database's).

@Suite("Fleet failure: three node processes on one PostgreSQL; a node and the database killed")
struct FleetFailureTests {
    @Test("kill -9 a node, then PostgreSQL, mid-run: every acknowledged schedule fires, no durably cancelled one, nothing early")
    func killNodeAndDatabase() async throws {
        guard TemporaryPostgres.isAvailable else {
            Issue.record("PostgreSQL's server binaries are missing: scripts/ensure-postgres installs them (Debian's postgresql)")
            return
        }
        let seed = SeededRandom.testSeed()
        print("FleetFailureTests: seed \(seed) (HOURGLASS_SEED=\(seed) replays the choices; the timing differs run to run)")
        let started = await onOwnThread { Result { () throws(TemporaryPostgres.Failure) in try TemporaryPostgres.start() } }
        let postgres = try started.get()
        // HOURGLASS_FLEET_KEEP=1 keeps the server's directory (its log) after a failure.
        let keep = getEnvironment("HOURGLASS_FLEET_KEEP") == "1"
        var run = FleetRun(seed: seed, url: postgres.url)
        defer {
            run.stopAll()
            if keep && run.failed {
                postgres.stop()
                print("FleetFailureTests: kept \(postgres.dataDirectory) (log \(postgres.logFile))")
            } else {
                postgres.remove()
            }
        }
        try await run.drive(postgres: postgres)
        let report = run.check()
        print("FleetFailureTests: \(report.summary)")
        for problem in report.problems {
            // On stdout too: a runner's summary may show only the start of an issue's comment.
            print("FleetFailureTests: problem: \(problem)")
            Issue.record("\(problem)\n\(run.tail)")
        }
        run.failed = !report.problems.isEmpty
        // How many the driver sends depends on how fast this machine runs it (681 to 1,900 seen,
        // under a whole CI run's load and alone); what counts is that the fleet took nearly all
        // of them: only those sent to the killed node or while PostgreSQL was down may fail.
        #expect(report.acknowledged >= 200, "only \(report.acknowledged) schedules were acknowledged")
        #expect(report.acknowledged * 4 >= run.deadlines.count * 3, "only \(report.acknowledged) of \(run.deadlines.count) schedules were acknowledged")
        #expect(report.takeoverMilliseconds != nil, "the killed node owned no partition, or none was taken over")
    }
}

/// One run of the scenario: the processes, what was sent, and what their output said.
struct FleetRun {
    static let partitions = 6
    static let leaseMilliseconds: Int64 = 3000

    struct Node {
        var name: String
        var process: HourglassProcess
        /// How many of its output lines were read.
        var read = 0
        var alive = true
        /// Its incarnation: 1, then 2 after the restart.
        var incarnation: Int
    }

    struct Fire {
        var id: String
        var deadline: Int64
        var firedAt: Int64
        var node: String
        var incarnation: Int
        var seenAt: Int64
    }

    struct Owner {
        var node: String
        var partition: Int
        var epoch: Int64
        var seenAt: Int64
    }

    let url: String
    var random: SeededRandom
    var nodes: [Node] = []
    var failed = false

    // What was sent.
    var deadlines: [String: Int64] = [:]
    var cancelSent: Set<String> = []
    var waitingToCancel: [String] = []
    var sentThrough: [String: Int] = [:]
    var next = 0
    // What came back.
    var acknowledged: Set<String> = []
    var cancelDurableAt: [String: Int64] = [:]
    var fires: [Fire] = []
    var owners: [Owner] = []
    var errors = 0
    // When things happened (test clock, ms since the epoch).
    var nodeKilledAt: Int64 = 0
    var nodeRestartedAt: Int64 = 0
    var databaseKilledAt: Int64 = 0
    var databaseBackAt: Int64 = 0

    init(seed: UInt64, url: String) {
        self.url = url
        random = SeededRandom(seed: seed)
    }

    func arguments(_ name: String) -> [String] {
        ["run", "--postgres", url, "--node", name, "--partitions", "\(FleetRun.partitions)", "--lease-ms", "\(FleetRun.leaseMilliseconds)"]
    }

    /// The current owner of each partition, by the owner lines seen so far (the highest epoch wins).
    func currentOwners() -> [Int: Owner] {
        var current: [Int: Owner] = [:]
        for owner in owners where owner.epoch > (current[owner.partition]?.epoch ?? 0) { current[owner.partition] = owner }
        return current
    }

    mutating func drive(postgres: TemporaryPostgres) async throws {
        for (index, name) in ["n1", "n2", "n3"].enumerated() {
            nodes.append(Node(name: name, process: try HourglassProcess(arguments(name)), incarnation: 1))
            _ = index
        }
        // Every partition owned, and by every node some (two each once balanced; under a
        // loaded machine the handovers that balance them can still be under way).
        try await pump(until: "every partition owned, each node owning some", timeout: .seconds(120)) { run in
            let current = run.currentOwners()
            guard current.count == FleetRun.partitions else { return false }
            return Set(current.values.map(\.node)).count == 3
        }
        let start = nowMilliseconds()
        let databaseBack = DatabaseRestart()
        var databaseRestarting: Task<Void, Never>? = nil
        while true {
            let elapsed = nowMilliseconds() - start
            if elapsed >= 20_000 { break }
            if nodeKilledAt == 0 && elapsed >= 6_000 {
                // kill -9 n2; what it wrote before dying counts.
                nodeKilledAt = nowMilliseconds()
                nodes[1].process.signal(SIGKILL)
                _ = try? await nodes[1].process.waitForExit(timeout: .seconds(10))
                readOutput(of: 1)
                nodes[1].alive = false
            }
            if nodeRestartedAt == 0 && elapsed >= 9_000 {
                nodeRestartedAt = nowMilliseconds()
                nodes.append(Node(name: "n2", process: try HourglassProcess(arguments("n2")), incarnation: 2))
            }
            if databaseKilledAt == 0 && elapsed >= 13_000 {
                databaseKilledAt = nowMilliseconds()
                postgres.kill9()
                databaseRestarting = Task {
                    let result = await onOwnThread { Result { () throws(TemporaryPostgres.Failure) in try postgres.restart() } }
                    databaseBack.set(result)
                }
            }
            if databaseKilledAt != 0 && databaseBackAt == 0, let result = databaseBack.result {
                try result.get()
                databaseBackAt = nowMilliseconds()
            }
            send()
            for index in nodes.indices where nodes[index].alive {
                await nodes[index].process.pumpOutput(for: .milliseconds(15))
                readOutput(of: index)
            }
        }
        await databaseRestarting?.value
        if databaseBackAt == 0, let result = databaseBack.result {
            try result.get()
            databaseBackAt = nowMilliseconds()
        }
        // Every acknowledged, never-cancelled schedule fired (bounded: the last deadline plus
        // the time to take over and redeliver).
        let lastDeadline = deadlines.values.max() ?? 0
        let bound = max(Duration.seconds(30), .milliseconds(lastDeadline - nowMilliseconds()) + .seconds(30))
        try? await pump(until: "every acknowledged schedule fired", timeout: bound) { run in
            let fired = Set(run.fires.map(\.id))
            return run.acknowledged.subtracting(run.cancelSent).isSubset(of: fired)
        }
        // A little longer, for duplicates and late cancels to show.
        try? await pump(until: "", timeout: .seconds(1)) { _ in false }
    }

    /// Sends a few schedules through each live node, and cancels through another live node.
    mutating func send() {
        let live = nodes.indices.filter { nodes[$0].alive }
        guard !live.isEmpty else { return }
        let now = nowMilliseconds()
        for index in live {
            for _ in 0 ..< 3 {
                next += 1
                let id = "t-\(next)"
                let deadline = now + Int64.random(in: 1000 ... 6000, using: &random)
                deadlines[id] = deadline
                sentThrough[id] = index
                nodes[index].process.send(scheduleLine(id, at: deadline, payload: "p"))
                // One in four is cancelled (through another node) once its schedule is durable.
                if Int.random(in: 0 ..< 4, using: &random) == 0 { waitingToCancel.append(id) }
            }
        }
        var still: [String] = []
        for id in waitingToCancel {
            guard let deadline = deadlines[id], deadline - now > 800 else { continue }  // too late to be worth it
            guard acknowledged.contains(id) else { still.append(id); continue }
            let others = live.filter { $0 != sentThrough[id] }
            let through = others.isEmpty ? live[0] : others[Int.random(in: 0 ..< others.count, using: &random)]
            cancelSent.insert(id)
            nodes[through].process.send(cancelLine(id))
        }
        waitingToCancel = still
    }

    /// Takes in the lines node `index` wrote since the last call.
    mutating func readOutput(of index: Int) {
        let node = nodes[index]
        let parsed = node.process.parsed
        let now = nowMilliseconds()
        for event in parsed[node.read...] {
            guard let event, let kind = event["event"]?.string else { continue }
            switch kind {
            case "durable":
                guard let id = event["id"]?.string else { continue }
                if event["op"]?.string == "schedule" { acknowledged.insert(id) }
                if event["op"]?.string == "cancel" && cancelDurableAt[id] == nil { cancelDurableAt[id] = now }
            case "fired":
                guard let id = event["id"]?.string, let deadline = event["deadline"]?.int, let firedAt = event["fired_at"]?.int else { continue }
                fires.append(Fire(id: id, deadline: deadline, firedAt: firedAt, node: node.name, incarnation: node.incarnation, seenAt: now))
            case "owner":
                guard let partition = event["partition"]?.int, let epoch = event["epoch"]?.int else { continue }
                owners.append(Owner(node: node.name, partition: Int(partition), epoch: epoch, seenAt: now))
            case "error":
                errors += 1
            default:
                break
            }
        }
        nodes[index].read = parsed.count
    }

    /// Moves every live node's input and output until `done` holds or `timeout` passes.
    mutating func pump(until what: String, timeout: Duration, _ done: (FleetRun) -> Bool) async throws {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if done(self) { return }
            for index in nodes.indices where nodes[index].alive {
                await nodes[index].process.pumpOutput(for: .milliseconds(20))
                readOutput(of: index)
            }
        }
        if done(self) { return }
        throw CLITestFailure("timed out after \(timeout) waiting until \(what)\n\(tail)")
    }

    /// Stops every node still running (SIGKILL: what they have not written is not needed now).
    mutating func stopAll() {
        for index in nodes.indices where nodes[index].alive {
            nodes[index].process.signal(SIGKILL)
            nodes[index].alive = false
        }
    }

    /// The end of each node's stderr, for a failure message.
    var tail: String {
        nodes.map { node in
            let lines = node.process.stderr.split(separator: "\n").suffix(15).joined(separator: "\n")
            return "--- \(node.name) (incarnation \(node.incarnation)) stderr, last lines:\n\(lines)"
        }.joined(separator: "\n")
    }

    struct Report {
        var problems: [String] = []
        var acknowledged = 0
        var takeoverMilliseconds: Int64? = nil
        var summary = ""
    }

    func check() -> Report {
        var report = Report()
        report.acknowledged = acknowledged.count
        let firedIDs = Dictionary(grouping: fires, by: \.id)
        // 1. Every acknowledged schedule that was never cancelled fired.
        let mustFire = acknowledged.subtracting(cancelSent)
        let missing = mustFire.filter { firedIDs[$0] == nil }.sorted()
        if !missing.isEmpty {
            report.problems.append("\(missing.count) of \(mustFire.count) acknowledged schedules never fired, e.g. \(missing.prefix(10).map { "\($0) (deadline \(deadlines[$0]!), through node \(sentThrough[$0]!))" })")
        }
        // 2. No timer whose cancel was durable before its deadline fired.
        let strictlyCancelled = cancelDurableAt.filter { id, at in at < deadlines[id]! }.map(\.key)
        let firedAfterCancel = strictlyCancelled.filter { firedIDs[$0] != nil }.sorted()
        if !firedAfterCancel.isEmpty {
            report.problems.append("\(firedAfterCancel.count) timers fired after their cancel was durable: \(firedAfterCancel.prefix(10))")
        }
        // 3. Nothing fired early.
        let early = fires.filter { $0.firedAt < $0.deadline }
        if !early.isEmpty {
            report.problems.append("\(early.count) deliveries came before their deadline, e.g. \(early.prefix(5).map { "\($0.id) fired at \($0.firedAt), due \($0.deadline)" })")
        }
        let unknown = firedIDs.keys.filter { deadlines[$0] == nil }
        if !unknown.isEmpty { report.problems.append("timers fired that were never scheduled: \(unknown.prefix(5))") }
        // 4. The killed node's partitions were taken over in time.
        let atKill = Dictionary(owners.filter { $0.seenAt <= nodeKilledAt }.map { ($0.partition, $0) }) { old, new in
            new.epoch > old.epoch ? new : old
        }
        var takeovers: [Int: Int64] = [:]
        for (partition, owner) in atKill where owner.node == "n2" {
            let next = owners.filter { $0.partition == partition && $0.epoch > owner.epoch && $0.seenAt >= nodeKilledAt }
                .min { $0.seenAt < $1.seenAt }
            if let next { takeovers[partition] = next.seenAt - nodeKilledAt }
            else { report.problems.append("partition \(partition), owned by n2 when it was killed, was never taken over") }
        }
        report.takeoverMilliseconds = takeovers.values.max()
        if let worst = report.takeoverMilliseconds, worst > FleetRun.leaseMilliseconds + 5000 {
            report.problems.append("the killed node's partitions were taken over after \(worst) ms, more than the lease (\(FleetRun.leaseMilliseconds) ms) + 5 s")
        }
        // 5. Duplicates only around a death: fired by the killed node, or seen around the node's
        // death and return or the database's.
        func disturbed(_ fire: Fire) -> Bool {
            if fire.node == "n2" && fire.incarnation == 1 { return true }
            if fire.seenAt >= nodeKilledAt - 3000 && fire.seenAt <= nodeRestartedAt + 10_000 { return true }
            if databaseKilledAt != 0 && fire.seenAt >= databaseKilledAt - 3000 && fire.seenAt <= max(databaseBackAt, databaseKilledAt) + 15_000 { return true }
            return false
        }
        let duplicated = firedIDs.filter { $0.value.count > 1 }
        let unexplained = duplicated.filter { !$0.value.contains(where: disturbed) }.keys.sorted()
        if !unexplained.isEmpty {
            report.problems.append("\(unexplained.count) timers fired twice with no death nearby: \(unexplained.prefix(5).map { id in firedIDs[id]!.map { "\(id) by \($0.node) at \($0.seenAt)" } })")
        }
        // How often a node gave up on a call and opened new connections (Docs/REPLICATION.md,
        // "Calls that get no answer").
        let reconnects = nodes.reduce(0) { $0 + $1.process.stderr.components(separatedBy: "connecting anew").count - 1 }
        let late = fires.map { $0.firedAt - $0.deadline }.sorted()
        let p99 = late.isEmpty ? 0 : late[min(late.count - 1, late.count * 99 / 100)]
        report.summary = """
            \(deadlines.count) schedules sent, \(acknowledged.count) acknowledged, \(cancelSent.count) cancels sent \
            (\(cancelDurableAt.count) durable, \(strictlyCancelled.count) before the deadline); \(fires.count) deliveries of \
            \(firedIDs.count) timers, \(duplicated.count) delivered more than once; lateness p99 \(p99) ms; \(errors) error lines \
            (calls refused while the database was down); takeover of n2's \(takeovers.count) partitions after its kill: \
            \(takeovers.sorted { $0.key < $1.key }.map { "p\($0.key) \($0.value) ms" }.joined(separator: ", ")) \
            (lease \(FleetRun.leaseMilliseconds) ms); PostgreSQL down \(databaseBackAt - databaseKilledAt) ms; \(reconnects) \
            calls given up for lack of an answer (connection pool replaced)
            """
        return report
    }
}

/// The outcome of PostgreSQL's restart, set by the task that runs it.
final class DatabaseRestart: Sendable {
    private let state = Mutex<Result<Void, TemporaryPostgres.Failure>?>(nil)
    func set(_ result: Result<Void, TemporaryPostgres.Failure>) { state.withLock { $0 = result } }
    var result: Result<Void, TemporaryPostgres.Failure>? { state.withLock { $0 } }
}
