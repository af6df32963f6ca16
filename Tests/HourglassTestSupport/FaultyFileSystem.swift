import HourglassStorage
import Synchronization
import SystemPackage

/// The real file system with failures injected on demand: a disk that fills up after a byte
/// budget, syncs or writes that fail with EIO. Thread-safe (segments are prepared on a
/// background thread).
public final class FaultyFileSystem: StorageFileSystem, Sendable {
    public struct Plan: Sendable {
        /// Bytes that files may still allocate; past it, allocation fails with ENOSPC.
        public var allocationBudget: Int? = nil
        /// Fail every sync (msync, fsync) with this error from now on.
        public var failSyncs: Errno? = nil
        /// Fail every write into a file with this error from now on.
        public var failWrites: Errno? = nil
        public init() {}
    }

    private let plan: Mutex<Plan>
    private let real = PosixFileSystem()

    public init(_ plan: Plan = Plan()) { self.plan = Mutex(plan) }

    /// Changes the plan.
    public func update(_ body: (inout Plan) -> Void) { plan.withLock { body(&$0) } }

    fileprivate func allocate(_ bytes: Int) -> Bool {
        plan.withLock { plan in
            guard let budget = plan.allocationBudget else { return true }
            if bytes > budget { return false }
            plan.allocationBudget = budget - bytes
            return true
        }
    }

    fileprivate var syncFailure: Errno? { plan.withLock { $0.failSyncs } }
    fileprivate var writeFailure: Errno? { plan.withLock { $0.failWrites } }

    package func openDirectory(_ path: String) throws(StorageError) -> any StorageDirectory {
        FaultyDirectory(try real.openDirectory(path), faults: self)
    }
}

final class FaultyDirectory: StorageDirectory {
    let inner: any StorageDirectory
    let faults: FaultyFileSystem

    init(_ inner: any StorageDirectory, faults: FaultyFileSystem) {
        self.inner = inner
        self.faults = faults
    }

    var path: String { inner.path }
    func lock() throws(StorageError) { try inner.lock() }
    func unlock() { inner.unlock() }
    func list() throws(StorageError) -> [String] { try inner.list() }

    func createFile(_ name: String, length: Int) throws(StorageError) -> any StorageFile {
        guard faults.allocate(length) else { throw .diskFull(path: path + "/" + name) }
        return FaultyFile(try inner.createFile(name, length: length), faults: faults)
    }

    func openFile(_ name: String, writable: Bool) throws(StorageError) -> any StorageFile {
        FaultyFile(try inner.openFile(name, writable: writable), faults: faults)
    }

    func createStream(_ name: String) throws(StorageError) -> any StorageStream { try inner.createStream(name) }
    func fileLength(_ name: String) throws(StorageError) -> Int { try inner.fileLength(name) }
    func remove(_ name: String) throws(StorageError) { try inner.remove(name) }
    func rename(_ from: String, to: String) throws(StorageError) { try inner.rename(from, to: to) }

    func sync() throws(StorageError) {
        if let errno = faults.syncFailure { throw .io(operation: "fsync", path: path, errno: errno) }
        try inner.sync()
    }
}

final class FaultyFile: StorageFile {
    let inner: any StorageFile
    let faults: FaultyFileSystem

    init(_ inner: any StorageFile, faults: FaultyFileSystem) {
        self.inner = inner
        self.faults = faults
    }

    var path: String { inner.path }
    var length: Int { inner.length }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
        if let errno = faults.writeFailure { throw .io(operation: "write", path: path, errno: errno) }
        try inner.write(bytes, at: offset)
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try inner.withBytes(body) }

    func sync(offset: Int, length: Int) throws(StorageError) {
        if let errno = faults.syncFailure { throw .io(operation: "msync", path: path, errno: errno) }
        try inner.sync(offset: offset, length: length)
    }

    func close() { inner.close() }
}
