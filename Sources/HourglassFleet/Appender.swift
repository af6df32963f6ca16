import Hourglass
import HourglassCore
import NIOCore
import Synchronization

/// Group commit of one partition's inputs from this node: calls made while a frame is being
/// committed wait together and go in the next frame, one statement for all of them.
final class PartitionAppender: Sendable {
    typealias Waiter = @Sendable (Result<Void, HourglassError>) -> Void

    private struct Pending: ~Copyable {
        var records = RecordEncoder(capacity: 16 << 10)
        var frames = FrameEncoder()
        var waiters: [Waiter] = []
        /// Full frames waiting for their turn, oldest first.
        var sealed: [(body: ByteBuffer, records: Int, waiters: [Waiter])] = []
        /// A flush is running: it takes what is pending when its statement returns.
        var flushing = false
        var closed = false
    }

    let partition: Int
    private let database: FleetDatabase
    private let maxRecords: Int
    private let state = Mutex(Pending())
    /// Frames committed and records carried, for statistics.
    let committed = Atomic<Int>(0)
    let carried = Atomic<Int>(0)

    private let notifier: Notifier

    init(partition: Int, database: FleetDatabase, maxRecords: Int, notifier: Notifier) {
        self.notifier = notifier
        self.partition = partition
        self.database = database
        self.maxRecords = maxRecords
    }

    /// Adds records (`encode` appends them) and returns once the frame holding them committed.
    nonisolated(nonsending)
    func append(_ encode: (inout RecordEncoder) -> Void) async throws(HourglassError) {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            enqueue(encode) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// Adds records (`encode` appends them) now, in the order of the calls; `completion` runs
    /// once the frame holding them committed (or failed).
    func enqueue(_ encode: (inout RecordEncoder) -> Void, completion: @escaping Waiter) {
        let start = state.withLock { pending -> Bool? in
            if pending.closed { return nil }
            if pending.records.count >= maxRecords || pending.records.byteCount >= PartitionAppender.sealBytes {
                pending.sealed.append(seal(&pending))
            }
            encode(&pending.records)
            pending.waiters.append(completion)
            if pending.flushing { return false }
            pending.flushing = true
            return true
        }
        switch start {
        case nil: completion(.failure(.closed))
        case true?: Task { await self.flush() }
        case false?: break
        }
    }

    /// Commits what is pending, frame after frame, until nothing is.
    private func flush() async {
        while true {
            let batch = state.withLock { pending -> (body: ByteBuffer, records: Int, waiters: [Waiter])? in
                if !pending.sealed.isEmpty { return pending.sealed.removeFirst() }
                if pending.waiters.isEmpty {
                    pending.flushing = false
                    return nil
                }
                return seal(&pending)
            }
            guard let (body, records, waiters) = batch else { return }
            let result: Result<Void, HourglassError>
            do throws(HourglassError) {
                _ = try await database.append(partition: partition, records: records, body: body)
                committed.add(1, ordering: .relaxed)
                notifier.note(partition)
                carried.add(records, ordering: .relaxed)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            for waiter in waiters { waiter(result) }
        }
    }

    /// A frame is sealed once its records pass this many bytes (the frame format allows 32 MiB).
    static let sealBytes = 8 << 20

    /// Encodes the pending records as a frame and starts a new one.
    private func seal(_ pending: inout Pending) -> (body: ByteBuffer, records: Int, waiters: [Waiter]) {
        let body = FleetFrames.encode(pending.records, into: &pending.frames)
        let batch = (body: body, records: pending.records.count, waiters: pending.waiters)
        pending.records.reset()
        pending.waiters = []
        return batch
    }

    /// Refuses further appends (those pending still commit).
    func close() {
        state.withLock { $0.closed = true }
    }
}

/// Tells the owners of partitions that frames were committed: the partitions appended to since
/// the last notification, in one statement, one statement at a time. Off the callers' path; a
/// lost notification costs an owner at most its poll interval.
final class Notifier: Sendable {
    private struct State {
        var dirty = Set<Int>()
        var running = false
    }

    private let state = Mutex(State())
    private let database: FleetDatabase

    init(database: FleetDatabase) { self.database = database }

    func note(_ partition: Int) {
        let start = state.withLock { state -> Bool in
            state.dirty.insert(partition)
            if state.running { return false }
            state.running = true
            return true
        }
        if start { Task { await self.run() } }
    }

    private func run() async {
        while true {
            let partitions = state.withLock { state -> [Int] in
                defer { state.dirty.removeAll(keepingCapacity: true) }
                if state.dirty.isEmpty { state.running = false }
                return state.dirty.sorted()
            }
            if partitions.isEmpty { return }
            do throws(HourglassError) {
                try await database.notify(partitions: partitions)
            } catch {
                // The owners poll.
            }
        }
    }
}
