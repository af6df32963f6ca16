import Hourglass
import HourglassFleet
import HourglassTesting
import Logging
import PostgresNIO
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One PostgreSQL server for the fleet suites (started at first use, by `TemporaryPostgres`),
/// and a fresh database in it for each test.
enum FleetFixture {
    private static let shared = Mutex<TemporaryPostgres?>(nil)
    private static let counter = Atomic<Int>(0)

    static func server() throws -> TemporaryPostgres {
        try shared.withLock { server in
            if let server { return server }
            let started = try TemporaryPostgres.start()
            server = started
            // The suite has no end hook: stop the server when the test process exits.
            atexit { FleetFixture.stopShared() }
            return started
        }
    }

    static func stopShared() {
        shared.withLock { server in
            server?.remove()
            server = nil
        }
    }

    /// A new, empty database on the shared server; returns its URL.
    static func freshDatabase() async throws -> String {
        let server = try server()
        let name = "fleet_\(getpid())_\(counter.wrappingAdd(1, ordering: .relaxed).newValue)"
        let configuration = PostgresConnection.Configuration(
            host: server.host, port: server.port, username: server.user, password: nil, database: server.database, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: Logger(label: "fixture"))
        try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Logger(label: "fixture"))
        try await connection.close()
        return "postgres://\(server.user)@\(server.host):\(server.port)/\(name)"
    }

    /// Runs `statement` on the database of `url` (one made by `freshDatabase`), as an operator
    /// or another node's lost answer would change it behind the nodes' backs.
    static func execute(_ statement: String, on url: String) async throws {
        let server = try server()
        let name = String(url.split(separator: "/").last!)
        let configuration = PostgresConnection.Configuration(
            host: server.host, port: server.port, username: server.user, password: nil, database: name, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 2, logger: Logger(label: "fixture"))
        do {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: Logger(label: "fixture"))
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    /// Options for a node of the fleet at `url`: short leases and polls, so tests move quickly.
    static func options(_ url: String, node: String, partitions: Int = 4) throws -> FleetOptions {
        var options = try FleetOptions(postgres: url, node: node)
        options.partitions = partitions
        options.lease = .seconds(3)  // debug builds run slowly: a lease that survives a busy moment
        // And calls that may take long without failing the test: beside the whole suite, a
        // first connection once took over 3 s (the tests of the call timeout set their own).
        options.callTimeout = .seconds(10)
        options.pollInterval = .milliseconds(20)
        return options
    }

    /// Waits (polling, bounded) until `condition` holds; fails the test when it never does.
    static func waitUntil(
        _ what: String, timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
        throw FixtureTimeout(what: what)
    }

    struct FixtureTimeout: Error { var what: String }

    /// Takes every delivery the nodes hand out and acknowledges it, until `done` holds for the
    /// ids taken so far (in order, duplicates kept); returns them. Fails the test (bounded)
    /// when `done` never holds.
    static func takeAndAck(
        from nodes: [HourglassFleetNode], until what: String, poll: Duration, sourceLocation: SourceLocation = #_sourceLocation,
        _ done: ([String]) -> Bool
    ) async throws -> [String] {
        var fired: [String] = []
        try await waitUntil(what, sourceLocation: sourceLocation) {
            for node in nodes {
                while let delivery = await next(node.deliveries, timeout: poll) {
                    fired.append(delivery.id.string!)
                    try await node.ack(delivery)
                }
            }
            return done(fired)
        }
        return fired
    }

    /// Takes the next delivery, or nil after `timeout`.
    static func next(_ deliveries: Deliveries, timeout: Duration = .seconds(20)) async -> Delivery? {
        await withTaskGroup(of: Delivery?.self) { group in
            group.addTask {
                var iterator = deliveries.makeAsyncIterator()
                return await iterator.next()
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            // The taker can win the race after the timer: its delivery is kept, never dropped.
            var taken = first
            for await other in group where taken == nil { taken = other }
            return taken
        }
    }
}

extension HourglassFleetNode {
    /// Whether this node owns every one of the fleet's partitions and has rebuilt them.
    var ownsAll: Bool {
        let status = status()
        return status.owned.count == options.partitions && status.owned.allSatisfy(\.ready)
    }

    /// Timers held by the partitions this node owns.
    var heldTimers: Int { status().owned.reduce(0) { $0 + $1.pendingTimers } }
}
