import GRDB

/// Orders in SQLite (WAL mode, through GRDB). Every change of state is one conditional `UPDATE`
/// and its event row in one transaction, so that doing it twice (a timer redelivered after a
/// crash, a payment retried by the client) changes nothing the second time.
public final class OrderStore: Sendable {
    private let database: DatabasePool

    /// Opens (or creates) the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(5)
        database = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE orders (
                    id TEXT PRIMARY KEY,
                    customer TEXT NOT NULL,
                    amount_cents INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('unpaid', 'paid', 'closed')),
                    created_at INTEGER NOT NULL,
                    closes_at INTEGER NOT NULL,
                    paid_at INTEGER,
                    closed_at INTEGER,
                    payment_check TEXT NOT NULL DEFAULT 'none',
                    payment_checks INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE order_events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    order_id TEXT NOT NULL REFERENCES orders(id),
                    kind TEXT NOT NULL,
                    at INTEGER NOT NULL
                );
                CREATE INDEX order_events_by_order ON order_events(order_id, seq);
                -- The sandbox payment provider's side: what it would answer when asked.
                CREATE TABLE provider_payments (
                    order_id TEXT PRIMARY KEY,
                    settled_at INTEGER NOT NULL
                );
                """)
        }
        return migrator
    }

    /// Inserts a new unpaid order and its `created` event.
    public func insert(_ order: Order) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO orders (id, customer, amount_cents, state, created_at, closes_at)
                    VALUES (?, ?, ?, 'unpaid', ?, ?)
                    """,
                arguments: [order.id, order.customer, order.amountCents, order.createdAt, order.closesAt])
            try Self.event(db, order.id, "created", at: order.createdAt)
        }
    }

    /// The order with this id, with its events; nil when there is none.
    public func order(_ id: String) async throws -> Order? {
        try await database.read { db in try Self.read(db, id) }
    }

    /// What a payment did.
    public enum Payment: Sendable, Equatable {
        /// The order is paid now (it was unpaid).
        case paid(Order)
        /// It was paid already: nothing changed.
        case alreadyPaid(Order)
        /// It was closed before it was paid: nothing changed.
        case closed(Order)
        case notFound
    }

    /// Marks the order paid, if it is still unpaid.
    public func pay(_ id: String, at now: Int64, confirmedByCheck: Bool = false) async throws -> Payment {
        try await database.write { db in
            try db.execute(
                sql: """
                    UPDATE orders SET state = 'paid', paid_at = ?,
                        payment_check = CASE WHEN ? THEN 'confirmed' ELSE payment_check END
                    WHERE id = ? AND state = 'unpaid'
                    """,
                arguments: [now, confirmedByCheck, id])
            let changed = db.changesCount == 1
            if changed { try Self.event(db, id, "paid", at: now) }
            guard let order = try Self.read(db, id) else { return .notFound }
            if changed { return .paid(order) }
            return order.state == .closed ? .closed(order) : .alreadyPaid(order)
        }
    }

    /// What a close did.
    public enum Close: Sendable, Equatable {
        /// The order was unpaid and is closed now.
        case closed
        /// Paid or closed already: nothing changed (a redelivery, or a payment that won).
        case unchanged(Order.State)
        /// No such order (its creation failed after its timer was scheduled).
        case notFound
    }

    /// Closes the order if it is still unpaid: the conditional update that makes a redelivered
    /// close timer harmless.
    public func closeIfUnpaid(_ id: String, at now: Int64) async throws -> Close {
        try await database.write { db in
            try db.execute(sql: "UPDATE orders SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'unpaid'", arguments: [now, id])
            if db.changesCount == 1 {
                try Self.event(db, id, "closed", at: now)
                return .closed
            }
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM orders WHERE id = ?", arguments: [id]) else { return .notFound }
            return .unchanged(Order.State(rawValue: state) ?? .unpaid)
        }
    }

    /// What a checkout did.
    public enum Checkout: Sendable, Equatable {
        /// The payment check is pending now (or was already).
        case started(Order, alreadyPending: Bool)
        /// The order is paid or closed: there is nothing to check.
        case notUnpaid(Order)
        case notFound
    }

    /// Marks the order's payment check pending, if the order is unpaid.
    public func startPaymentCheck(_ id: String, at now: Int64) async throws -> Checkout {
        try await database.write { db in
            guard let before = try Self.read(db, id) else { return .notFound }
            guard before.state == .unpaid else { return .notUnpaid(before) }
            if before.paymentCheck == .pending { return .started(before, alreadyPending: true) }
            try db.execute(sql: "UPDATE orders SET payment_check = 'pending' WHERE id = ? AND state = 'unpaid'", arguments: [id])
            try Self.event(db, id, "checkout", at: now)
            return .started(try Self.read(db, id)!, alreadyPending: false)
        }
    }

    /// Records that the provider was asked for the `attempt`th time and did not confirm the
    /// payment; `gaveUp` when that was the last time.
    public func recordUnconfirmedCheck(_ id: String, attempt: Int, gaveUp: Bool) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                    UPDATE orders SET payment_checks = MAX(payment_checks, ?),
                        payment_check = CASE WHEN ? AND payment_check = 'pending' THEN 'gave_up' ELSE payment_check END
                    WHERE id = ?
                    """,
                arguments: [attempt, gaveUp, id])
        }
    }

    /// Records a check that found the payment (before `pay(_:at:confirmedByCheck:)`).
    public func recordConfirmedCheck(_ id: String, attempt: Int) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE orders SET payment_checks = MAX(payment_checks, ?) WHERE id = ?", arguments: [attempt, id])
        }
    }

    // MARK: The sandbox provider's side

    /// Records, as the payment provider would, that the order's payment went through.
    public func settleAtProvider(_ id: String, at now: Int64) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO provider_payments (order_id, settled_at) VALUES (?, ?)", arguments: [id, now])
        }
    }

    /// Unpaid orders whose payment the provider holds (paid without a checkout the service saw):
    /// what the payment sweep reconciles.
    public func unpaidWithProviderPayment() async throws -> [String] {
        try await database.read { db in
            try String.fetchAll(db, sql: """
                SELECT o.id FROM orders o JOIN provider_payments p ON p.order_id = o.id
                WHERE o.state = 'unpaid' ORDER BY o.created_at
                """)
        }
    }

    /// Whether the sandbox provider holds the order's payment.
    public func providerHasPayment(_ id: String) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM provider_payments WHERE order_id = ?)", arguments: [id]) ?? false
        }
    }

    // MARK: Rows

    private static func event(_ db: Database, _ id: String, _ kind: String, at now: Int64) throws {
        try db.execute(sql: "INSERT INTO order_events (order_id, kind, at) VALUES (?, ?, ?)", arguments: [id, kind, now])
    }

    private static func read(_ db: Database, _ id: String) throws -> Order? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE id = ?", arguments: [id]) else { return nil }
        let events = try String.fetchAll(db, sql: "SELECT kind FROM order_events WHERE order_id = ? ORDER BY seq", arguments: [id])
        return Order(
            id: row["id"], customer: row["customer"], amountCents: row["amount_cents"],
            state: Order.State(rawValue: row["state"]) ?? .unpaid,
            createdAt: row["created_at"], closesAt: row["closes_at"], paidAt: row["paid_at"], closedAt: row["closed_at"],
            paymentCheck: Order.PaymentCheck(rawValue: row["payment_check"]) ?? .none,
            paymentChecks: row["payment_checks"], events: events)
    }
}
