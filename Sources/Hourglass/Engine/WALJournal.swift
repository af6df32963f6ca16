import HourglassCore
import HourglassStorage

/// The engine's journal over a directory: records go into the log writer's current frame; a
/// commit writes the frame; a sync makes it durable.
///
/// The record methods cannot fail: an error while writing an early frame (a big batch) is kept
/// and reported by the next `commit`, before anything is acknowledged.
final class WALJournal {
    let writer: LogWriter
    let directory: any StorageDirectory
    @exclusivity(unchecked) private var pendingError: StorageError?

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

    func series(id: UnsafeRawBufferPointer, deadline: Int64, attempt: UInt32, payload: UnsafeRawBufferPointer,
                rule: UnsafeRawBufferPointer, state: SeriesFields) {
        guard reserve(id.count + payload.count + rule.count + 64) else { return }
        writer.records.series(id: id, deadline: deadline, attempt: attempt, payload: payload, rule: rule, state: state)
    }

    func next(id: UnsafeRawBufferPointer, deadline: Int64, state: SeriesFields) {
        guard reserve(id.count + 48) else { return }
        writer.records.next(id: id, deadline: deadline, state: state)
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

    /// The ranges written since the last call, for the sync thread (see `Syncer`).
    func takeSyncBatch() -> LogWriter.SyncBatch { writer.takeSyncBatch() }

    /// Closes without writing or syncing anything more (the engine stopped after a failure).
    func abandon() {
        writer.abandon()
        directory.unlock()
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

    /// The sequence number the next record gets.
    var nextSequence: UInt64 { writer.nextSequence + UInt64(writer.records.count) }

    /// Starts a checkpoint: moves the log to a new segment, whose first record is the
    /// checkpoint's start sequence, and starts the checkpoint thread.
    func beginCheckpoint(handleLimit: UInt32, clock: any HourglassClock, notify: @escaping @Sendable () -> Void) throws(HourglassError) -> CheckpointJob {
        if let pendingError { throw HourglassError(pendingError) }
        do throws(StorageError) {
            let (segment, sequence) = try writer.startNewSegment()
            let checkpointWriter = CheckpointWriter(directory: directory, startSequence: sequence, clock: { [clock] in clock.now() }, notify: notify)
            return CheckpointJob(writer: checkpointWriter, startSequence: sequence, startSegment: segment, handleLimit: handleLimit)
        } catch {
            pendingError = error
            throw HourglassError(error)
        }
    }

    /// The checkpoint is durable: deletes the segments and the older checkpoints it covers.
    func completeCheckpoint(_ job: CheckpointJob) throws(HourglassError) {
        do throws(StorageError) {
            try writer.removeSegments(before: job.startSegment)
            for name in try directory.list() {
                if let sequence = CheckpointName.startSequence(name), sequence < job.startSequence {
                    try directory.remove(name)
                }
            }
            try directory.sync()
        } catch {
            throw HourglassError(error)
        }
    }

    var bytesWritten: Int { writer.bytesWritten }
    var rawBytesWritten: Int { writer.rawBytesWritten }
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
