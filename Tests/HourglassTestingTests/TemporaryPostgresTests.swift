import HourglassTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct PostgresTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The server binaries' directory. These tests fail (they do not skip) without PostgreSQL:
/// `scripts/test` installs it (`scripts/ensure-postgres`).
func postgresBinaries() throws -> String {
    guard let bin = TemporaryPostgres.binDirectory else {
        throw PostgresTestFailure("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin with initdb and postgres, and HOURGLASS_PG_BIN unset): run the tests with scripts/test, which installs it through scripts/ensure-postgres, or run scripts/ensure-postgres")
    }
    return bin
}

/// Runs `program arguments...` to its end; its exit status and what it wrote (stdout and
/// stderr together).
func runProgram(_ program: String, _ arguments: [String], environment: [String] = ["PGCONNECT_TIMEOUT=5", "LC_ALL=C", "PATH=/usr/bin:/bin"]) throws -> (status: Int32, output: String) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw PostgresTestFailure("pipe failed: errno \(errno)") }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer { for pointer in envp { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, program, &actions, nil, argv, envp)
    close(fds[1])
    defer { close(fds[0]) }
    guard spawned == 0 else { throw PostgresTestFailure("cannot start \(program): posix_spawn returned \(spawned)") }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
    return (code, String(decoding: bytes, as: UTF8.self))
}

/// This process's environment.
func currentEnvironment() -> [String] {
    var result: [String] = []
    var cursor = environ
    while let entry = cursor.pointee {
        result.append(String(cString: entry))
        cursor += 1
    }
    return result
}

/// Runs SQL through `psql` (from the server's bin directory), unaligned tuples only.
func psql(_ server: TemporaryPostgres, _ sql: String) throws -> (status: Int32, output: String) {
    let bin = try postgresBinaries()
    let (status, output) = try runProgram(bin + "/psql", [
        "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
        "-h", server.host, "-p", String(server.port), "-U", server.user, "-d", server.database, "-c", sql,
    ])
    return (status, output.split(separator: "\n").joined(separator: "\n"))
}

/// SQL that must succeed; its output.
@discardableResult
func sql(_ server: TemporaryPostgres, _ text: String) throws -> String {
    let (status, output) = try psql(server, text)
    guard status == 0 else { throw PostgresTestFailure("psql -c \"\(text)\" exited with \(status): \(output)") }
    return output
}

func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The postmaster's process id, as it wrote it in its data directory.
func postmasterPID(_ server: TemporaryPostgres) throws -> pid_t {
    guard let text = readFile(server.dataDirectory + "/postmaster.pid"), let first = text.split(separator: "\n").first, let pid = pid_t(first) else {
        throw PostgresTestFailure("no postmaster.pid in \(server.dataDirectory)")
    }
    return pid
}

/// A field of /proc/PID/status ("PPid", "Uid", ...), nil when there is no such process.
func procStatus(_ pid: pid_t, _ field: String) -> String? {
    guard let text = readFile("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }
    return nil
}

func children(of pid: pid_t) -> [pid_t] {
    (readFile("/proc/\(pid)/task/\(pid)/children") ?? "").split(separator: " ").compactMap { pid_t($0) }
}

/// True when `pid` has exited (gone, or a zombie of init's).
func isGone(_ pid: pid_t) -> Bool {
    guard let state = procStatus(pid, "State") else { return true }
    return state.hasPrefix("Z")
}

func resolvedPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

func directoryExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

@Suite("TemporaryPostgres: a throwaway PostgreSQL server on its own directory and port")
struct TemporaryPostgresTests {
    @Test("start: the server accepts connections at its address; remove() deletes its directory")
    func startConnectRemove() throws {
        _ = try postgresBinaries()
        let server = try TemporaryPostgres.start()
        defer { server.remove() }
        #expect(server.host == "127.0.0.1")
        #expect(server.user == "postgres" && server.database == "postgres")
        #expect(server.url == "postgres://postgres@127.0.0.1:\(server.port)/postgres")
        #expect(server.port > 0 && server.port < 65_536)
        try sql(server, "CREATE TABLE t(x int); INSERT INTO t VALUES (1), (2)")
        #expect(try sql(server, "SELECT sum(x) FROM t") == "3")
        #expect(try sql(server, "SHOW fsync") == "on")
        #expect(try sql(server, "SHOW listen_addresses") == "127.0.0.1")
        #expect(readFile(server.dataDirectory + "/PG_VERSION") != nil)
        #expect(readFile(server.logFile)?.contains("ready to accept connections") == true)
        let base = String(server.dataDirectory.dropLast("/data".count))
        server.remove()
        #expect(!directoryExists(base), "remove() deletes the directory")
        #expect(try psql(server, "SELECT 1").status != 0, "nothing listens any more")
    }

    @Test("the process held is the postmaster itself: its own child, its own process group, running as postgres when root")
    func postmasterIdentity() throws {
        let bin = try postgresBinaries()
        let server = try TemporaryPostgres.start()
        defer { server.remove() }
        let pid = try postmasterPID(server)
        // The postmaster is this process's child: no wrapper (runuser, su) sits between them.
        #expect(procStatus(pid, "PPid") == String(getpid()))
        #expect(getpgid(pid) == pid, "the leader of a process group of its own")
        #expect(resolvedPath("/proc/\(pid)/exe") == resolvedPath(bin + "/postgres"))
        let expectedUID = geteuid() == 0 ? getpwnam("postgres").map { $0.pointee.pw_uid } : geteuid()
        #expect(procStatus(pid, "Uid")?.split(separator: " ").first.map(String.init) == expectedUID.map { String($0) })
        // stop() ends it and reaps it: no zombie left.
        server.stop()
        #expect(procStatus(pid, "State") == nil, "the postmaster is gone, and reaped")
    }

    @Test("kill9() kills the postmaster and every backend at once; restart() recovers what was committed")
    func kill9AndRestart() throws {
        _ = try postgresBinaries()
        let server = try TemporaryPostgres.start()
        defer { server.remove() }
        try sql(server, "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 10000)")
        for round in 1...2 {
            let pid = try postmasterPID(server)
            let backends = children(of: pid)
            #expect(backends.count >= 4, "checkpointer, background writer, WAL writer, autovacuum launcher...: \(backends)")
            server.kill9()
            #expect(procStatus(pid, "State") == nil, "round \(round): the postmaster is killed and reaped")
            for backend in backends {
                #expect(isGone(backend), "round \(round): backend \(backend) is killed too (it leads a session of its own)")
            }
            #expect(try psql(server, "SELECT 1").status != 0, "round \(round): nothing listens after kill9()")
            server.kill9()  // nothing left to kill
            try server.restart()
            #expect(try sql(server, "SELECT count(*) FROM t") == String(10_000 * round), "round \(round): every committed row survived")
            try sql(server, "INSERT INTO t SELECT generate_series(1, 10000)")
        }
        let log = readFile(server.logFile) ?? ""
        #expect(log.contains("automatic recovery in progress"), "the restart after kill9() ran crash recovery")
    }

    @Test("stop() is a fast shutdown and idempotent; restart() after it keeps the data; remove() is final")
    func stopRestartRemove() throws {
        _ = try postgresBinaries()
        let server = try TemporaryPostgres.start()
        defer { server.remove() }
        try sql(server, "CREATE TABLE t(x int); INSERT INTO t VALUES (42)")
        let pid = try postmasterPID(server)
        server.stop()
        server.stop()
        #expect(procStatus(pid, "State") == nil)
        #expect(try psql(server, "SELECT 1").status != 0)
        try server.restart()
        #expect(try sql(server, "SELECT x FROM t") == "42")
        try server.restart()  // a running server is stopped, then started again
        #expect(try sql(server, "SELECT x FROM t") == "42")
        server.remove()
        server.remove()
        #expect(!directoryExists(server.dataDirectory))
        #expect(throws: TemporaryPostgres.Failure.self) { try server.restart() }
    }

    @Test("settings are passed as -c key=value and win over the defaults")
    func settings() throws {
        _ = try postgresBinaries()
        let server = try TemporaryPostgres.start(settings: ["max_connections": "17", "synchronous_commit": "off", "fsync": "off"])
        defer { server.remove() }
        #expect(try sql(server, "SHOW max_connections") == "17")
        #expect(try sql(server, "SHOW synchronous_commit") == "off")
        #expect(try sql(server, "SHOW fsync") == "off")
    }

    @Test("a given port that is taken fails the start, with the server's log in the failure")
    func busyPort() throws {
        _ = try postgresBinaries()
        let first = try TemporaryPostgres.start()
        defer { first.remove() }
        do {
            let second = try TemporaryPostgres.start(port: first.port)
            second.remove()
            Issue.record("a second server started on port \(first.port)")
        } catch {
            #expect(error.description.contains("port \(first.port)"), "\(error)")
            #expect(error.logTail.contains("Address already in use"), "\(error)")
        }
        #expect(try sql(first, "SELECT 1") == "1", "the first server is untouched")
    }

    @Test("a server whose process dies without remove() (kill -9) is stopped, and its directory deleted, by its watchdog")
    func orphanIsCleanedUp() throws {
        _ = try postgresBinaries()
        let scratch = TemporaryDirectory("pg-orphan")
        defer { scratch.remove() }
        let report = scratch.appending("server")
        guard let binary = resolvedPath("/proc/self/exe") else { throw PostgresTestFailure("cannot resolve /proc/self/exe") }
        // This test binary again, running only the helper below: it starts a server, says where,
        // and SIGKILLs itself.
        let (status, output) = try runProgram(binary, ["--testing-library", "swift-testing", "--filter", "orphanHelper"],
                                              environment: currentEnvironment() + ["HOURGLASS_PG_ORPHAN_REPORT=\(report)"])
        #expect(status == 128 + SIGKILL, "the helper process killed itself: \(output.suffix(2000))")
        guard let line = readFile(report), let space = line.firstIndex(of: " "), let pid = pid_t(line[..<space]) else {
            throw PostgresTestFailure("the helper wrote no report: \(output.suffix(2000))")
        }
        let data = String(line[line.index(after: space)...])
        var gone = false
        for _ in 0..<300 where !gone {
            gone = procStatus(pid, "State") == nil && !directoryExists(data)
            if !gone { usleep(100_000) }
        }
        #expect(procStatus(pid, "State") == nil, "the orphaned postmaster \(pid) was stopped")
        #expect(!directoryExists(data), "its directory \(data) was deleted")
    }

    @Test("helper of the test above, run in a process of its own (does nothing unless HOURGLASS_PG_ORPHAN_REPORT is set)")
    func orphanHelper() throws {
        guard let report = getenv("HOURGLASS_PG_ORPHAN_REPORT").map({ String(cString: $0) }) else { return }
        let server = try TemporaryPostgres.start()
        let text = "\(try postmasterPID(server)) \(server.dataDirectory)"
        let fd = open(report, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        kill(getpid(), SIGKILL)
    }

    @Test("servers started at once in one process get their own ports and directories")
    func parallel() async throws {
        _ = try postgresBinaries()
        let servers = try await withThrowingTaskGroup(of: TemporaryPostgres.self) { group in
            for _ in 0..<4 { group.addTask { try TemporaryPostgres.start() } }
            var started: [TemporaryPostgres] = []
            for try await server in group { started.append(server) }
            return started
        }
        defer { for server in servers { server.remove() } }
        #expect(Set(servers.map(\.port)).count == 4)
        #expect(Set(servers.map(\.dataDirectory)).count == 4)
        for (index, server) in servers.enumerated() {
            try sql(server, "CREATE TABLE t(x int); INSERT INTO t VALUES (\(index))")
        }
        for (index, server) in servers.enumerated() {
            #expect(try sql(server, "SELECT x FROM t") == String(index))
        }
    }
}
