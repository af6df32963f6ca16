import Hourglass
import HourglassFleet
import HourglassTesting
import Synchronization

/// The replicated scenario: a fleet of three nodes in this process on one PostgreSQL (started by
/// the scenario in a temporary directory, on its own port, unless `--postgres` names one).
///
/// 1. Schedule: `callers` callers spread over the three nodes schedule `timers` order timers
///    (due in 30 minutes), one call each under `.replicated`: throughput, the latency of a call
///    (p50/p99/max), CPU per schedule (this process; PostgreSQL's is not counted), frames and
///    records per frame.
/// 2. Takeover: with every timer pending, one node stops as a crash would (nothing released);
///    a canary timer per partition falls due 100 ms later. The other two claim its partitions
///    when the leases expire, rebuild their wheels from PostgreSQL and fire the canaries: the
///    time from the crash to the first overdue fire of each taken-over partition, against the
///    lease.
func replicatedScenario(_ ctx: Context, postgresURL: String?) async throws -> [Measurement] {
    let n = ctx.timers
    var server: TemporaryPostgres? = nil
    let url: String
    if let postgresURL {
        url = postgresURL
    } else {
        status("replicated: starting PostgreSQL (initdb in a temporary directory)")
        let started = try TemporaryPostgres.start()
        server = started
        url = started.url
    }
    defer { server?.remove() }
    let partitions = 12
    let lease = Duration.seconds(5)
    func options(_ node: String) throws -> FleetOptions {
        var options = try FleetOptions(postgres: url, node: node)
        options.partitions = partitions
        options.lease = lease
        options.checkpointRecords = 1 << 40  // the takeover reads the log: the bound the issue names
        return options
    }
    status("replicated: starting 3 nodes")
    var started: [HourglassFleetNode] = []
    for name in ["bench-1", "bench-2", "bench-3"] { started.append(try await HourglassFleetNode.start(fleet: try options(name))) }
    let nodes = started
    try await waitFor("every partition owned", seconds: 60) {
        nodes.reduce(0) { $0 + $1.status().owned.filter(\.ready).count } == partitions
    }
    status("replicated: generating \(n) order timers")
    let workload = Workload.orderTimeouts(count: n, payloadBytes: ctx.payloadBytes, seed: ctx.seed, now: realtimeMilliseconds())
    defer { withExtendedLifetime(workload) {} }

    // 1. Schedules, one call per timer, every caller on one node (caller i on node i % 3).
    let latencies = Latencies()
    let progress = Progress(label: "replicated: schedule", total: n)
    let framesBefore = nodes.reduce(0) { $0 + $1.status().framesAppended }
    let statementsBefore = nodes.reduce(0) { $0 + $1.status().statementsCommitted }
    let start = Mark.now()
    try await runCallers(count: n, callers: ctx.callers, batch: ctx.batch) { range in
        let node = nodes[(range.lowerBound / ctx.batch) % ctx.callers % 3]
        let began = monotonicNanoseconds()
        if range.count == 1 {
            let i = range.lowerBound
            try await node.schedule(id: workload.ids[i], at: Deadline(millisecondsSinceEpoch: workload.deadlines[i]), payload: workload.payloads[i])
        } else {
            try await node.schedule(range.map { workload.request($0) })
        }
        let ms = Double(monotonicNanoseconds() - began) / 1e6
        latencies.samples.withLock { $0.append(ms) }
        progress.add(range.count)
    }
    let end = Mark.now()
    progress.finish()
    let frames = nodes.reduce(0) { $0 + $1.status().framesAppended } - framesBefore
    let statements = nodes.reduce(0) { $0 + $1.status().statementsCommitted } - statementsBefore
    var schedule = Measurement(scenario: "replicated: schedule", system: "hourglass-fleet", durability: "replicated", timers: n,
                               payloadBytes: ctx.payloadBytes, seconds: start.seconds(to: end))
    schedule.setCPU(from: start, to: end)
    schedule.callers = ctx.callers
    schedule.setLatency(Percentiles(latencies.samples.withLock { $0 }))
    schedule.extra += [("commits", Double(statements)), ("records_per_commit", Double(n) / Double(max(1, statements))),
                       ("frames", Double(frames)), ("records_per_frame", Double(n) / Double(max(1, frames)))]
    schedule.notes.append("3 nodes in this process, \(partitions) partitions, one PostgreSQL 15 on this machine (synchronous_commit on, fsync on); \(ctx.callers) callers, \(ctx.batch) timer(s) per call; a call returns once its frame is committed; CPU is this process's only (PostgreSQL's is not counted)")
    schedule.notes.append("\(statements) commits (\(format1(Double(n) / Double(max(1, statements)))) records each: group commit per node, one statement for every partition it touches), \(frames) frames (\(format1(Double(n) / Double(max(1, frames)))) records each)")

    // 2. Takeover of a crashed node's partitions, every timer still pending.
    try await waitFor("every schedule applied by its owner", seconds: 300) {
        nodes.reduce(0) { $0 + $1.heldTimersForBench } == n
    }
    let victim = nodes[1]
    let taken = victim.status().owned.map(\.partition)
    let pendingOnVictim = victim.heldTimersForBench
    let now = realtimeMilliseconds()
    // One canary per partition, due 100 ms after the crash.
    var canaries: [TimerRequest] = []
    var index = 0
    var covered = Set<Int>()
    while covered.count < partitions {
        let id = TimerID("canary-\(index)")
        let partition = victim.partitionForBench(id)
        if covered.insert(partition).inserted {
            canaries.append(TimerRequest(id: id, deadline: Deadline(millisecondsSinceEpoch: now + 100)))
        }
        index += 1
    }
    try await nodes[0].schedule(canaries)
    let survivors = [nodes[0], nodes[2]]
    let firstFire = FirstFires()
    let crashMark = Mark.now()
    let crashed = crashMark.nanoseconds
    status("replicated: crashing bench-2 (\(taken.count) partitions, \(pendingOnVictim) pending timers); lease \(lease)")
    await victim.abandon()
    let consumers = survivors.map { node in
        Task {
            for await delivery in node.deliveries {
                guard let id = delivery.id.string, id.hasPrefix("canary-") else { continue }
                let partition = node.partitionForBench(delivery.id)
                let at = monotonicNanoseconds()
                firstFire.times.withLock { if $0[partition] == nil { $0[partition] = at } }
                _ = try? await node.ack(delivery)
            }
        }
    }
    try await waitFor("the crashed node's canaries fired", seconds: 120) {
        firstFire.times.withLock { fired in taken.allSatisfy { fired[$0] != nil } }
    }
    let fires = firstFire.times.withLock { fired in taken.map { Double(fired[$0]! - crashed) / 1e6 } }
    let takeovers = survivors.flatMap { $0.status().takeovers }.filter { taken.contains($0.partition) && $0.epoch > 1 }
    var takeover = Measurement(scenario: "replicated: takeover", system: "hourglass-fleet", durability: "replicated",
                               timers: pendingOnVictim, payloadBytes: ctx.payloadBytes, seconds: (fires.max() ?? 0) / 1000)
    takeover.setLatency(Percentiles(fires))
    takeover.setCPU(from: crashMark, to: Mark.now(), operations: pendingOnVictim)
    takeover.extra += [
        ("lease_ms", Double(lease.components.seconds * 1000)),
        ("first_overdue_fire_max_ms", fires.max() ?? -1),
        ("over_lease_ms", (fires.max() ?? 0) - Double(lease.components.seconds * 1000)),
        ("rebuild_max_ms", Double(takeovers.map(\.rebuildMilliseconds).max() ?? -1)),
        ("pending_in_all", Double(n + canaries.count)),
    ]
    takeover.notes.append("bench-2 stopped as a crash would (nothing released) holding \(taken.count) of \(partitions) partitions and \(pendingOnVictim) of \(n) pending timers; p50/p99/max: ms from the crash to the first overdue fire of each of its partitions (a canary due 100 ms after the crash); target: lease + 1 s")
    takeover.notes.append("rebuilds (ms from claim to a wheel rebuilt from the log in PostgreSQL): \(takeovers.map { "\($0.partition): \($0.rebuildMilliseconds) ms, \($0.timers) timers" }.joined(separator: "; "))")
    for consumer in consumers { consumer.cancel() }
    for node in survivors { await node.close() }
    for consumer in consumers { _ = await consumer.value }
    return [schedule, takeover]
}

/// Polls `condition` every 20 ms until it holds; fails after `seconds`.
private func waitFor(_ what: String, seconds: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw BenchFailure("replicated: timed out waiting until \(what)")
}

/// Call latencies, in milliseconds.
final class Latencies: Sendable {
    let samples = Mutex<[Double]>([])
}

/// When each partition first fired a canary (monotonic ns).
final class FirstFires: Sendable {
    let times = Mutex<[Int: UInt64]>([:])
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension HourglassFleetNode {
    var heldTimersForBench: Int { status().owned.reduce(0) { $0 + $1.pendingTimers } }
    func partitionForBench(_ id: TimerID) -> Int { partition(of: id) }
}
