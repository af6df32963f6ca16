import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The real file system: files mapped with `mmap(MAP_SHARED)`, allocated with `fallocate`.
///
/// What it creates only its owner can read: payloads carry order and customer data. A
/// directory it creates is `0700`; every file (segments and their `.tmp` names, `LOCK`,
/// checkpoints and their `.tmp` names) is `0600`. The umask can only take bits away from
/// these. An existing directory keeps its mode, so an operator may loosen it deliberately
/// (Docs/OPERATIONS.md, "File permissions").
package struct PosixFileSystem: StorageFileSystem {
    /// The mode of a directory `openDirectory` creates.
    package static let directoryMode: mode_t = 0o700
    /// The mode of every file a directory creates.
    package static let fileMode: mode_t = 0o600

    package init() {}

    package func openDirectory(_ path: String) throws(StorageError) -> any StorageDirectory {
        switch Posix.makeDirectory(path, mode: Self.directoryMode) {
        case .success, .failure(.fileExists): break
        case let .failure(error): throw .from(error, "mkdir", path)
        }
        return try PosixDirectory(path: path)
    }
}

package final class PosixDirectory: StorageDirectory {
    package let path: String
    private let fd: Int32
    private var lockFD: Int32 = -1

    init(path: String) throws(StorageError) {
        self.path = path
        switch Posix.open(path, O_RDONLY | O_DIRECTORY) {
        case let .success(fd): self.fd = fd
        case let .failure(error): throw .from(error, "open", path)
        }
    }

    deinit {
        unlock()
        Posix.close(fd)
    }

    private func full(_ name: String) -> String { path + "/" + name }

    package func lock() throws(StorageError) {
        let lockPath = full("LOCK")
        let fd: Int32
        switch Posix.open(lockPath, O_RDWR | O_CREAT, mode: PosixFileSystem.fileMode) {
        case let .success(opened): fd = opened
        case let .failure(error): throw .from(error, "open", lockPath)
        }
        // A flock belongs to the open file description, and a child process that the host
        // spawns (fork or vfork, then exec) shares every descriptor until its exec closes the
        // close-on-exec ones. So an engine of this process that has just closed can still look
        // locked for the microseconds a concurrent spawn takes: try again for a short while
        // before saying another engine holds the directory.
        var attempt = 0
        while true {
            switch Posix.lockExclusive(fd) {
            case .success:
                lockFD = fd
                return
            case .failure(.wouldBlock) where attempt < PosixDirectory.lockAttempts:
                attempt += 1
                Posix.sleep(microseconds: 2_000)
                continue
            case .failure(.wouldBlock):
                Posix.close(fd)
                throw .locked(path: path)
            case let .failure(error):
                Posix.close(fd)
                throw .from(error, "flock", lockPath)
            }
        }
    }

    /// Attempts at the lock, 2 ms apart, before a held lock is reported (a quarter of a second:
    /// a spawn's window, even on a loaded machine, and short next to a real conflict).
    static let lockAttempts = 125

    package func unlock() {
        if lockFD >= 0 {
            Posix.close(lockFD)  // closing the descriptor releases the flock
            lockFD = -1
        }
    }

    package func list() throws(StorageError) -> [String] {
        switch Posix.listDirectory(path) {
        case let .success(names): return names
        case let .failure(error): throw .from(error, "readdir", path)
        }
    }

    package func createFile(_ name: String, length: Int) throws(StorageError) -> any StorageFile {
        let filePath = full(name)
        let fd: Int32
        switch Posix.open(filePath, O_RDWR | O_CREAT | O_TRUNC, mode: PosixFileSystem.fileMode) {
        case let .success(opened): fd = opened
        case let .failure(error): throw .from(error, "open", filePath)
        }
        if case let .failure(error) = Posix.allocate(fd, offset: 0, length: length) {
            Posix.close(fd)
            _ = Posix.unlink(filePath)
            throw .from(error, "fallocate", filePath)
        }
        return try MappedFile(path: filePath, fd: fd, length: length, writable: true)
    }

    package func openFile(_ name: String, writable: Bool) throws(StorageError) -> any StorageFile {
        let filePath = full(name)
        let fd: Int32
        switch Posix.open(filePath, writable ? O_RDWR : O_RDONLY) {
        case let .success(opened): fd = opened
        case let .failure(error): throw .from(error, "open", filePath)
        }
        let length: Int
        switch Posix.size(fd) {
        case let .success(size): length = size
        case let .failure(error):
            Posix.close(fd)
            throw .from(error, "fstat", filePath)
        }
        return try MappedFile(path: filePath, fd: fd, length: length, writable: writable)
    }

    package func createStream(_ name: String) throws(StorageError) -> any StorageStream {
        let filePath = full(name)
        switch Posix.open(filePath, O_WRONLY | O_CREAT | O_TRUNC, mode: PosixFileSystem.fileMode) {
        case let .success(fd): return PosixStream(path: filePath, fd: fd)
        case let .failure(error): throw .from(error, "open", filePath)
        }
    }

    package func fileLength(_ name: String) throws(StorageError) -> Int {
        let filePath = full(name)
        switch Posix.open(filePath, O_RDONLY) {
        case let .success(fd):
            defer { Posix.close(fd) }
            switch Posix.size(fd) {
            case let .success(size): return size
            case let .failure(error): throw .from(error, "fstat", filePath)
            }
        case let .failure(error): throw .from(error, "open", filePath)
        }
    }

    package func remove(_ name: String) throws(StorageError) {
        switch Posix.unlink(full(name)) {
        case .success, .failure(.noSuchFileOrDirectory): return
        case let .failure(error): throw .from(error, "unlink", full(name))
        }
    }

    package func rename(_ from: String, to: String) throws(StorageError) {
        if case let .failure(error) = Posix.rename(full(from), full(to)) { throw .from(error, "rename", full(from)) }
    }

    package func sync() throws(StorageError) {
        if case let .failure(error) = Posix.fsync(fd) { throw .from(error, "fsync", path) }
    }
}

/// A file mapped whole into memory. The one type that does pointer arithmetic on a file's
/// bytes; every access checks its bounds.
package final class MappedFile: StorageFile {
    package let path: String
    package let length: Int
    private var fd: Int32
    private var base: UnsafeMutableRawPointer?
    private let writable: Bool

    init(path: String, fd: Int32, length: Int, writable: Bool) throws(StorageError) {
        self.path = path
        self.fd = fd
        self.length = length
        self.writable = writable
        if length > 0 {
            switch Posix.map(fd, length: length, writable: writable) {
            case let .success(address):
                base = address
                // No read-ahead around a fault: it would pull the never-written rest of a
                // preallocated segment into the page cache (as zeros) for nothing.
                Posix.adviseRandom(address, length: length)
            case let .failure(error):
                Posix.close(fd)
                throw .from(error, "mmap", path)
            }
        }
    }

    deinit { close() }

    package func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
        precondition(writable, "write to a read-only mapping of \(path)")
        precondition(offset >= 0 && offset + bytes.count <= length, "write of \(bytes.count) bytes at \(offset) past the end of \(path) (\(length))")
        guard bytes.count > 0, let base else { return }
        (base + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    package func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : length))
    }

    package func sync(offset: Int, length syncLength: Int) throws(StorageError) {
        guard syncLength > 0, let base else { return }
        precondition(offset >= 0 && offset + syncLength <= length, "sync past the end of \(path)")
        let page = Posix.pageSize
        let start = offset / page * page
        let end = min(length, offset + syncLength)
        if case let .failure(error) = Posix.msync(base + start, length: end - start) {
            throw .from(error, "msync", path)
        }
    }

    package func nextData(from offset: Int) -> Int? {
        guard offset < length else { return nil }
        guard fd >= 0 else { return offset }
        switch Posix.seekData(fd, from: offset) {
        case let .success(position): return position < length ? position : nil
        case .failure(.noSuchAddressOrDevice): return nil  // only a hole (never written) follows
        case .failure: return offset  // unknown: look at every byte
        }
    }

    package func close() {
        if let base { Posix.unmap(base, length: length) }
        base = nil
        if fd >= 0 { Posix.close(fd) }
        fd = -1
    }
}

final class PosixStream: StorageStream {
    let path: String
    private var fd: Int32
    private(set) var length = 0

    init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close() }

    func append(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        if case let .failure(error) = Posix.writeAll(fd, bytes, at: length) { throw .from(error, "write", path) }
        length += bytes.count
    }

    func sync() throws(StorageError) {
        if case let .failure(error) = Posix.fsync(fd) { throw .from(error, "fsync", path) }
    }

    func close() {
        if fd >= 0 { Posix.close(fd) }
        fd = -1
    }
}
