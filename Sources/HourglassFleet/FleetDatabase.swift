import Hourglass
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The fleet's tables and every statement it runs on them (Docs/REPLICATION.md has the schema).
///
/// Sequence numbers within a partition are the order of commit: every append takes them with
/// an `UPDATE` of the partition's row, whose row lock serializes the partition's appenders until
/// each commits, in the same statement as its `INSERT` (one round trip, one implicit
/// transaction; `hourglass_append` does it for several partitions at once, locking them in
/// ascending order). A reader asking for "the frames from N on" therefore misses none.
final class FleetDatabase: Sendable {
    let logger: Logger
    /// The fleet format this build writes and reads.
    static let format: Int32 = 1
    static let channel = "hourglass_frames"

    let address: PostgresAddress
    private let maxConnections: Int
    /// How long a statement may go unanswered (`FleetOptions.callTimeout`).
    let callTimeout: Duration
    /// For reading and writing checkpoints, which can be large.
    var bulkTimeout: Duration { callTimeout * 10 }

    /// The connection pool in use, and its generation: a call that gets no answer in time
    /// replaces it (see `run`).
    private struct Pool {
        var client: PostgresClient
        var runner: Task<Void, Never>? = nil
        var generation = 0
        var closed = false
    }

    private let pool: Mutex<Pool>

    init(address: PostgresAddress, maxConnections: Int, callTimeout: Duration, logger: Logger) {
        self.address = address
        self.maxConnections = maxConnections
        self.callTimeout = callTimeout
        self.logger = logger
        pool = Mutex(Pool(client: FleetDatabase.makeClient(address: address, maxConnections: maxConnections, logger: logger)))
    }

    private static func makeClient(address: PostgresAddress, maxConnections: Int, logger: Logger) -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: .disable)
        configuration.options.maximumConnections = maxConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.keepAliveBehavior = nil
        return PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// Starts the connection pool.
    func start() {
        pool.withLock { pool in
            let client = pool.client
            pool.runner = Task { await client.run() }
        }
    }

    /// Stops the connection pool, waiting for it at most a call timeout (a pool whose server
    /// vanished may never finish closing; it is abandoned then).
    func shutdown() async {
        let runner = pool.withLock { pool -> Task<Void, Never>? in
            pool.closed = true
            return pool.runner
        }
        guard let runner else { return }
        runner.cancel()
        _ = await FleetDatabase.race(callTimeout) { await runner.value }
    }

    /// The pool in use and its generation.
    var current: (client: PostgresClient, generation: Int) { pool.withLock { ($0.client, $0.generation) } }

    /// Replaces the pool of `generation` (unless that was done already) with a new one; the old
    /// one is told to stop and left to finish on its own, with whatever calls hang in it.
    private func replacePool(after generation: Int, because operation: String) {
        let old = pool.withLock { pool -> Task<Void, Never>? in
            guard pool.generation == generation, !pool.closed, pool.runner != nil else { return nil }
            let old = pool.runner
            let client = FleetDatabase.makeClient(address: address, maxConnections: maxConnections, logger: logger)
            pool.client = client
            pool.generation += 1
            pool.runner = Task { await client.run() }
            return old
        }
        guard let old else { return }
        old.cancel()
        logger.warning("fleet: PostgreSQL did not answer in time; connecting anew", metadata: [
            "operation": "\(operation)", "timeout": "\(callTimeout)"])
    }

    /// Runs `body` on the pool in use, turning what PostgreSQL or the connection throws into
    /// `.database(operation:)`. A body that gets no answer within `timeout` (the call timeout
    /// by default) is abandoned: the call fails, and the pool is replaced, since a connection
    /// whose server was killed can wait forever. Whether an abandoned write committed is
    /// unknown to the caller, as with any error from a commit. `operation` names the call in
    /// the error; it is built only when the call fails.
    func run<T: Sendable>(
        _ operation: @autoclosure () -> String, timeout: Duration? = nil, _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) async throws(HourglassError) -> T {
        let (client, generation) = current
        let limit = timeout ?? callTimeout
        switch await FleetDatabase.race(limit, { try await body(client) }) {
        case let .success(value)?:
            return value
        case let .failure(error as HourglassError)?:
            throw error
        case let .failure(error)?:
            throw .database(operation: operation(), message: FleetDatabase.describe(error))
        case nil:
            if Task.isCancelled { throw .database(operation: operation(), message: "cancelled") }
            replacePool(after: generation, because: operation())
            throw .database(operation: operation(), message: "no answer from PostgreSQL within \(limit); whether it was done is unknown")
        }
    }

    /// `body`'s result, or nil when it takes longer than `limit` or the calling task is
    /// cancelled; `body` runs in a task of its own, cancelled (and abandoned) then.
    static func race<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
        let slot = OneShot<Result<T, any Error>?>()
        let work = Task {
            do { slot.fill(.success(try await body())) } catch { slot.fill(.failure(error)) }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            slot.fill(nil)
        }
        let result = await withTaskCancellationHandler {
            await slot.value()
        } onCancel: {
            slot.fill(nil)
        }
        timer.cancel()
        if result == nil { work.cancel() }
        return result
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                let code = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return message + code
            }
            return "\(error.code)"
        }
        return String(describing: error)
    }

    /// Opens one connection and closes it: a server that cannot be reached (or refuses the
    /// user) is an error now, rather than calls that wait for the pool to give up.
    func probe() async throws(HourglassError) {
        var configuration = PostgresConnection.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        // The start-up's calls get the long limit: a first connection to a loaded server, and
        // DDL waiting for its locks behind other nodes' statements, are slow without hanging.
        _ = try await run("connecting to \(address)", timeout: bulkTimeout) { [logger, configuration] _ in
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            try await connection.close()
        }
    }

    // MARK: Schema

    /// Creates the tables when missing (one node at a time: a transaction-scoped advisory lock)
    /// and records the partition count; returns the recorded count, refusing another.
    func prepare(partitions: Int) async throws(HourglassError) {
        let recorded: (Int32, Int32) = try await run("creating the fleet's tables", timeout: bulkTimeout) { [logger] client in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(7361726115)", logger: logger)
                for statement in FleetDatabase.schema {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO hourglass_fleet (singleton, partitions, format) VALUES (true, \(Int32(partitions)), \(FleetDatabase.format)) ON CONFLICT DO NOTHING",
                    logger: logger)
                let rows = try await connection.query("SELECT partitions, format FROM hourglass_fleet", logger: logger)
                var found: (Int32, Int32)? = nil
                for try await row in rows.decode((Int32, Int32).self) { found = row }
                guard let found else { throw HourglassError.database(operation: "reading hourglass_fleet", message: "no row") }
                if found.0 == Int32(partitions) && found.1 == FleetDatabase.format {
                    try await connection.query(
                        """
                        INSERT INTO hourglass_partitions (partition, next_seq, owner, epoch, expires_at)
                        SELECT g, 1, NULL, 0, '-infinity' FROM generate_series(0, \(Int32(partitions - 1))) AS g ON CONFLICT DO NOTHING
                        """,
                        logger: logger)
                }
                return found
            }
        }
        if recorded.1 != FleetDatabase.format {
            throw .invalidConfiguration("the fleet's tables are format \(recorded.1); this build reads format \(FleetDatabase.format)")
        }
        if recorded.0 != Int32(partitions) {
            throw .invalidConfiguration(
                "the fleet was created with \(recorded.0) partitions (hourglass_fleet), not \(partitions): configure partitions = \(recorded.0)")
        }
    }

    static let schema: [String] = [
        """
        CREATE TABLE IF NOT EXISTS hourglass_fleet (
            singleton  boolean PRIMARY KEY CHECK (singleton),
            partitions int NOT NULL,
            format     int NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE IF NOT EXISTS hourglass_partitions (
            partition  int PRIMARY KEY,
            next_seq   bigint NOT NULL,
            owner      text,
            epoch      bigint NOT NULL,
            expires_at timestamptz NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS hourglass_frames (
            partition int NOT NULL,
            seq       bigint NOT NULL,
            records   int NOT NULL,
            body      bytea NOT NULL,
            PRIMARY KEY (partition, seq))
        """,
        """
        CREATE TABLE IF NOT EXISTS hourglass_checkpoints (
            partition int NOT NULL,
            start_seq bigint NOT NULL,
            chunk     int NOT NULL,
            timers    bigint NOT NULL,
            body      bytea NOT NULL,
            PRIMARY KEY (partition, start_seq, chunk))
        """,
        """
        CREATE TABLE IF NOT EXISTS hourglass_nodes (
            node         text PRIMARY KEY,
            heartbeat_at timestamptz NOT NULL)
        """,
        // Frames and checkpoints are LZ4-compressed already: PostgreSQL's own compression of
        // large values (pglz) would only burn the server's CPU. EXTERNAL stores them out of line
        // when large, uncompressed. (Checked first: ALTER TABLE takes the table's strongest lock.)
        """
        DO $$ BEGIN
            IF (SELECT attstorage FROM pg_attribute WHERE attrelid = 'hourglass_frames'::regclass AND attname = 'body') <> 'e' THEN
                ALTER TABLE hourglass_frames ALTER COLUMN body SET STORAGE EXTERNAL;
            END IF;
            IF (SELECT attstorage FROM pg_attribute WHERE attrelid = 'hourglass_checkpoints'::regclass AND attname = 'body') <> 'e' THEN
                ALTER TABLE hourglass_checkpoints ALTER COLUMN body SET STORAGE EXTERNAL;
            END IF;
        END $$
        """,
        // A node's group commit: frames for several partitions (a partition may have several,
        // in order) in one statement. The partitions' rows are locked first, in ascending
        // order, and every other statement that locks several partition rows (hourglass_renew)
        // takes them in that order too, so none deadlocks; the UPDATE then takes each frame's
        // sequence numbers, and the locks are held to the commit: the order of sequence numbers
        // is the order of commit. Set-based: two statements whatever the frame count.
        """
        CREATE OR REPLACE FUNCTION hourglass_append(ps int[], ns int[], bodies bytea[])
        RETURNS TABLE (o_partition int, o_seq bigint) LANGUAGE sql AS $$
            SELECT 1 FROM hourglass_partitions WHERE partition = ANY(ps) ORDER BY partition FOR UPDATE;
            WITH input AS (SELECT t.p, t.n, t.b, t.k FROM unnest(ps, ns, bodies) WITH ORDINALITY AS t(p, n, b, k)),
                 totals AS (SELECT p, sum(n)::bigint AS total FROM input GROUP BY p),
                 taken AS (UPDATE hourglass_partitions h SET next_seq = h.next_seq + totals.total FROM totals
                           WHERE h.partition = totals.p RETURNING h.partition AS p, h.next_seq - totals.total AS base)
            INSERT INTO hourglass_frames (partition, seq, records, body)
            SELECT i.p, taken.base + sum(i.n) OVER (PARTITION BY i.p ORDER BY i.k) - i.n, i.n, i.b
            FROM input i JOIN taken ON taken.p = i.p
            RETURNING partition, seq;
        $$
        """,
        // A node's lease renewal, one partition at a time in ascending order (see hourglass_append).
        """
        CREATE OR REPLACE FUNCTION hourglass_renew(n text, lease_ms bigint)
        RETURNS TABLE (o_partition int, o_epoch bigint) LANGUAGE plpgsql AS $$
        DECLARE
            p int;
        BEGIN
            FOR p IN SELECT partition FROM hourglass_partitions WHERE owner = n AND expires_at > now() ORDER BY partition LOOP
                UPDATE hourglass_partitions SET expires_at = now() + lease_ms * interval '1 millisecond'
                WHERE partition = p AND owner = n AND expires_at > now()
                RETURNING partition, epoch INTO o_partition, o_epoch;
                IF FOUND THEN
                    RETURN NEXT;
                END IF;
            END LOOP;
        END $$
        """,
    ]

    // MARK: Appending

    /// A frame to append: its partition, its record count, its bytes.
    struct NewFrame: Sendable {
        var partition: Int
        var records: Int
        var body: ByteBuffer
    }

    /// Appends `frames` (in partition order; a partition may have several, kept in order) in
    /// one statement and one commit; returns once committed. The owners are notified apart
    /// (`notify`): a transaction that notifies takes a database-wide lock at commit, held
    /// through its WAL flush, which would make every append of the fleet commit one after
    /// another.
    func append(frames: [NewFrame]) async throws(HourglassError) {
        let partitions = frames.map { Int32($0.partition) }
        let counts = frames.map { Int32($0.records) }
        let bodies = frames.map(\.body)
        let described = frames.count == 1 ? "partition \(frames[0].partition)" : "partitions \(frames.map(\.partition))"
        let appended: Int = try await run("appending to \(described)") { [logger] client in
            let rows = try await client.query(
                "SELECT o_partition, o_seq FROM hourglass_append(\(partitions)::int[], \(counts)::int[], \(bodies)::bytea[])",
                logger: logger)
            var appended = 0
            for try await _ in rows.decode((Int32, Int64).self) { appended += 1 }
            return appended
        }
        if appended != frames.count {
            throw .database(operation: "appending to \(described)", message: "\(appended) of \(frames.count) frames appended")
        }
    }

    /// Wakes the owners of `partitions` (`LISTEN hourglass_frames`): one statement for all.
    func notify(partitions: [Int]) async throws(HourglassError) {
        let list = partitions.map { Int32($0) }
        _ = try await run("notifying the owners of partitions \(partitions)") { [logger] client in
            let rows = try await client.query(
                "SELECT pg_notify('\(unescaped: FleetDatabase.channel)', p::text) FROM unnest(\(list)::int[]) AS p", logger: logger)
            for try await _ in rows {}
        }
    }

    /// What a fenced append by an owner found.
    enum FencedAppend {
        /// Committed at this sequence number.
        case committed(Int64)
        /// Frames the owner has not applied were committed first: it must read them, then decide again.
        case behind(nextSeq: Int64)
        /// The lease moved: another node (or nobody) owns the partition now.
        case fenced
    }

    /// Appends the owner's frame only if this node still owns `partition` at `epoch`, its lease
    /// has not expired by the database's clock, and the log ends at `expected` (everything
    /// committed before has been applied).
    func appendAsOwner(partition: Int, node: String, epoch: Int64, expected: Int64, records: Int, body: ByteBuffer)
        async throws(HourglassError) -> FencedAppend
    {
        let p = Int32(partition)
        let n = Int64(records)
        return try await run("appending the owner's records to partition \(partition)") { [logger] client in
            let rows = try await client.query(
                """
                WITH s AS (UPDATE hourglass_partitions SET next_seq = next_seq + \(n)
                           WHERE partition = \(p) AND owner = \(node) AND epoch = \(epoch) AND next_seq = \(expected)
                             AND expires_at > now()
                           RETURNING next_seq - \(n) AS seq),
                     i AS (INSERT INTO hourglass_frames (partition, seq, records, body) SELECT \(p), seq, \(Int32(records)), \(body) FROM s RETURNING seq)
                SELECT seq FROM i
                """,
                logger: logger)
            // Every row sequence is read to its end: one left unread keeps its connection.
            var committed: Int64? = nil
            for try await (seq) in rows.decode(Int64.self) { committed = seq }
            if let committed { return .committed(committed) }
            // Not appended: behind, if the lease is still this owner's; fenced otherwise (an
            // expired lease is never renewed, only claimed anew under a higher epoch).
            let state = try await client.query(
                "SELECT next_seq, owner, epoch, expires_at > now() FROM hourglass_partitions WHERE partition = \(p)", logger: logger)
            var outcome = FencedAppend.fenced
            for try await (nextSeq, owner, currentEpoch, live) in state.decode((Int64, String?, Int64, Bool).self) {
                if owner == node && currentEpoch == epoch && live { outcome = .behind(nextSeq: nextSeq) }
            }
            return outcome
        }
    }

    // MARK: Reading

    struct FrameRow: Sendable {
        var seq: Int64
        var records: Int
        var body: ByteBuffer
    }

    /// The frames of `partition` from `seq` on, in order, at most `limit` of them.
    func frames(partition: Int, from seq: Int64, limit: Int) async throws(HourglassError) -> [FrameRow] {
        try await run("reading partition \(partition)'s frames from \(seq)") { [logger] client in
            let rows = try await client.query(
                """
                SELECT seq, records, body FROM hourglass_frames WHERE partition = \(Int32(partition)) AND seq >= \(seq)
                ORDER BY seq LIMIT \(Int64(limit))
                """,
                logger: logger)
            var result: [FrameRow] = []
            for try await (seq, records, body) in rows.decode((Int64, Int32, ByteBuffer).self) {
                result.append(FrameRow(seq: seq, records: Int(records), body: body))
            }
            return result
        }
    }

    /// The newest checkpoint of `partition`: its start sequence and chunks, in order; nil when it has none.
    func latestCheckpoint(partition: Int) async throws(HourglassError) -> (startSeq: Int64, chunks: [ByteBuffer])? {
        try await run("reading partition \(partition)'s checkpoint", timeout: bulkTimeout) { [logger] client in
            let rows = try await client.query(
                """
                SELECT start_seq, body FROM hourglass_checkpoints
                WHERE partition = \(Int32(partition))
                  AND start_seq = (SELECT max(start_seq) FROM hourglass_checkpoints WHERE partition = \(Int32(partition)))
                ORDER BY chunk
                """,
                logger: logger)
            var start: Int64? = nil
            var chunks: [ByteBuffer] = []
            for try await (seq, body) in rows.decode((Int64, ByteBuffer).self) {
                start = seq
                chunks.append(body)
            }
            return start.map { ($0, chunks) }
        }
    }

    /// Stores a checkpoint of `partition` covering its log before `startSeq`, then deletes the
    /// older checkpoints and the frames it covers, in one transaction. Never deletes anything
    /// newer: a stale owner's checkpoint is correct (the state of the log up to its start) and
    /// removes only what a newer checkpoint also covers.
    func storeCheckpoint(partition: Int, startSeq: Int64, chunks: [(timers: Int, body: ByteBuffer)]) async throws(HourglassError) {
        let p = Int32(partition)
        try await run("writing partition \(partition)'s checkpoint at \(startSeq)", timeout: bulkTimeout) { [logger] client in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    "DELETE FROM hourglass_checkpoints WHERE partition = \(p) AND start_seq = \(startSeq)", logger: logger)
                for (index, chunk) in chunks.enumerated() {
                    try await connection.query(
                        """
                        INSERT INTO hourglass_checkpoints (partition, start_seq, chunk, timers, body)
                        VALUES (\(p), \(startSeq), \(Int32(index)), \(Int64(chunk.timers)), \(chunk.body))
                        """,
                        logger: logger)
                }
                try await connection.query(
                    "DELETE FROM hourglass_checkpoints WHERE partition = \(p) AND start_seq < \(startSeq)", logger: logger)
                try await connection.query(
                    "DELETE FROM hourglass_frames WHERE partition = \(p) AND seq < \(startSeq)", logger: logger)
            }
        }
    }

    // MARK: Leases

    /// Records this node as alive and renews its leases; returns the partitions it still owns
    /// with their epochs.
    func heartbeat(node: String, leaseMilliseconds: Int64) async throws(HourglassError) -> [Int: Int64] {
        try await run("renewing node \(node)'s leases") { [logger] client in
            try await client.query(
                """
                INSERT INTO hourglass_nodes (node, heartbeat_at) VALUES (\(node), now())
                ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()
                """,
                logger: logger)
            let rows = try await client.query("SELECT o_partition, o_epoch FROM hourglass_renew(\(node), \(leaseMilliseconds))", logger: logger)
            var owned: [Int: Int64] = [:]
            for try await (partition, epoch) in rows.decode((Int32, Int64).self) { owned[Int(partition)] = epoch }
            return owned
        }
    }

    /// The nodes whose heartbeat is younger than a lease.
    func liveNodes(leaseMilliseconds: Int64) async throws(HourglassError) -> Int {
        try await run("counting live nodes") { [logger] client in
            let rows = try await client.query(
                "SELECT count(*) FROM hourglass_nodes WHERE heartbeat_at > now() - \(leaseMilliseconds) * interval '1 millisecond'",
                logger: logger)
            var live = 0
            for try await (count) in rows.decode(Int64.self) { live = Int(count) }
            return live
        }
    }

    /// Claims up to `limit` partitions whose lease is free or expired (and, beyond the limit,
    /// any expired for longer than a whole lease: orphans); each claim raises the epoch.
    func claim(node: String, limit: Int, leaseMilliseconds: Int64) async throws(HourglassError) -> [Int: Int64] {
        try await run("claiming partitions for node \(node)") { [logger] client in
            let rows = try await client.query(
                """
                UPDATE hourglass_partitions SET owner = \(node), epoch = epoch + 1,
                       expires_at = now() + \(leaseMilliseconds) * interval '1 millisecond'
                WHERE expires_at <= now() AND (
                    partition IN (SELECT partition FROM hourglass_partitions WHERE expires_at <= now()
                                  ORDER BY partition LIMIT \(Int64(max(0, limit))) FOR UPDATE SKIP LOCKED)
                    OR partition IN (SELECT partition FROM hourglass_partitions
                                     WHERE expires_at <= now() - \(leaseMilliseconds) * interval '1 millisecond' FOR UPDATE SKIP LOCKED))
                RETURNING partition, epoch
                """,
                logger: logger)
            var claimed: [Int: Int64] = [:]
            for try await (partition, epoch) in rows.decode((Int32, Int64).self) { claimed[Int(partition)] = epoch }
            return claimed
        }
    }

    /// Gives a lease up at once (a graceful handover), if this node still holds it at `epoch`.
    func release(partition: Int, node: String, epoch: Int64) async throws(HourglassError) {
        _ = try await run("releasing partition \(partition)") { [logger] client in
            try await client.query(
                """
                UPDATE hourglass_partitions SET owner = NULL, expires_at = now()
                WHERE partition = \(Int32(partition)) AND owner = \(node) AND epoch = \(epoch)
                """,
                logger: logger)
        }
    }

    /// Forgets this node (a graceful leave): the others' shares grow at once.
    func leave(node: String) async throws(HourglassError) {
        _ = try await run("removing node \(node)") { [logger] client in
            try await client.query("DELETE FROM hourglass_nodes WHERE node = \(node)", logger: logger)
        }
    }

    /// The fleet's partitions as the database holds them (for status and tools).
    func partitionStates() async throws(HourglassError) -> [FleetPartitionState] {
        try await run("reading hourglass_partitions") { [logger] client in
            let rows = try await client.query(
                """
                SELECT partition, next_seq, owner, epoch, expires_at > now(),
                       (SELECT count(*) FROM hourglass_frames f WHERE f.partition = p.partition)
                FROM hourglass_partitions p ORDER BY partition
                """,
                logger: logger)
            var states: [FleetPartitionState] = []
            for try await (partition, nextSeq, owner, epoch, live, frames) in rows.decode((Int32, Int64, String?, Int64, Bool, Int64).self) {
                states.append(FleetPartitionState(partition: Int(partition), nextSequence: nextSeq, owner: live ? owner : nil,
                                                  epoch: epoch, frames: Int(frames)))
            }
            return states
        }
    }
}

/// A value set once, by whichever of several tasks comes first, and awaited by one.
final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var value: Value? = nil
        var filled = false
        var waiter: UnsafeContinuation<Value, Never>? = nil
    }

    private let state = Mutex(State())

    /// Sets the value, unless it was set already; wakes the waiter.
    func fill(_ value: Value) {
        let waiter = state.withLock { state -> UnsafeContinuation<Value, Never>? in
            if state.filled { return nil }
            state.filled = true
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    /// Whether the value is set.
    var isFilled: Bool { state.withLock { $0.filled } }

    /// The value, once set.
    func value() async -> Value {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Value, Never>) in
            let ready = state.withLock { state -> Value? in
                if state.filled { return state.value }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// One partition of a fleet as PostgreSQL holds it.
public struct FleetPartitionState: Sendable, Hashable {
    /// The partition's number.
    public var partition: Int
    /// The sequence number its next frame starts at.
    public var nextSequence: Int64
    /// The node holding its lease; nil when the lease is free or expired.
    public var owner: String?
    /// Raised by every claim of the lease.
    public var epoch: Int64
    /// Frames of its log in PostgreSQL (those no checkpoint covers yet).
    public var frames: Int
}
