import CHourglass
import SystemPackage
#if canImport(Glibc)
import Glibc
#else
// Linux only: these wrappers call glibc by name (`Glibc.open`, `Glibc.fdatasync`) and rely on
// `fallocate` and `SEEK_DATA`. A port would start here and in CHourglass/fileops.c.
#error("Hourglass builds on Linux (glibc) only; see README.md, Sharp edges")
#endif

/// The system calls the storage layer makes, wrapped once, in the style of swift-system: each
/// returns `Result<_, Errno>`, reads `errno` right after the call, and retries on EINTR. A bad
/// file descriptor or address is a bug in this code and traps.
enum Posix {
    @inline(__always)
    private static func check(_ value: Int32, _ name: StaticString) -> Result<Int32, Errno> {
        if value >= 0 { return .success(value) }
        let error = Errno(rawValue: errno)
        precondition(error != .badFileDescriptor && error != .badAddress, "Hourglass: \(name) on a bad descriptor or address")
        return .failure(error)
    }

    @inline(__always)
    private static func retrying(_ name: StaticString, _ call: () -> Int32) -> Result<Int32, Errno> {
        while true {
            let result = check(call(), name)
            if case .failure(.interrupted) = result { continue }
            return result
        }
    }

    /// Opens `path`; with `O_CREAT`, `mode` is the new file's mode (less the umask) and must
    /// be given. The corresponding C function is `open`.
    @inline(never)
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) -> Result<Int32, Errno> {
        precondition(flags & O_CREAT == 0 || mode != 0, "Hourglass: open with O_CREAT and no mode for \(path)")
        return retrying("open") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// The corresponding C function is `close`. EINTR is not retried (the descriptor is gone).
    @inline(never)
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// The corresponding C function is `fallocate` (`posix_fallocate` where it is missing).
    @inline(never)
    static func allocate(_ fd: Int32, offset: Int, length: Int) -> Result<Void, Errno> {
        let result = hg_fallocate(fd, Int64(offset), Int64(length))
        if result == 0 { return .success(()) }
        if result == EOPNOTSUPP || result == ENOSYS {
            let fallback = posix_fallocate(fd, off_t(offset), off_t(length))
            return fallback == 0 ? .success(()) : .failure(Errno(rawValue: fallback))
        }
        return .failure(Errno(rawValue: result))
    }

    /// The corresponding C function is `ftruncate`.
    @inline(never)
    static func truncate(_ fd: Int32, length: Int) -> Result<Void, Errno> {
        retrying("ftruncate") { ftruncate(fd, off_t(length)) }.map { _ in }
    }

    /// The size of an open file. The corresponding C function is `fstat`.
    @inline(never)
    static func size(_ fd: Int32) -> Result<Int, Errno> {
        var info = stat()
        return retrying("fstat") { fstat(fd, &info) }.map { _ in Int(info.st_size) }
    }

    /// Writes all of `bytes` at `offset`. The corresponding C function is `pwrite`.
    @inline(never)
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> Result<Void, Errno> {
        var done = 0
        while done < bytes.count {
            let written = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0 {
                let error = Errno(rawValue: errno)
                if error == .interrupted { continue }
                precondition(error != .badFileDescriptor && error != .badAddress, "Hourglass: pwrite on a bad descriptor")
                return .failure(error)
            }
            if written == 0 { return .failure(.noSpace) }
            done += written
        }
        return .success(())
    }

    /// Reads up to `count` bytes at `offset`. The corresponding C function is `pread`.
    @inline(never)
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Result<Int, Errno> {
        var done = 0
        while done < buffer.count {
            let count = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if count < 0 {
                let error = Errno(rawValue: errno)
                if error == .interrupted { continue }
                return .failure(error)
            }
            if count == 0 { break }
            done += count
        }
        return .success(done)
    }

    /// The corresponding C function is `fdatasync`.
    @inline(never)
    static func fdatasync(_ fd: Int32) -> Result<Void, Errno> {
        retrying("fdatasync") { Glibc.fdatasync(fd) }.map { _ in }
    }

    /// The corresponding C function is `fsync`.
    @inline(never)
    static func fsync(_ fd: Int32) -> Result<Void, Errno> {
        retrying("fsync") { Glibc.fsync(fd) }.map { _ in }
    }

    /// Maps `length` bytes of `fd` shared (writable) or private read-only. The corresponding C
    /// function is `mmap`.
    @inline(never)
    static func map(_ fd: Int32, length: Int, writable: Bool) -> Result<UnsafeMutableRawPointer, Errno> {
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let address = mmap(nil, length, protection, MAP_SHARED, fd, 0)
        if address == MAP_FAILED || address == nil { return .failure(Errno(rawValue: errno)) }
        return .success(address!)
    }

    /// Turns off read-ahead for a mapping. The corresponding C function is `madvise` with
    /// `MADV_RANDOM`; a failure only costs speed, so it is ignored.
    @inline(never)
    static func adviseRandom(_ address: UnsafeMutableRawPointer, length: Int) {
        _ = madvise(address, length, MADV_RANDOM)
    }

    /// The corresponding C function is `munmap`.
    @inline(never)
    static func unmap(_ address: UnsafeMutableRawPointer, length: Int) {
        _ = munmap(address, length)
    }

    /// Writes back a page-aligned range of a shared mapping and waits for it. The corresponding C
    /// function is `msync` with `MS_SYNC`.
    @inline(never)
    static func msync(_ address: UnsafeMutableRawPointer, length: Int) -> Result<Void, Errno> {
        retrying("msync") { Glibc.msync(address, length, MS_SYNC) }.map { _ in }
    }

    /// Takes an exclusive, non-blocking lock. The corresponding C function is `flock`.
    @inline(never)
    static func lockExclusive(_ fd: Int32) -> Result<Void, Errno> {
        retrying("flock") { flock(fd, LOCK_EX | LOCK_NB) }.map { _ in }
    }

    /// The corresponding C function is `nanosleep`; an interrupted sleep sleeps the rest.
    @inline(never)
    static func sleep(microseconds: Int) {
        var request = timespec(tv_sec: microseconds / 1_000_000, tv_nsec: (microseconds % 1_000_000) * 1000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }

    /// The corresponding C function is `rename`.
    @inline(never)
    static func rename(_ from: String, _ to: String) -> Result<Void, Errno> {
        retrying("rename") { Glibc.rename(from, to) }.map { _ in }
    }

    /// The corresponding C function is `unlink`.
    @inline(never)
    static func unlink(_ path: String) -> Result<Void, Errno> {
        retrying("unlink") { Glibc.unlink(path) }.map { _ in }
    }

    /// Creates a directory with `mode` (less the umask). The corresponding C function is `mkdir`.
    @inline(never)
    static func makeDirectory(_ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying("mkdir") { mkdir(path, mode) }.map { _ in }
    }

    /// Names in a directory (without "." and ".."). The corresponding C functions are
    /// `opendir` and `readdir`.
    @inline(never)
    static func listDirectory(_ path: String) -> Result<[String], Errno> {
        guard let handle = opendir(path) else { return .failure(Errno(rawValue: errno)) }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }

    /// Removes `path` and, if it is a directory, everything below it (symbolic links are
    /// removed, not followed). True when `path` itself was removed.
    @discardableResult
    static func removeTree(_ path: String) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? listDirectory(path).get()) ?? [] { removeTree(path + "/" + name) }
            return Glibc.rmdir(path) == 0
        }
        return Glibc.unlink(path) == 0
    }

    /// The first offset at or after `offset` that holds data (not a hole or a never-written
    /// preallocated extent). The corresponding C function is `lseek` with `SEEK_DATA`.
    @inline(never)
    static func seekData(_ fd: Int32, from offset: Int) -> Result<Int, Errno> {
        let result = lseek(fd, off_t(offset), 3 /* SEEK_DATA */)
        if result < 0 { return .failure(Errno(rawValue: errno)) }
        return .success(Int(result))
    }

    static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }
}

/// Removes `path` and everything below it, for tools and tests (benchmark directories, the
/// demo's scratch directory); never used on an engine's directory. True when `path` went.
@discardableResult
package func removeTree(_ path: String) -> Bool { Posix.removeTree(path) }

/// The names in a directory (without "." and ".."), or none if it cannot be read.
package func listDirectory(_ path: String) -> [String] { (try? Posix.listDirectory(path).get()) ?? [] }
