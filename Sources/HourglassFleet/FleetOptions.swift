import Hourglass

/// Where a fleet's PostgreSQL is, who this node is, and how ownership works.
///
/// ```swift
/// var options = try FleetOptions(postgres: "postgres://hourglass@db.internal:5432/timers", node: "orders-7")
/// options.lease = .seconds(5)
/// let node = try await HourglassFleetNode.start(.memory(durability: .replicated), fleet: options)
/// ```
public struct FleetOptions: Sendable {
    /// The PostgreSQL server, as a URL's parts.
    public var postgres: PostgresAddress
    /// This node's name: unique in the fleet, stable across restarts (a host name, a pod name).
    /// At most 200 bytes of UTF-8.
    public var node: String
    /// How many partitions the fleet's timers are spread over: fixed when the fleet's tables are
    /// created (recorded in `hourglass_fleet`); a node configured with another count is refused.
    /// Each partition has one owner at a time, so this bounds how many nodes share the firing.
    /// 1 ... 256; 12 by default.
    public var partitions: Int = 12
    /// How long a partition's lease lasts without renewal, by the database's clock: a dead
    /// node's partitions are taken over this long after its last renewal. Owners renew every
    /// quarter of it. 100 ms ... 1 hour; 5 s by default.
    public var lease: Duration = .seconds(5)
    /// How often an owner reads its partitions' logs when no notification came (a missed
    /// `NOTIFY` costs at most this). 1 ms ... 60 s; 100 ms by default.
    public var pollInterval: Duration = .milliseconds(100)
    /// The most records one appended frame carries (a group commit). 1 ... 65536; 4096 by default.
    public var maxFrameRecords: Int = 4096
    /// An owner writes a checkpoint of a partition to PostgreSQL (and deletes the frames it
    /// covers) once this many records were applied since the last one. At least 1; 200,000 by
    /// default.
    public var checkpointRecords: Int = 200_000
    /// The most connections this node opens to PostgreSQL. 2 ... 1000; 16 by default.
    public var maxConnections: Int = 16
    /// How long a statement may go unanswered before the call fails with
    /// `HourglassError.database` and the node drops its connections and opens new ones (a
    /// server that was killed or cut off can leave a connection waiting forever). Reading and
    /// writing checkpoints, and a node's start (its first connection, creating the tables),
    /// get ten times as long. nil (the default): the lease, at least 2 s and at most 10 s.
    /// 100 ms ... 1 hour when set.
    public var callTimeout: Duration? = nil

    /// A fleet on the server at `address`, as this node.
    /// - Parameters:
    ///   - address: the PostgreSQL server.
    ///   - node: this node's name in the fleet.
    public init(postgres address: PostgresAddress, node: String) {
        self.postgres = address
        self.node = node
    }

    /// A fleet on the server a `postgres://` URL names, as this node.
    /// - Parameters:
    ///   - url: `postgres://user[:password]@host[:port][/database]` (`postgresql://` too).
    ///   - node: this node's name in the fleet.
    /// - Throws: `HourglassError.invalidConfiguration` naming what is wrong with the URL.
    public init(postgres url: String, node: String) throws(HourglassError) {
        self.init(postgres: try PostgresAddress(url: url), node: node)
    }

    func validate() throws(HourglassError) {
        func require(_ condition: Bool, _ message: String) throws(HourglassError) {
            if !condition { throw .invalidConfiguration(message) }
        }
        try require(!node.isEmpty && node.utf8.count <= 200, "the node name must be 1 ... 200 bytes, not \(node.utf8.count)")
        try require(!node.utf8.contains(0), "the node name holds a NUL byte")
        try require(partitions >= 1 && partitions <= 256, "partitions must be 1 ... 256, not \(partitions)")
        try require(lease >= .milliseconds(100) && lease <= .seconds(3600), "lease must be 100 ms ... 1 hour, not \(lease)")
        try require(pollInterval >= .milliseconds(1) && pollInterval <= .seconds(60), "pollInterval must be 1 ms ... 60 s, not \(pollInterval)")
        try require(maxFrameRecords >= 1 && maxFrameRecords <= 65536, "maxFrameRecords must be 1 ... 65536, not \(maxFrameRecords)")
        try require(checkpointRecords >= 1, "checkpointRecords must be at least 1, not \(checkpointRecords)")
        try require(maxConnections >= 2 && maxConnections <= 1000, "maxConnections must be 2 ... 1000, not \(maxConnections)")
        if let callTimeout {
            try require(callTimeout >= .milliseconds(100) && callTimeout <= .seconds(3600), "callTimeout must be 100 ms ... 1 hour, not \(callTimeout)")
        }
    }

    var leaseMilliseconds: Int64 { lease.wholeMilliseconds }

    /// `callTimeout`, or its default from the lease.
    var effectiveCallTimeout: Duration { callTimeout ?? min(max(lease, .seconds(2)), .seconds(10)) }
}

/// A PostgreSQL server's address and credentials.
public struct PostgresAddress: Sendable, Hashable, CustomStringConvertible {
    /// The host name or address.
    public var host: String
    /// The TCP port (5432 by default).
    public var port: Int
    /// The user to connect as.
    public var username: String
    /// The password, if the server asks for one.
    public var password: String?
    /// The database (the user's name by default, as libpq does).
    public var database: String

    /// An address from its parts.
    /// - Parameters:
    ///   - host: the host name or address.
    ///   - port: the TCP port.
    ///   - username: the user to connect as.
    ///   - password: the password, if any.
    ///   - database: the database; the user's name when nil.
    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database ?? username
    }

    /// Parses `postgres://user[:password]@host[:port][/database]` (or `postgresql://`).
    /// Percent-escapes in the user, password and database are decoded; query parameters are
    /// refused (TLS and other options are not supported yet).
    /// - Parameter url: the URL.
    /// - Throws: `HourglassError.invalidConfiguration` naming the part that is wrong.
    public init(url: String) throws(HourglassError) {
        func fail(_ reason: String) -> HourglassError { .invalidConfiguration("PostgreSQL URL '\(PostgresAddress.redacted(url))': \(reason)") }
        var rest: Substring
        if url.hasPrefix("postgres://") {
            rest = url.dropFirst("postgres://".count)
        } else if url.hasPrefix("postgresql://") {
            rest = url.dropFirst("postgresql://".count)
        } else {
            throw fail("must start with postgres:// or postgresql://")
        }
        if rest.contains("?") { throw fail("query parameters are not supported") }
        var database: String? = nil
        if let slash = rest.firstIndex(of: "/") {
            let name = rest[rest.index(after: slash)...]
            if !name.isEmpty { database = try PostgresAddress.decode(name, or: fail("the database name has a bad %-escape")) }
            rest = rest[..<slash]
        }
        guard let at = rest.lastIndex(of: "@") else { throw fail("no user (postgres://user@host)") }
        let credentials = rest[..<at]
        let hostPort = rest[rest.index(after: at)...]
        var username = Substring(credentials)
        var password: String? = nil
        if let colon = credentials.firstIndex(of: ":") {
            username = credentials[..<colon]
            password = try PostgresAddress.decode(credentials[credentials.index(after: colon)...], or: fail("the password has a bad %-escape"))
        }
        let user = try PostgresAddress.decode(username, or: fail("the user has a bad %-escape"))
        if user.isEmpty { throw fail("the user is empty") }
        var host = Substring(hostPort)
        var port = 5432
        if let colon = hostPort.lastIndex(of: ":"), !hostPort.hasSuffix("]") {
            host = hostPort[..<colon]
            guard let parsed = Int(hostPort[hostPort.index(after: colon)...]), (1 ... 65535).contains(parsed) else {
                throw fail("the port must be 1 ... 65535")
            }
            port = parsed
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        if host.isEmpty { throw fail("the host is empty") }
        self.init(host: String(host), port: port, username: user, password: password, database: database)
    }

    /// `postgres://user@host:port/database`, without the password.
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    private static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://"), let colon = url[scheme.upperBound ..< at].firstIndex(of: ":") else {
            return url
        }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    private static func decode(_ text: Substring, or failure: @autoclosure () -> HourglassError) throws(HourglassError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                    throw failure()
                }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw failure() }
        return string
    }
}

extension Duration {
    /// The duration in whole milliseconds, rounded down.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
