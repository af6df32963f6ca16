import Hourglass
import HourglassCore
import NIOCore
import Synchronization

/// Group commit of this node's appends: the calls made while a statement is in flight wait
/// together for the next one, which carries a frame for each partition they touched — one
/// statement and one commit for all of them, whatever partitions they fall in
/// (`FleetDatabase.append(frames:)`). A call is in one statement: all of its records commit,
/// or none.
final class NodeAppender: Sendable {
    typealias Waiter = @Sendable (Result<Void, HourglassError>) -> Void

    /// One partition's records in the batch being filled.
    final class Frame {
        var records = RecordEncoder(capacity: 4 << 10)
    }

    /// The records of the calls that go in one statement, by partition (nil: none yet).
    struct Batch {
        fileprivate var frames: [Frame?]
        fileprivate(set) var records = 0
        fileprivate(set) var bytes = 0
        fileprivate var waiters: [Waiter] = []

        fileprivate init(partitions: Int) { frames = Array(repeating: nil, count: partitions) }

        /// Appends records (`encode` writes them) to `partition`'s frame.
        mutating func add(to partition: Int, _ encode: (inout RecordEncoder) -> Void) {
            let frame: Frame
            if let existing = frames[partition] {
                frame = existing
            } else {
                frame = Frame()
                frames[partition] = frame
            }
            let (count, byteCount) = (frame.records.count, frame.records.byteCount)
            encode(&frame.records)
            records += frame.records.count - count
            bytes += frame.records.byteCount - byteCount
        }
    }

    /// A batch encoded as frames, in partition order, waiting for its statement.
    private struct Sealed {
        var frames: [FleetDatabase.NewFrame]
        var records: Int
        var waiters: [Waiter]
    }

    private struct State: ~Copyable {
        var filling: Batch
        var sealed: [Sealed] = []
        var frameEncoder = FrameEncoder()
        /// A flush is running: it takes what is pending when its statement returns.
        var flushing = false
        var closed = false
    }

    private let partitions: Int
    private let database: FleetDatabase
    private let maxRecords: Int
    private let state: Mutex<State>
    private let notifier: Notifier
    /// Statements and frames committed and records carried, for statistics.
    let statements = Atomic<Int>(0)
    let committed = Atomic<Int>(0)
    let carried = Atomic<Int>(0)

    /// A batch is sealed once its records pass this many bytes (a frame may hold 32 MiB; one
    /// call adds at most `chunkBytes` more).
    static let sealBytes = 8 << 20
    /// The most bytes of records one call adds (`HourglassFleetNode.schedule(_:)` splits larger ones).
    static let chunkBytes = 8 << 20

    init(partitions: Int, database: FleetDatabase, maxRecords: Int, notifier: Notifier) {
        self.partitions = partitions
        self.database = database
        self.maxRecords = maxRecords
        self.notifier = notifier
        state = Mutex(State(filling: Batch(partitions: partitions)))
    }

    /// Adds `records` records (`encode` writes them) and returns once the statement holding
    /// them committed.
    nonisolated(nonsending)
    func append(records: Int, _ encode: (inout Batch) -> Void) async throws(HourglassError) {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, HourglassError>, Never>) in
            enqueue(records: records, encode) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// Adds `records` records (`encode` writes them) now, in the order of the calls;
    /// `completion` runs once the statement holding them committed (or failed).
    func enqueue(records: Int, _ encode: (inout Batch) -> Void, completion: @escaping Waiter) {
        let start = state.withLock { state -> Bool? in
            if state.closed { return nil }
            if state.filling.records > 0
                && (state.filling.records + records > maxRecords || state.filling.bytes >= NodeAppender.sealBytes)
            {
                state.sealed.append(seal(&state))
            }
            encode(&state.filling)
            state.filling.waiters.append(completion)
            if state.flushing { return false }
            state.flushing = true
            return true
        }
        switch start {
        case nil: completion(.failure(.closed))
        case true?: Task { await self.flush() }
        case false?: break
        }
    }

    /// Commits what is pending, statement after statement, until nothing is.
    private func flush() async {
        while true {
            let batch = state.withLock { state -> Sealed? in
                if !state.sealed.isEmpty { return state.sealed.removeFirst() }
                if state.filling.waiters.isEmpty {
                    state.flushing = false
                    return nil
                }
                return seal(&state)
            }
            guard let batch else { return }
            let result: Result<Void, HourglassError>
            if batch.frames.isEmpty {
                result = .success(())
            } else {
                do throws(HourglassError) {
                    try await database.append(frames: batch.frames)
                    statements.add(1, ordering: .relaxed)
                    committed.add(batch.frames.count, ordering: .relaxed)
                    carried.add(batch.records, ordering: .relaxed)
                    notifier.note(batch.frames.map(\.partition))
                    result = .success(())
                } catch {
                    result = .failure(error)
                }
            }
            for waiter in batch.waiters { waiter(result) }
        }
    }

    /// Encodes the batch being filled as frames, in partition order (the statement locks the
    /// partitions' rows in that order, so two nodes' statements never deadlock), and starts a
    /// new one.
    private func seal(_ state: inout State) -> Sealed {
        var frames: [FleetDatabase.NewFrame] = []
        for (partition, frame) in state.filling.frames.enumerated() {
            guard let frame, !frame.records.isEmpty else { continue }
            let body = FleetFrames.encode(frame.records, into: &state.frameEncoder)
            frames.append(FleetDatabase.NewFrame(partition: partition, records: frame.records.count, body: body))
        }
        let sealed = Sealed(frames: frames, records: state.filling.records, waiters: state.filling.waiters)
        state.filling = Batch(partitions: partitions)
        return sealed
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

    func note(_ partitions: [Int]) {
        let start = state.withLock { state -> Bool in
            state.dirty.formUnion(partitions)
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
