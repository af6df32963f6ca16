#if canImport(Glibc)
import Glibc
#endif

/// The system's SQLite, loaded at run time (`dlopen("libsqlite3.so.0")`), so that building the
/// benchmark needs no SQLite headers or library: without it, the `sqlite` peer is reported as
/// unavailable.
final class SQLiteLibrary: @unchecked Sendable {
    typealias Open = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<OpaquePointer?>?, Int32, UnsafePointer<CChar>?) -> Int32
    typealias Exec = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    typealias Prepare = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias BindInt64 = @convention(c) (OpaquePointer?, Int32, Int64) -> Int32
    /// sqlite3_bind_blob and sqlite3_bind_text; the destructor argument is SQLITE_STATIC (0) or
    /// SQLITE_TRANSIENT (-1), passed as an integer.
    typealias BindBytes = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer?, Int32, Int) -> Int32
    typealias Step = @convention(c) (OpaquePointer?) -> Int32
    typealias ColumnInt64 = @convention(c) (OpaquePointer?, Int32) -> Int64
    typealias ColumnPointer = @convention(c) (OpaquePointer?, Int32) -> UnsafeRawPointer?
    typealias ColumnBytes = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias StatementCall = @convention(c) (OpaquePointer?) -> Int32
    typealias Close = @convention(c) (OpaquePointer?) -> Int32
    typealias ErrorMessage = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias BusyTimeout = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias Changes = @convention(c) (OpaquePointer?) -> Int32
    typealias LibraryVersion = @convention(c) () -> UnsafePointer<CChar>?

    static let ok: Int32 = 0
    static let row: Int32 = 100
    static let done: Int32 = 101
    static let openReadWrite: Int32 = 0x2
    static let openCreate: Int32 = 0x4
    static let openNoMutex: Int32 = 0x8000

    let open: Open
    let exec: Exec
    let prepare: Prepare
    let bindInt64: BindInt64
    let bindBlob: BindBytes
    let bindText: BindBytes
    let step: Step
    let columnInt64: ColumnInt64
    let columnBlob: ColumnPointer
    let columnText: ColumnPointer
    let columnBytes: ColumnBytes
    let reset: StatementCall
    let finalize: StatementCall
    let close: Close
    let errorMessage: ErrorMessage
    let busyTimeout: BusyTimeout
    let changes: Changes
    let version: String

    /// Loads the library, or says why it cannot.
    /// `HOURGLASS_BENCH_SQLITE` names another library file (a different soname or path).
    static func load() -> Result<SQLiteLibrary, SQLiteError> {
        let name = getEnvironment("HOURGLASS_BENCH_SQLITE") ?? "libsqlite3.so.0"
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            return .failure(SQLiteError(message: "\(name) not found (\(reason))"))
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, as type: T.Type) -> T? {
            guard let pointer = dlsym(handle, name) else {
                missing.append(name)
                return nil
            }
            return unsafeBitCast(pointer, to: type)
        }
        let open = symbol("sqlite3_open_v2", as: Open.self)
        let exec = symbol("sqlite3_exec", as: Exec.self)
        let prepare = symbol("sqlite3_prepare_v2", as: Prepare.self)
        let bindInt64 = symbol("sqlite3_bind_int64", as: BindInt64.self)
        let bindBlob = symbol("sqlite3_bind_blob", as: BindBytes.self)
        let bindText = symbol("sqlite3_bind_text", as: BindBytes.self)
        let step = symbol("sqlite3_step", as: Step.self)
        let columnInt64 = symbol("sqlite3_column_int64", as: ColumnInt64.self)
        let columnBlob = symbol("sqlite3_column_blob", as: ColumnPointer.self)
        let columnText = symbol("sqlite3_column_text", as: ColumnPointer.self)
        let columnBytes = symbol("sqlite3_column_bytes", as: ColumnBytes.self)
        let reset = symbol("sqlite3_reset", as: StatementCall.self)
        let finalize = symbol("sqlite3_finalize", as: StatementCall.self)
        let close = symbol("sqlite3_close", as: Close.self)
        let errorMessage = symbol("sqlite3_errmsg", as: ErrorMessage.self)
        let busyTimeout = symbol("sqlite3_busy_timeout", as: BusyTimeout.self)
        let changes = symbol("sqlite3_changes", as: Changes.self)
        let version = symbol("sqlite3_libversion", as: LibraryVersion.self)
        guard let open, let exec, let prepare, let bindInt64, let bindBlob, let bindText, let step, let columnInt64,
              let columnBlob, let columnText, let columnBytes, let reset, let finalize, let close, let errorMessage,
              let busyTimeout, let changes, let version
        else {
            return .failure(SQLiteError(message: "\(name) lacks \(missing.joined(separator: ", "))"))
        }
        return .success(SQLiteLibrary(
            open: open, exec: exec, prepare: prepare, bindInt64: bindInt64, bindBlob: bindBlob, bindText: bindText, step: step,
            columnInt64: columnInt64, columnBlob: columnBlob, columnText: columnText, columnBytes: columnBytes, reset: reset,
            finalize: finalize, close: close, errorMessage: errorMessage, busyTimeout: busyTimeout, changes: changes,
            version: version().map { String(cString: $0) } ?? "?"))
    }

    private init(open: Open, exec: Exec, prepare: Prepare, bindInt64: BindInt64, bindBlob: BindBytes, bindText: BindBytes, step: Step,
                 columnInt64: ColumnInt64, columnBlob: ColumnPointer, columnText: ColumnPointer, columnBytes: ColumnBytes, reset: StatementCall,
                 finalize: StatementCall, close: Close, errorMessage: ErrorMessage, busyTimeout: BusyTimeout, changes: Changes, version: String) {
        self.open = open
        self.exec = exec
        self.prepare = prepare
        self.bindInt64 = bindInt64
        self.bindBlob = bindBlob
        self.bindText = bindText
        self.step = step
        self.columnInt64 = columnInt64
        self.columnBlob = columnBlob
        self.columnText = columnText
        self.columnBytes = columnBytes
        self.reset = reset
        self.finalize = finalize
        self.close = close
        self.errorMessage = errorMessage
        self.busyTimeout = busyTimeout
        self.changes = changes
        self.version = version
    }
}

struct SQLiteError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// The order services' timer table, one connection to it: a row per timer, an index on the due
/// time, WAL journal mode; schedule = INSERT OR REPLACE, cancel = DELETE by id, and a poller
/// that SELECTs due rows (LIMIT batch) in due order and DELETEs them, in one transaction.
///
/// A connection belongs to one thread at a time (opened with SQLITE_OPEN_NOMUTEX).
final class SQLiteTimers: @unchecked Sendable {
    static let schema = """
        CREATE TABLE IF NOT EXISTS timers (id TEXT PRIMARY KEY, due INTEGER NOT NULL, payload BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS timers_due ON timers(due);
        """

    let lib: SQLiteLibrary
    let path: String
    private var db: OpaquePointer?
    private var insertStatement: OpaquePointer?
    private var cancelStatement: OpaquePointer?
    private var selectDueStatement: OpaquePointer?
    private var deleteRowStatement: OpaquePointer?
    private var beginStatement: OpaquePointer?
    private var commitStatement: OpaquePointer?
    private var rowids: [Int64] = []

    /// Opens (creating) the database at `path`: WAL, synchronous FULL when `fullSync` (the
    /// `always` policy), NORMAL otherwise; the table and its index.
    init(lib: SQLiteLibrary, path: String, fullSync: Bool) throws(SQLiteError) {
        self.lib = lib
        self.path = path
        var handle: OpaquePointer? = nil
        let flags = SQLiteLibrary.openReadWrite | SQLiteLibrary.openCreate | SQLiteLibrary.openNoMutex
        let rc = lib.open(path, &handle, flags, nil)
        db = handle
        guard rc == SQLiteLibrary.ok else {
            let message = handle.flatMap { lib.errorMessage($0) }.map { String(cString: $0) } ?? "code \(rc)"
            if let handle { _ = lib.close(handle) }
            db = nil
            throw SQLiteError(message: "open \(path): \(message)")
        }
        _ = lib.busyTimeout(db, 10_000)
        try execute("PRAGMA journal_mode=WAL")
        try execute(fullSync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL")
        try execute(Self.schema)
        insertStatement = try prepare("INSERT OR REPLACE INTO timers(id, due, payload) VALUES (?1, ?2, ?3)")
        cancelStatement = try prepare("DELETE FROM timers WHERE id = ?1")
        selectDueStatement = try prepare("SELECT rowid, id, due, payload FROM timers WHERE due <= ?1 ORDER BY due, rowid LIMIT ?2")
        deleteRowStatement = try prepare("DELETE FROM timers WHERE rowid = ?1")
        beginStatement = try prepare("BEGIN IMMEDIATE")
        commitStatement = try prepare("COMMIT")
    }

    deinit { close() }

    func close() {
        guard let db else { return }
        for statement in [insertStatement, cancelStatement, selectDueStatement, deleteRowStatement, beginStatement, commitStatement] {
            _ = lib.finalize(statement)
        }
        insertStatement = nil
        cancelStatement = nil
        selectDueStatement = nil
        deleteRowStatement = nil
        beginStatement = nil
        commitStatement = nil
        _ = lib.close(db)
        self.db = nil
    }

    private var lastError: String {
        lib.errorMessage(db).map { String(cString: $0) } ?? "unknown error"
    }

    func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>? = nil
        let rc = lib.exec(db, sql, nil, nil, &message)
        if rc != SQLiteLibrary.ok {
            let text = message.map { String(cString: $0) } ?? lastError
            if let message { free(message) }
            throw SQLiteError(message: "\(sql): \(text)")
        }
    }

    private func prepare(_ sql: String) throws(SQLiteError) -> OpaquePointer? {
        var statement: OpaquePointer? = nil
        guard lib.prepare(db, sql, -1, &statement, nil) == SQLiteLibrary.ok else {
            throw SQLiteError(message: "prepare \(sql): \(lastError)")
        }
        return statement
    }

    @inline(__always)
    private func run(_ statement: OpaquePointer?, _ what: StaticString) throws(SQLiteError) {
        let rc = lib.step(statement)
        _ = lib.reset(statement)
        guard rc == SQLiteLibrary.done || rc == SQLiteLibrary.row else {
            throw SQLiteError(message: "\(what): \(lastError) (\(rc))")
        }
    }

    func begin() throws(SQLiteError) { try run(beginStatement, "BEGIN IMMEDIATE") }
    func commit() throws(SQLiteError) { try run(commitStatement, "COMMIT") }

    /// Schedules (upserts) a timer; inside a transaction begun with `begin()`.
    func insert(id: [UInt8], due: Int64, payload: [UInt8]) throws(SQLiteError) {
        let statement = insertStatement
        let rc: Int32 = id.withUnsafeBytes { id in
            payload.withUnsafeBytes { payload in
                _ = lib.bindText(statement, 1, id.baseAddress, Int32(id.count), 0)
                _ = lib.bindInt64(statement, 2, due)
                _ = lib.bindBlob(statement, 3, payload.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(payload.count), 0)
                let rc = lib.step(statement)
                _ = lib.reset(statement)
                return rc
            }
        }
        guard rc == SQLiteLibrary.done else { throw SQLiteError(message: "INSERT: \(lastError) (\(rc))") }
    }

    /// Cancels a timer; returns whether there was one. Inside a transaction.
    func cancel(id: [UInt8]) throws(SQLiteError) -> Bool {
        let statement = cancelStatement
        let rc: Int32 = id.withUnsafeBytes { id in
            _ = lib.bindText(statement, 1, id.baseAddress, Int32(id.count), 0)
            let rc = lib.step(statement)
            _ = lib.reset(statement)
            return rc
        }
        guard rc == SQLiteLibrary.done else { throw SQLiteError(message: "DELETE: \(lastError) (\(rc))") }
        return lib.changes(db) > 0
    }

    /// One turn of the poller: in one transaction, selects up to `limit` rows due by `now` in
    /// due order, hands each to `deliver` (id, due, payload, copied out of SQLite as a consumer
    /// would get them) and deletes them. Returns the rows delivered.
    func poll(now: Int64, limit: Int, deliver: ([UInt8], Int64, [UInt8]) -> Void) throws(SQLiteError) -> Int {
        try begin()
        let select = selectDueStatement
        _ = lib.bindInt64(select, 1, now)
        _ = lib.bindInt64(select, 2, Int64(limit))
        rowids.removeAll(keepingCapacity: true)
        var rc = lib.step(select)
        while rc == SQLiteLibrary.row {
            rowids.append(lib.columnInt64(select, 0))
            let idBytes = Int(lib.columnBytes(select, 1))
            let id = [UInt8](UnsafeRawBufferPointer(start: lib.columnText(select, 1), count: idBytes))
            let due = lib.columnInt64(select, 2)
            let payloadPointer = lib.columnBlob(select, 3)
            let payloadBytes = Int(lib.columnBytes(select, 3))
            let payload = [UInt8](UnsafeRawBufferPointer(start: payloadPointer, count: payloadBytes))
            deliver(id, due, payload)
            rc = lib.step(select)
        }
        _ = lib.reset(select)
        guard rc == SQLiteLibrary.done else {
            try? execute("ROLLBACK")
            throw SQLiteError(message: "SELECT due: \(lastError) (\(rc))")
        }
        for rowid in rowids {
            _ = lib.bindInt64(deleteRowStatement, 1, rowid)
            try run(deleteRowStatement, "DELETE rowid")
        }
        try commit()
        return rowids.count
    }

    /// Rows in the table.
    func count() throws(SQLiteError) -> Int {
        let statement = try prepare("SELECT count(*) FROM timers")
        defer { _ = lib.finalize(statement) }
        guard lib.step(statement) == SQLiteLibrary.row else { throw SQLiteError(message: "count: \(lastError)") }
        return Int(lib.columnInt64(statement, 0))
    }

    /// Runs `PRAGMA wal_checkpoint(MODE)`.
    func walCheckpoint(_ mode: String) throws(SQLiteError) { try execute("PRAGMA wal_checkpoint(\(mode))") }

    /// Bytes of the database file and its WAL on disk now.
    var fileBytes: (database: Int, wal: Int) { (fileSize(path), fileSize(path + "-wal")) }
}

func fileSize(_ path: String) -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { return 0 }
    return Int(info.st_size)
}
