import HourglassCore
import HourglassStorage

/// The engine's journal over a directory: records go into the log writer's current frame; a
/// commit writes the frame; a sync makes it durable.
///
/// The record methods cannot fail: an error while writing an early frame (a big batch) is kept
/// and reported by the next `commit`, before anything is acknowledged.
final class _WALJournal: _Journal {
    let writer: LogWriter
    let directory: any StorageDirectory
    private var pendingError: StorageError?

    init(writer: LogWriter, directory: any StorageDirectory) {
        self.writer = writer
        self.directory = directory
    }

    /// Room for a record of `bytes` in the current frame.
    @inline(__always)
    private func reserve(_ bytes: Int) -> Bool {
        guard pendingError == nil else { return false }
        do throws(StorageError) {
            try writer.reserve(recordBytes: bytes)
            return true
        } catch {
            pendingError = error
            return false
        }
    }

    func schedule(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer) {
        guard reserve(id.count + payload.count + 32) else { return }
        writer.records.schedule(id: id, deadline: deadline, attempt: attempt, payload: payload)
    }

    func cancel(id: UnsafeRawBufferPointer) {
        guard reserve(id.count + 16) else { return }
        writer.records.cancel(id: id)
    }

    func fire(id: UnsafeRawBufferPointer, attempt: UInt32) {
        guard reserve(id.count + 24) else { return }
        writer.records.fire(id: id, attempt: attempt)
    }

    func ack(id: UnsafeRawBufferPointer) {
        guard reserve(id.count + 16) else { return }
        writer.records.ack(id: id)
    }

    func retry(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32) {
        guard reserve(id.count + 32) else { return }
        writer.records.retry(id: id, deadline: deadline, attempt: attempt)
    }

    func commit() throws(HourglassError) -> Bool {
        if let pendingError { throw HourglassError(pendingError) }
        do throws(StorageError) {
            return try writer.flush()
        } catch {
            pendingError = error
            throw HourglassError(error)
        }
    }

    func sync() throws(HourglassError) {
        do throws(StorageError) {
            try writer.sync()
        } catch {
            pendingError = error
            throw HourglassError(error)
        }
    }

    func close() throws(HourglassError) {
        defer { directory.unlock() }
        if let pendingError { throw HourglassError(pendingError) }
        do throws(StorageError) {
            try writer.close()
        } catch {
            throw HourglassError(error)
        }
    }

    var bytesWritten: Int { writer.bytesWritten }
    var framesWritten: Int { writer.framesWritten }
    var syncs: Int { writer.syncs }
}

extension HourglassError {
    init(_ error: StorageError) {
        switch error {
        case let .io(operation, path, errno):
            self = .io(operation: operation, path: path, errno: errno.rawValue, message: "\(errno)")
        case let .diskFull(path):
            self = .diskFull(path: path)
        case let .locked(path):
            self = .directoryLocked(path: path)
        case let .corruption(file, offset, reason):
            self = .corruption(file: file, offset: offset, reason: reason)
        }
    }
}
