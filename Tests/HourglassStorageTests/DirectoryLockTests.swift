import HourglassStorage
import HourglassTestSupport
import Synchronization
import HourglassTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The directory lock: one engine per directory, across processes, and a directory released by
/// one engine of this process can be taken at once by the next, even while the process spawns
/// children (a spawned child shares every descriptor, the lock's too, until its exec).
@Suite("Directory lock")
struct DirectoryLockTests {
    @Test("a directory released while the process spawns children can be locked again at once")
    func relockWhileSpawning() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let stop = Atomic<Bool>(false)
        let spawned = Atomic<Int>(0)
        let spawner = Thread {
            while !stop.load(ordering: .relaxed) {
                var pid: pid_t = 0
                var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
                defer { free(argv[0]) }
                if posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ) == 0 {
                    var status: Int32 = 0
                    waitpid(pid, &status, 0)
                    spawned.add(1, ordering: .relaxed)
                }
            }
        }
        defer {
            stop.store(true, ordering: .relaxed)
            spawner.join()
        }
        // Held for a moment each time, so that children are spawned while it is held.
        var ts = timespec(tv_sec: 0, tv_nsec: 200_000)
        for _ in 0 ..< 2000 {
            let storage = try PosixFileSystem().openDirectory(directory.path)
            try storage.lock()
            nanosleep(&ts, nil)
            storage.unlock()
        }
        #expect(spawned.load(ordering: .relaxed) > 0, "children were spawned while the lock was taken and released")
    }

    @Test("a directory another holder keeps locked is refused, naming the directory")
    func heldLockIsRefused() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let holder = try PosixFileSystem().openDirectory(directory.path)
        try holder.lock()
        defer { holder.unlock() }
        let second = try PosixFileSystem().openDirectory(directory.path)
        #expect(throws: StorageError.locked(path: directory.path)) { try second.lock() }
    }
}

/// A joinable thread for the test.
private final class Thread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { raw in
            Unmanaged<Thread>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(result == 0)
    }

    func join() { pthread_join(thread, nil) }
}
