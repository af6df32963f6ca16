import HourglassCore

/// Prepares the next segment while the writer fills the current one: creates it under a
/// temporary name, allocates it in full, syncs it, renames it into place and syncs the
/// directory. So a full disk is known before the writer needs the space, and the writer never
/// waits for `fallocate` unless it outruns the preparer.
package final class SegmentPreparer: @unchecked Sendable {
    private enum Slot {
        case idle
        case preparing(UInt64)
        case ready(UInt64, any StorageFile)
        case failed(UInt64, StorageError)
    }

    private let directory: any StorageDirectory
    private let length: Int
    private let background: Bool
    private let lock = ConditionLock()
    private var slot: Slot = .idle
    private let done = Semaphore()

    /// - Parameter background: prepare on a separate thread (the default); false prepares
    ///   synchronously in `take` (simulated file systems in tests).
    package init(directory: any StorageDirectory, length: Int, background: Bool = true) {
        self.directory = directory
        self.length = length
        self.background = background
    }

    /// Starts preparing segment `number`.
    package func request(_ number: UInt64) {
        guard background else { return }
        let start = lock.withLock { () -> Bool in
            if case .idle = slot {
                slot = .preparing(number)
                return true
            }
            return false
        }
        guard start else { return }
        startThread(name: "hourglass-segs") { [self] in
            let result = Result { () throws(StorageError) in try prepare(number) }
            lock.withLock {
                switch result {
                case let .success(file): slot = .ready(number, file)
                case let .failure(error): slot = .failed(number, error)
                }
            }
            done.signal()
        }
    }

    /// Segment `number`, prepared: waits for the preparation if it is under way.
    package func take(_ number: UInt64) throws(StorageError) -> any StorageFile {
        while true {
            let outcome = lock.withLock { () -> Result<(any StorageFile)?, StorageError>? in
                switch slot {
                case .idle:
                    return .success(nil)
                case .preparing:
                    return nil
                case let .ready(prepared, file):
                    slot = .idle
                    if prepared == number { return .success(file) }
                    file.close()
                    return .success(nil)
                case let .failed(prepared, error):
                    slot = .idle
                    return prepared == number ? .failure(error) : .success(nil)
                }
            }
            switch outcome {
            case .none:
                done.wait()
            case let .success(file?):
                return file
            case .success(nil):
                return try prepare(number)
            case let .failure(error):
                throw error
            }
        }
    }

    /// Waits for a preparation under way and closes what it made (the file stays on disk as a
    /// spare, which the next open reuses).
    package func stop() {
        while true {
            let busy = lock.withLock { () -> Bool in
                switch slot {
                case .preparing: return true
                case let .ready(_, file):
                    file.close()
                    slot = .idle
                    return false
                default:
                    slot = .idle
                    return false
                }
            }
            if !busy { return }
            done.wait()
        }
    }

    private func prepare(_ number: UInt64) throws(StorageError) -> any StorageFile {
        let name = SegmentName.name(number)
        let temporary = name + ".tmp"
        let file = try directory.createFile(temporary, length: length)
        do throws(StorageError) {
            try file.sync(offset: 0, length: min(length, 4096))
            file.close()
            try directory.rename(temporary, to: name)
            try directory.sync()
            return try directory.openFile(name, writable: true)
        } catch {
            file.close()
            try? directory.remove(temporary)
            throw error
        }
    }
}
