import ArgumentParser
import Hourglass
import HourglassFleet
import Logging

/// `hourglass run --postgres URL --node NAME`: a node of a fleet, driven by the same NDJSON as
/// a local run. A `durable` line means committed in PostgreSQL; a cancel's carries no `found`
/// (an append cannot know). `fired` lines carry `"node"`; an `owner` line reports each
/// partition the node takes over: `{"event":"owner","partition":3,"epoch":7,"timers":1200,
/// "rebuild_ms":41,"first_fire_ms":45}`.
extension RunCommand {
    func runFleetNode(url: String, node name: String) async throws {
        let stop = StopSignal()
        let sources = Self.handleSignals(stop)
        defer { for source in sources { source.cancel() } }
        let output = Output()
        let node: HourglassFleetNode
        do throws(HourglassError) {
            var options = try FleetOptions(postgres: url, node: name)
            if let partitions { options.partitions = partitions }
            if let leaseMs { options.lease = .milliseconds(leaseMs) }
            var configuration = Configuration(storage: .memory, durability: .replicated)
            // Ownership changes and failures, on stderr.
            configuration.logger = Logger(label: "hourglass", factory: { StreamLogHandler.standardError(label: $0) })
            configuration.logger.logLevel = .notice
            node = try await HourglassFleetNode.start(
                fleet: options, configuration: configuration, clock: SystemClock(),
                observer: { takeover in
                    var line = JSONLine()
                    line.string("event", "owner")
                    line.int("partition", takeover.partition)
                    line.int("epoch", takeover.epoch)
                    line.int("timers", takeover.timers)
                    line.int("rebuild_ms", takeover.rebuildMilliseconds)
                    if let first = takeover.firstDeliveryMilliseconds { line.int("first_fire_ms", first) }
                    output.write(line.line)
                })
        } catch {
            printError("hourglass: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        let outstanding = Counter()
        let consumer = Task {
            for await delivery in node.deliveries {
                output.write(Self.firedLine(delivery, node: name))
                node.submitAck(delivery) { _ in }
            }
        }
        await Self.readCommands(now: { node.clock.now() }, output, stop) { commands in
            for (command, reportError) in commands {
                @Sendable func durable(_ op: String, _ id: TimerID, _ result: Result<Void, HourglassError>) {
                    switch result {
                    case .success:
                        output.write(Self.durableLine(op, id))
                    case let .failure(error):
                        reportError(error.description)
                    }
                    outstanding.add(-1)
                }
                switch command {
                case let .schedule(request):
                    outstanding.add(1)
                    node.submit(request) { durable("schedule", request.id, $0) }
                case let .cancel(id):
                    outstanding.add(1)
                    node.submitCancel(id) { durable("cancel", id, $0) }
                case .scheduleRecurring:
                    reportError("recurring timers are not supported by a fleet node yet (Docs/REPLICATION.md)")
                }
            }
        }
        // End of input (or a signal): a node keeps running until told to stop.
        while !stop.isFired {
            if exitWhenIdle && outstanding.value == 0 {
                let status = node.status()
                if status.owned.allSatisfy({ $0.ready && $0.pendingTimers == 0 }) && node.deliveries.buffered == 0 { break }
            }
            try? await Task.sleep(for: .milliseconds(exitWhenIdle ? 20 : 50))
        }
        await node.close()
        _ = await consumer.value
    }
}
