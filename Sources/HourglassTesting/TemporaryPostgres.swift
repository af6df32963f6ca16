import HourglassStorage
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL server for tests and benchmarks: its own data directory in a fresh
/// temporary directory, its own port on 127.0.0.1, trust authentication, stopped by the test
/// that started it. No system service is used or needed.
///
/// ```swift
/// let postgres = try TemporaryPostgres.start()
/// defer { postgres.remove() }
/// // connect to postgres.url (postgres-nio, psql -h 127.0.0.1 -p \(postgres.port) ...)
/// postgres.kill9()            // the database machine's processes crash at once
/// try postgres.restart()      // crash recovery on the same directory and port
/// ```
///
/// The server binaries come from `$HOURGLASS_PG_BIN` when it is set, else from the newest
/// `/usr/lib/postgresql/<version>/bin` holding `initdb` and `postgres` (Debian's packages;
/// `scripts/ensure-postgres` installs them). `initdb` and `postgres` refuse to run as root, so a
/// root process runs them as the `postgres` user (through `setpriv`, which executes them in
/// place: the process this object holds is the postmaster itself).
///
/// The server runs `postgres -D DIR -c listen_addresses=127.0.0.1 -c port=PORT -k DIR -c fsync=on`
/// and the given settings, with its output in ``logFile``. Starting, restarting and stopping
/// block the calling thread (about a second each; a restart after ``kill9()`` also runs crash
/// recovery). Servers are independent: tests in one process may start several at once.
///
/// No server outlives the process that started it: a small watchdog (`/bin/sh`, in a process
/// group of its own) holds one end of a socket whose other end only this process has. When
/// this process ends without ``remove()`` (a crash, `kill -9`, a test runner's timeout, an
/// exit that skips `deinit`), the watchdog stops the server (SIGINT, then SIGKILL after 30 s)
/// and deletes its directory.
public final class TemporaryPostgres: Sendable {
    /// The address the server listens on: always `"127.0.0.1"`.
    public let host: String
    /// The TCP port the server listens on (kept across ``restart()``).
    public let port: Int
    /// The superuser to connect as: `"postgres"` (trust authentication: no password).
    public let user: String
    /// The database to connect to: `"postgres"`.
    public let database: String
    /// The server's data directory (also the directory of its Unix socket).
    public let dataDirectory: String
    /// The file the server's output goes to, next to ``dataDirectory`` (kept across restarts:
    /// each start appends to it).
    public let logFile: String

    /// A URL for the server: `postgres://postgres@127.0.0.1:PORT/postgres`.
    public var url: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// What went wrong starting, restarting or driving a ``TemporaryPostgres``.
    public struct Failure: Error, CustomStringConvertible {
        /// What failed, in a sentence.
        public let message: String
        /// The last lines of the server's log (`initdb`'s and `postgres`'s output) when there
        /// was one; empty otherwise.
        public let logTail: String

        init(_ message: String, log: String? = nil) {
            self.message = message
            self.logTail = log.map { TemporaryPostgres.tail(of: $0) } ?? ""
        }

        /// The message, followed by the tail of the server's log when there is one.
        public var description: String {
            logTail.isEmpty ? message : "\(message)\n--- server log (last lines):\n\(logTail)"
        }
    }

    /// True when the server binaries (`initdb` and `postgres`) are found: see ``binDirectory``.
    public static var isAvailable: Bool { binDirectory != nil }

    /// The directory the server binaries are taken from: `$HOURGLASS_PG_BIN` when it is set
    /// (nil if that directory lacks `initdb` or `postgres`), else the newest
    /// `/usr/lib/postgresql/<version>/bin` holding both; nil when none is found. The client
    /// programs (`psql`, `pg_isready`, `pgbench`, `pg_basebackup`) are usually there too.
    public static var binDirectory: String? {
        func complete(_ directory: String) -> Bool {
            access(directory + "/initdb", X_OK) == 0 && access(directory + "/postgres", X_OK) == 0
        }
        if let configured = getenv("HOURGLASS_PG_BIN").map({ String(cString: $0) }), !configured.isEmpty {
            return complete(configured) ? configured : nil
        }
        let root = "/usr/lib/postgresql"
        // Version directories ("15", "16", "9.6"), newest first.
        func version(_ name: String) -> [Int]? {
            let parts = name.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
            return parts.isEmpty || parts.contains(nil) ? nil : parts.map { $0! }
        }
        let versions = listDirectory(root).compactMap { name in version(name).map { (name, $0) } }
            .sorted { $0.1.lexicographicallyPrecedes($1.1) }
        for (name, _) in versions.reversed() where complete("\(root)/\(name)/bin") {
            return "\(root)/\(name)/bin"
        }
        return nil
    }

    /// Creates a fresh data directory with `initdb`, starts a server on it and returns once the
    /// server accepts connections (a TCP connection succeeds and its log says so).
    ///
    /// - Parameters:
    ///   - port: The TCP port to listen on; nil (the default) picks a free one. A given port
    ///     that is taken fails the start; a picked one that another process takes first is
    ///     replaced by another.
    ///   - settings: Server settings, each passed as `-c key=value` after the defaults (so they
    ///     win over them): for example `["synchronous_commit": "off", "max_connections": "20"]`.
    /// - Returns: The running server. Call ``remove()`` when done (or ``stop()`` to keep the
    ///   directory).
    /// - Throws: ``Failure`` when the binaries are missing, `initdb` fails, or the server does
    ///   not accept connections within 60 seconds (with the tail of its log).
    public static func start(port: Int? = nil, settings: [String: String] = [:]) throws(Failure) -> TemporaryPostgres {
        guard let bin = binDirectory else {
            let configured = getenv("HOURGLASS_PG_BIN").map { String(cString: $0) } ?? ""
            throw Failure(configured.isEmpty
                ? "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin with initdb and postgres (run scripts/ensure-postgres, or set HOURGLASS_PG_BIN)"
                : "HOURGLASS_PG_BIN=\(configured) does not hold executable initdb and postgres")
        }
        let account = try Account.forServer()
        let deadline = ContinuousClock.now + .seconds(60)
        let base = try makeBaseDirectory(for: account)
        let data = base + "/data"
        let log = base + "/server.log"
        var watchdog: Watchdog?
        do throws(Failure) {
            watchdog = try Watchdog.start(data: data, base: base)
            guard mkdir(data, 0o700) == 0 else { throw Failure("cannot create \(data): errno \(errno)") }
            if let account {
                guard chown(data, account.uid, account.gid) == 0 else { throw Failure("cannot chown \(data) to postgres: errno \(errno)") }
            }
            let initdb = [bin + "/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]
            try run(initdb, log: log, directory: base, account: account, deadline: deadline)
            let settings = settings.sorted { $0.key < $1.key }.flatMap { ["-c", "\($0.key)=\($0.value)"] }
            func arguments(_ port: Int) -> [String] {
                [bin + "/postgres", "-D", data, "-c", "listen_addresses=127.0.0.1", "-c", "port=\(port)", "-k", data, "-c", "fsync=on"] + settings
            }
            var chosen: Int
            if let port { chosen = port } else { chosen = try freePort() }
            while true {
                switch try launch(arguments(chosen), port: chosen, data: data, log: log, directory: base, account: account, deadline: deadline, retryBusyPort: false) {
                case .ready(let pid):
                    return TemporaryPostgres(port: chosen, base: base, data: data, log: log, arguments: arguments(chosen), account: account, pid: pid, watchdog: watchdog)
                case .portInUse where port == nil:
                    chosen = try freePort()
                case .portInUse:
                    throw Failure("port \(chosen) on 127.0.0.1 is in use", log: readLog(log, from: 0))
                }
            }
        } catch {
            _ = removeTree(base)
            watchdog?.dismiss()
            throw error
        }
    }

    /// Kills the postmaster and all of its backends with SIGKILL at once, as a crash of the
    /// database machine's processes would (the page cache survives: what was written, even
    /// without an fsync, is kept, as after a process crash). Returns once they are gone.
    /// Nothing happens when the server is not running.
    ///
    /// The postmaster is stopped (SIGSTOP) first so that it cannot start another process, then
    /// every child and its process group is stopped and killed, and the postmaster last.
    /// (PostgreSQL's backends each lead a session of their own, so killing the postmaster's
    /// process group alone would leave them running.)
    public func kill9() {
        state.withLock { state in
            guard state.pid != 0 else { return }
            Self.killAll(state.pid)
            state.pid = 0
        }
    }

    /// Starts the server again on the same data directory and port, and returns once it
    /// accepts connections. After ``kill9()`` this runs PostgreSQL's crash recovery; while the
    /// killed processes' shared memory is still attached, the start is retried. A running
    /// server is stopped first (fast shutdown).
    ///
    /// - Throws: ``Failure`` when the server does not accept connections within 60 seconds,
    ///   or after ``remove()``.
    public func restart() throws(Failure) {
        try state.withLock { (state) throws(Failure) in
            guard !state.removed else { throw Failure("restart() after remove(): \(dataDirectory) is gone") }
            if state.pid != 0 {
                Self.shutDown(state.pid)
                state.pid = 0
            }
            let deadline = ContinuousClock.now + .seconds(60)
            switch try Self.launch(arguments, port: port, data: dataDirectory, log: logFile, directory: base, account: account, deadline: deadline, retryBusyPort: true) {
            case .ready(let pid): state.pid = pid
            case .portInUse: throw Failure("port \(port) on 127.0.0.1 stayed in use for 60 s", log: Self.readLog(logFile, from: 0))
            }
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are ended, a checkpoint is
    /// written) and waits for its processes to exit; kills them if they have not exited within
    /// 60 seconds. Does nothing when the server is not running, so it may be called again.
    public func stop() {
        state.withLock { state in
            guard state.pid != 0 else { return }
            Self.shutDown(state.pid)
            state.pid = 0
        }
    }

    /// Stops the server (as ``stop()`` does) and deletes its directory: the data directory and
    /// the log. The object cannot be restarted afterwards.
    public func remove() {
        state.withLock { state in
            if state.pid != 0 {
                Self.shutDown(state.pid)
                state.pid = 0
            }
            if !state.removed {
                _ = removeTree(base)
                state.removed = true
            }
            state.watchdog?.dismiss()
            state.watchdog = nil
        }
    }

    deinit {
        // Best effort: a server left running would hold its port and directory after the test.
        // (The directory stays, as after stop(); the watchdog is dismissed.)
        state.withLock { state in
            if state.pid != 0 {
                Self.shutDown(state.pid)
                state.pid = 0
            }
            state.watchdog?.dismiss()
            state.watchdog = nil
        }
    }

    // MARK: - State

    private struct State {
        /// The postmaster's process id; 0 when it is not running.
        var pid: pid_t
        var removed = false
        var watchdog: Watchdog?
    }

    private let state: Mutex<State>
    /// The temporary directory holding the data directory and the log.
    private let base: String
    /// The postmaster's command line.
    private let arguments: [String]
    /// Whom the server runs as when this process is root.
    private let account: Account?

    private init(port: Int, base: String, data: String, log: String, arguments: [String], account: Account?, pid: pid_t, watchdog: Watchdog?) {
        self.host = "127.0.0.1"
        self.port = port
        self.user = "postgres"
        self.database = "postgres"
        self.dataDirectory = data
        self.logFile = log
        self.base = base
        self.arguments = arguments
        self.account = account
        self.state = Mutex(State(pid: pid, watchdog: watchdog))
    }

    /// The `postgres` user the server runs as when this process is root, and how to switch to
    /// it: `setpriv` executes the program in place, so the spawned process id is the program's.
    private struct Account: Sendable {
        let uid: uid_t
        let gid: gid_t
        let setpriv: String

        static func forServer() throws(Failure) -> Account? {
            guard geteuid() == 0 else { return nil }
            guard let entry = getpwnam("postgres") else {
                throw Failure("running as root, and initdb and postgres refuse to run as root, but there is no 'postgres' user to run them as (Debian's postgresql package creates it)")
            }
            guard let setpriv = ([String](["/usr/bin/setpriv", "/bin/setpriv"])).first(where: { access($0, X_OK) == 0 }) else {
                throw Failure("running as root, and initdb and postgres refuse to run as root, but setpriv (util-linux) is not installed to run them as 'postgres'")
            }
            return Account(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid, setpriv: setpriv)
        }

        /// The command that runs `command` as this user.
        func wrap(_ command: [String]) -> [String] {
            [setpriv, "--reuid=\(uid)", "--regid=\(gid)", "--init-groups", "--"] + command
        }
    }

    // MARK: - The watchdog

    /// A `/bin/sh` child that cleans up after this process if it dies: it reads a line from a
    /// socket whose other end only this process holds (close-on-exec, so no other child inherits
    /// it). A line ("q") dismisses it; the end of input, which the kernel delivers however this
    /// process ends, makes it stop the server found in `postmaster.pid` (only if that process's
    /// command line names the data directory: the pid may be stale after kill9()) and delete
    /// the directory.
    private struct Watchdog: Sendable {
        let pid: pid_t
        let socket: Int32

        static let script = """
            trap '' HUP INT
            if read -r line; then exit 0; fi
            pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
            if [ -n "$pid" ] && grep -qsF -- "$1" "/proc/$pid/cmdline"; then
                kill -CONT "$pid" 2>/dev/null
                kill -INT "$pid" 2>/dev/null
                i=0
                while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
                kill -KILL "$pid" 2>/dev/null
            fi
            rm -rf -- "$2"
            """

        static func start(data: String, base: String) throws(Failure) -> Watchdog {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                throw Failure("socketpair failed: errno \(errno)")
            }
            // Its own process group: a signal to this process's group leaves it to clean up.
            let spawned = Result { () throws(ChildProcess.SpawnFailure) in
                try ChildProcess.spawn(
                    ["/bin/sh", "-c", script, "hourglass-pg-watchdog", data, base], environment: ["PATH=/usr/bin:/bin"],
                    files: [.duplicate(fds[1], as: 0), .open(1, path: "/dev/null", flags: O_WRONLY), .duplicate(1, as: 2)],
                    directory: "/", newProcessGroup: true)
            }
            close(fds[1])
            switch spawned {
            case let .success(pid):
                return Watchdog(pid: pid, socket: fds[0])
            case let .failure(failure):
                close(fds[0])
                throw Failure("the watchdog: \(failure)")
            }
        }

        /// Tells the watchdog to exit without doing anything, and reaps it.
        func dismiss() {
            _ = send(socket, "q\n", 2, Int32(MSG_NOSIGNAL))
            close(socket)
            _ = TemporaryPostgres.exitStatus(pid, wait: true)
        }
    }

    // MARK: - Directories

    /// A fresh `hourglass-pg-XXXXXX` under `$TMPDIR` (or `/tmp`), owned by the server's user.
    /// `/tmp` is used instead when the server runs as `postgres` and cannot reach `$TMPDIR` (a
    /// root-only directory), or when `$TMPDIR` is so long that the Unix socket's path
    /// (`.../hourglass-pg-XXXXXX/data/.s.PGSQL.65535`) would pass the 107 bytes a socket
    /// address holds.
    private static func makeBaseDirectory(for account: Account?) throws(Failure) -> String {
        var parent = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if parent.isEmpty { parent = "/tmp" }
        while parent.count > 1 && parent.hasSuffix("/") { parent.removeLast() }
        if let account, !reachable(parent, by: account) { parent = "/tmp" }
        if parent.utf8.count + "/hourglass-pg-XXXXXX/data/.s.PGSQL.65535".utf8.count > 107 { parent = "/tmp" }
        var template = Array("\(parent)/hourglass-pg-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw Failure("cannot create a temporary directory under \(parent): errno \(errno)") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let account, chown(path, account.uid, account.gid) != 0 {
            let error = errno
            _ = removeTree(path)
            throw Failure("cannot chown \(path) to postgres: errno \(error)")
        }
        return path
    }

    /// True when every directory from `/` down to `path` lets `account` search it.
    private static func reachable(_ path: String, by account: Account) -> Bool {
        var prefix = ""
        let components = path.split(separator: "/").map(String.init)
        for component in [""] + components {
            prefix = component.isEmpty ? "/" : (prefix == "/" ? "/" : prefix + "/") + component
            var info = stat()
            guard stat(prefix, &info) == 0 else { return false }
            let mode = info.st_mode
            let searchable = info.st_uid == account.uid ? mode & S_IXUSR != 0
                : info.st_gid == account.gid ? mode & S_IXGRP != 0
                : mode & S_IXOTH != 0
            if !searchable { return false }
        }
        return true
    }

    // MARK: - Processes

    private enum Launch {
        case ready(pid_t)
        case portInUse
    }

    /// Starts the postmaster and waits until it accepts connections. Retries a start that
    /// failed because the previous server's shared memory or lock files were still held (and,
    /// with `retryBusyPort`, because the port was), until `deadline`.
    private static func launch(_ command: [String], port: Int, data: String, log: String, directory: String, account: Account?,
                               deadline: ContinuousClock.Instant, retryBusyPort: Bool) throws(Failure) -> Launch {
        while true {
            let offset = fileSize(log)
            let pid = try spawn(command, log: log, directory: directory, account: account, newProcessGroup: true)
            var connected = false
            while true {
                if let status = exitStatus(pid, wait: false) {
                    let output = readLog(log, from: offset)
                    let busyPort = output.contains("Address already in use") || output.contains("could not create any TCP/IP sockets")
                    if busyPort && !retryBusyPort { return .portInUse }
                    let transient = busyPort || output.contains("is still in use") || (output.contains("lock file") && output.contains("already exists"))
                    if transient && ContinuousClock.now < deadline {
                        usleep(100_000)
                        break
                    }
                    throw Failure("postgres exited (\(describe(status))) before accepting connections on port \(port)", log: readLog(log, from: 0))
                }
                if !connected && readLog(log, from: offset).contains("ready to accept connections") {
                    connected = canConnect(port: port)
                }
                if connected {
                    // The process this object holds must be the postmaster itself (not a
                    // wrapper that forked it), or kill9() and stop() would miss it.
                    let recorded = firstLine(of: data + "/postmaster.pid")
                    guard recorded == String(pid) else {
                        killAll(pid)
                        throw Failure("the spawned process \(pid) is not the postmaster (postmaster.pid says \(recorded ?? "nothing"))", log: readLog(log, from: 0))
                    }
                    return .ready(pid)
                }
                if ContinuousClock.now >= deadline {
                    killAll(pid)
                    throw Failure("postgres did not accept connections on port \(port) within 60 s", log: readLog(log, from: 0))
                }
                usleep(10_000)
            }
        }
    }

    /// Runs `command` to its end (killing it at `deadline`); throws unless it exits with 0.
    private static func run(_ command: [String], log: String, directory: String, account: Account?, deadline: ContinuousClock.Instant) throws(Failure) {
        let pid = try spawn(command, log: log, directory: directory, account: account, newProcessGroup: false)
        while true {
            if let status = exitStatus(pid, wait: false) {
                guard status == 0 else {
                    throw Failure("\(command[0]) failed (\(describe(status)))", log: readLog(log, from: 0))
                }
                return
            }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = exitStatus(pid, wait: true)
                throw Failure("\(command[0]) did not finish within 60 s", log: readLog(log, from: 0))
            }
            usleep(10_000)
        }
    }

    /// Spawns `command` (as the server's user when this process is root) with stdin from
    /// /dev/null, stdout and stderr appended to `log`, `directory` as its working directory,
    /// no file descriptors but those three, a clean signal state and the C locale; with
    /// `newProcessGroup`, as the leader of a process group of its own.
    private static func spawn(_ command: [String], log: String, directory: String, account: Account?, newProcessGroup: Bool) throws(Failure) -> pid_t {
        let full = account?.wrap(command) ?? command
        do {
            return try ChildProcess.spawn(
                full, environment: environment(),
                files: [.open(0, path: "/dev/null", flags: O_RDONLY), .open(1, path: log, flags: O_WRONLY | O_CREAT | O_APPEND), .duplicate(1, as: 2)],
                directory: directory, newProcessGroup: newProcessGroup)
        } catch {
            throw Failure(error.description)
        }
    }

    /// This process's environment without locale settings, plus `LC_ALL=C`: the log's messages
    /// are then the English ones this type looks for.
    private static func environment() -> [String] {
        var result: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if !(text.hasPrefix("LANG=") || text.hasPrefix("LANGUAGE=") || text.hasPrefix("LC_")) { result.append(text) }
            cursor += 1
        }
        return result + ["LC_ALL=C"]
    }

    /// The raw wait status once `pid` has exited (reaping it), nil while it runs. A child that
    /// cannot be waited for (already reaped, SIGCHLD ignored) counts as exited.
    private static func exitStatus(_ pid: pid_t, wait: Bool) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, wait ? 0 : WNOHANG)
            if result == pid { return status }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            return -1
        }
    }

    private static func describe(_ status: Int32) -> String {
        if status == -1 { return "status unknown" }
        let signal = status & 0x7f
        return signal == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(signal)"
    }

    /// Fast shutdown: SIGINT, then wait up to 60 s for the postmaster (which waits for its
    /// backends) to exit; then kill everything.
    private static func shutDown(_ pid: pid_t) {
        kill(pid, SIGINT)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if exitStatus(pid, wait: false) != nil { return }
            usleep(5_000)
        }
        killAll(pid)
    }

    /// SIGKILLs the postmaster `pid` and every process it started, as one crash: the postmaster
    /// is stopped first (so that it starts nothing more and reacts to nothing), then its
    /// children and their process groups (each backend leads its own) are stopped and killed,
    /// then the postmaster's group. Reaps the postmaster and waits (up to 10 s) until the
    /// children are gone too.
    private static func killAll(_ pid: pid_t) {
        kill(pid, SIGSTOP)
        // A fork already under way completes before the stop takes effect: enumerate after it.
        let stopDeadline = ContinuousClock.now + .milliseconds(500)
        while processState(pid).map({ $0 != "T" && $0 != "t" && $0 != "Z" }) ?? false && ContinuousClock.now < stopDeadline {
            usleep(1_000)
        }
        let children = childProcesses(of: pid)
        for child in children {
            kill(-child, SIGSTOP)
            kill(child, SIGSTOP)
        }
        for child in children {
            kill(-child, SIGKILL)
            kill(child, SIGKILL)
        }
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        _ = exitStatus(pid, wait: true)
        // The children now belong to init, which reaps them: wait until they are gone (or
        // zombies, which hold no shared memory), so that a restart finds the memory free.
        let deadline = ContinuousClock.now + .seconds(10)
        while children.contains(where: { processState($0).map { $0 != "Z" } ?? false }) && ContinuousClock.now < deadline {
            usleep(1_000)
        }
    }

    /// The children of `pid` (from /proc/PID/task/PID/children, else a scan of /proc).
    private static func childProcesses(of pid: pid_t) -> [pid_t] {
        if let text = readText("/proc/\(pid)/task/\(pid)/children") {
            return text.split(separator: " ").compactMap { pid_t($0.trimmingSpaces) }
        }
        return listDirectory("/proc").compactMap { pid_t($0) }.filter { candidate in
            statFields(candidate).map { $0.count > 1 && pid_t($0[1]) == pid } ?? false
        }
    }

    /// The state letter of a process (`R`, `S`, `T`, `Z`...), nil when there is no such process.
    private static func processState(_ pid: pid_t) -> Character? {
        statFields(pid)?.first?.first
    }

    /// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...
    private static func statFields(_ pid: pid_t) -> [Substring]? {
        guard let text = readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    // MARK: - Sockets

    /// A port nobody listens on now: the kernel picks one for a socket bound to 127.0.0.1:0.
    /// Ports handed out before by this process are skipped.
    private static func freePort() throws(Failure) -> Int {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("cannot create a socket: errno \(errno)") }
            defer { close(fd) }
            var address = loopback(port: 0)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw Failure("cannot bind a socket to 127.0.0.1:0: errno \(errno)") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            guard named == 0 else { throw Failure("getsockname failed: errno \(errno)") }
            let port = Int(UInt16(bigEndian: address.sin_port))
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw Failure("no free port found on 127.0.0.1")
    }

    /// The ports ``freePort()`` returned in this process, so that two servers started at once
    /// never get the same one.
    private static let handedOut = Mutex<Set<Int>>([])

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }

    /// True when a TCP connection to 127.0.0.1:`port` succeeds (it is closed at once, before
    /// sending anything, which the server does not log).
    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    // MARK: - Files

    private static func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// The file's bytes from `offset` to its end, as text ("" when it cannot be read).
    private static func readLog(_ path: String, from offset: Int) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var position = offset
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(position)) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
            position += count
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        close(fd)
        return readLog(path, from: 0)
    }

    private static func firstLine(of path: String) -> String? {
        readText(path)?.split(separator: "\n", omittingEmptySubsequences: false).first.map { String($0.trimmingSpaces) }
    }

    /// The last 40 lines of `text`.
    static func tail(of text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40).joined(separator: "\n")
    }
}

private extension Substring {
    var trimmingSpaces: Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result.removeFirst() }
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }
}
