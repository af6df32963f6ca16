import SystemPackage

/// What the storage layer reports. The engine maps it to `HourglassError`.
package enum StorageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed: which, on what, and the errno.
    case io(operation: String, path: String, errno: Errno)
    /// No space left (ENOSPC, or EDQUOT).
    case diskFull(path: String)
    /// Another engine holds the directory's lock.
    case locked(path: String)
    /// A file does not hold what it should.
    case corruption(file: String, offset: Int64, reason: String)

    package var description: String {
        switch self {
        case let .io(operation, path, errno): return "\(operation) failed on \(path): \(errno) (errno \(errno.rawValue))"
        case let .diskFull(path): return "no space left on the device holding \(path)"
        case let .locked(path): return "\(path) is locked by another engine"
        case let .corruption(file, offset, reason): return "\(file) at offset \(offset): \(reason)"
        }
    }

    /// Maps a failed call to an error, telling a full disk apart.
    static func from(_ errno: Errno, _ operation: String, _ path: String) -> StorageError {
        if errno == .noSpace || errno == .diskQuotaExceeded { return .diskFull(path: path) }
        return .io(operation: operation, path: path, errno: errno)
    }
}
