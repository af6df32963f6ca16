#if canImport(Glibc)
import Glibc
#endif

/// Starting a child process the way the test kit and the project's process tests need it: the
/// file descriptors 0, 1 and 2 it is given and no other (whatever else this process, or another
/// test running beside, has open), a clean signal state (nothing blocked, the usual actions for
/// the signals that matter), and optionally a working directory and a process group of its own.
/// Package-only: `TemporaryPostgres` and the suites that run `hourglass` use it.
package enum ChildProcess {
    /// What the child's descriptor `descriptor` is, done in order before it runs.
    package enum FileAction: Sendable {
        /// `path` opened with `flags` (and `mode`, when it is created).
        case open(_ descriptor: Int32, path: String, flags: Int32, mode: mode_t = 0o644)
        /// A duplicate of this process's (or, once set up, the child's) descriptor `source`.
        case duplicate(_ source: Int32, as: Int32)
    }

    /// `posix_spawn` refused: its error number.
    package struct SpawnFailure: Error, CustomStringConvertible {
        package var program: String
        package var code: Int32
        package var description: String { "cannot start \(program): posix_spawn returned \(code)" }
    }

    /// Starts `arguments[0]` (a path) with `arguments`; `environment` nil inherits this
    /// process's. Returns the child's process id.
    package static func spawn(
        _ arguments: [String], environment: [String]? = nil, files: [FileAction], directory: String? = nil,
        newProcessGroup: Bool = false
    ) throws(SpawnFailure) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for file in files {
            switch file {
            case let .open(descriptor, path, flags, mode):
                posix_spawn_file_actions_addopen(&actions, descriptor, path, flags, mode)
            case let .duplicate(source, target):
                posix_spawn_file_actions_adddup2(&actions, source, target)
            }
        }
        if let directory, let addChdir = symbol("posix_spawn_file_actions_addchdir_np", AddChdir.self) {
            _ = directory.withCString { addChdir(&actions, $0) }
        }
        if let addCloseFrom = symbol("posix_spawn_file_actions_addclosefrom_np", AddCloseFrom.self) {
            _ = addCloseFrom(&actions, 3)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            // A signal to this process's group (Ctrl-C, a runner killing the tests' group)
            // does not reach the child.
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result: Int32
        if let environment {
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
            defer { for pointer in envp { free(pointer) } }
            result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        } else {
            result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        }
        guard result == 0 else { throw SpawnFailure(program: arguments[0], code: result) }
        return pid
    }

    // Two glibc functions Swift does not import (glibc 2.29 and 2.34).
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// A libc function by name, when this libc has it.
    package static func symbol<T>(_ name: String, _ type: T.Type) -> T? {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), name).map { unsafeBitCast($0, to: type) }
    }
}
