import Hourglass
import HourglassCore
import Logging
import NIOCore
import Synchronization

/// A partition this node owns under one epoch: its wheel, rebuilt from PostgreSQL (the newest
/// checkpoint, then the frames after it), kept up to date by applying the partition's log in
/// sequence order, and fired under the epoch fence. One task runs it; nothing else touches its
/// state. It ends when the node loses or gives up the lease (the task is cancelled) or the
/// fence refuses a write (another node claimed the partition).
final class PartitionOwner: @unchecked Sendable {
    let partition: Int
    let epoch: Int64
    private let context: FleetContext
    let wakeup = Wakeup()

    // The task's state.
    private var wheel: TimerWheel
    /// The sequence number of the next record to apply: everything before it is in the wheel.
    private var applied: Int64 = 1
    private var sinceCheckpoint = 0
    private var checkpointTask: Task<Void, Never>? = nil
    private let checkpointRunning = Atomic<Bool>(false)
    private var decoder = FrameDecoder()
    private var fired: [TimerHandle] = []
    private var records = RecordEncoder(capacity: 64 << 10)
    private var frames = FrameEncoder()

    /// Read by `status()` from other threads.
    let pendingTimers = Atomic<Int>(0)
    let appliedSequence = Atomic<Int64>(1)
    /// Set once the wheel is rebuilt, caught up with the log and firing.
    let ready = Atomic<Bool>(false)
    /// Set when the owner is told to stop.
    let stopped = Atomic<Bool>(false)
    /// Set when its task has ended, told to or not (fenced: the node's lease loop then decides
    /// whether the partition is still this node's, see `HourglassFleetNode.runLeases`).
    let ended = Atomic<Bool>(false)
    /// Monotonic nanoseconds of the claim, and of the first delivery under it (0: none yet).
    let claimedAt: UInt64
    let firstDeliveryAt = Atomic<UInt64>(0)
    /// Why the owner cannot fire the partition (a damaged log), if it cannot.
    let failure = Mutex<String?>(nil)

    private var task: Task<Void, Never>? = nil

    init(partition: Int, epoch: Int64, context: FleetContext) {
        self.partition = partition
        self.epoch = epoch
        self.context = context
        self.claimedAt = monotonicNanoseconds()
        wheel = TimerWheel(tickMilliseconds: context.tickMilliseconds, now: context.clock.now())
    }

    func start() {
        task = Task { await self.run() }
    }

    /// Stops the owner and waits until its task has ended (a delivery it decided is either
    /// handed over or not at all).
    func stop() async {
        stopped.store(true, ordering: .releasing)
        task?.cancel()
        wakeup.signal()
        await task?.value
        await checkpointTask?.value
    }

    private var logger: Logger { context.logger }

    // MARK: The loop

    private func run() async {
        defer { ended.store(true, ordering: .releasing) }
        var backoff: UInt64 = 50_000_000
        var needsRebuild = true
        while !Task.isCancelled {
            do throws(OwnerFailure) {
                if needsRebuild {
                    try await rebuild()
                    try await catchUp()
                    needsRebuild = false
                    failure.withLock { $0 = nil }
                    ready.store(true, ordering: .releasing)
                    logger.info("fleet: owning partition", metadata: [
                        "partition": "\(partition)", "epoch": "\(epoch)", "timers": "\(wheel.count)", "applied": "\(applied)",
                        "rebuild_ms": "\((monotonicNanoseconds() - claimedAt) / 1_000_000)"])
                }
                try await catchUp()
                if try await fireDue() { continue }  // more due, or frames to read first
                if sinceCheckpoint >= context.options.checkpointRecords { startCheckpoint() }
                backoff = 50_000_000
                await wakeup.wait(nanoseconds: waitNanoseconds())
            } catch {
                switch error {
                case .fenced:
                    logger.notice("fleet: partition fenced: another node claimed it", metadata: ["partition": "\(partition)", "epoch": "\(epoch)"])
                    return
                case .gap:
                    // Frames this owner had not read were deleted under a newer checkpoint.
                    needsRebuild = true
                case let .failed(error):
                    if Task.isCancelled { return }
                    if case .corruption = error {
                        // No node can apply a damaged log: hold the partition (firing nothing
                        // of it) and say so, rather than pass the damage around the fleet.
                        logger.error("fleet: partition's log is damaged; not firing it", metadata: ["partition": "\(partition)", "error": "\(error)"])
                        failure.withLock { $0 = error.description }
                        needsRebuild = true
                        try? await Task.sleep(nanoseconds: 5_000_000_000)
                        continue
                    }
                    logger.warning("fleet: partition owner retrying", metadata: ["partition": "\(partition)", "error": "\(error)"])
                    try? await Task.sleep(nanoseconds: backoff)
                    backoff = min(backoff * 2, 1_000_000_000)
                }
            }
        }
    }

    enum OwnerFailure: Error {
        case fenced
        case gap
        case failed(HourglassError)
    }

    /// How long to wait for work: until the next deadline or redelivery, at most a poll interval.
    private func waitNanoseconds() -> UInt64 {
        let poll = UInt64(context.options.pollInterval.wholeMilliseconds) * 1_000_000
        if context.clock.isManual { return poll }
        var next = wheel.nextRedelivery()
        if let deadline = wheel.nextDeadline() { next = min(next ?? deadline, deadline) }
        guard let next else { return poll }
        let now = context.clock.now()
        if next <= now { return 0 }
        return min(poll, UInt64(next - now) * 1_000_000)
    }

    // MARK: Rebuilding

    /// The wheel from PostgreSQL: the newest checkpoint, then (in `catchUp`) the frames after it.
    private func rebuild() async throws(OwnerFailure) {
        wheel = TimerWheel(tickMilliseconds: context.tickMilliseconds, now: context.clock.now())
        applied = 1
        let checkpoint: (startSeq: Int64, chunks: [ByteBuffer])?
        do throws(HourglassError) {
            checkpoint = try await context.database.latestCheckpoint(partition: partition)
        } catch {
            throw .failed(error)
        }
        if let checkpoint {
            for (index, chunk) in checkpoint.chunks.enumerated() {
                do throws(HourglassError) {
                    try FleetFrames.forEachRecord(
                        in: chunk, records: nil, partition: partition, seq: checkpoint.startSeq, decoder: &decoder
                    ) { (record) throws(HourglassError) in try apply(record) }
                } catch {
                    throw .failed(.corruption(
                        file: "hourglass_checkpoints (partition \(partition), start_seq \(checkpoint.startSeq), chunk \(index))",
                        offset: 0, reason: "\(error)"))
                }
                await Task.yield()
            }
            applied = checkpoint.startSeq
        }
        publish()
    }

    // MARK: Applying the log

    /// Applies every frame committed after `applied`, in order.
    private func catchUp() async throws(OwnerFailure) {
        while true {
            let rows: [FleetDatabase.FrameRow]
            do throws(HourglassError) {
                rows = try await context.database.frames(partition: partition, from: applied, limit: 256)
            } catch {
                throw .failed(error)
            }
            for row in rows {
                if row.seq != applied { throw .gap }
                do throws(HourglassError) {
                    try FleetFrames.forEachRecord(in: row.body, records: row.records, partition: partition, seq: row.seq, decoder: &decoder) {
                        (record) throws(HourglassError) in try apply(record)
                    }
                } catch {
                    throw .failed(error)
                }
                applied = row.seq + Int64(row.records)
                sinceCheckpoint += row.records
                // A long log is applied a frame at a time, letting the node's other work (the
                // lease renewals above all) run between frames.
                await Task.yield()
            }
            publish()
            if rows.count < 256 { return }
        }
    }

    /// Applies one record of the log (or of a checkpoint) to the wheel.
    private func apply(_ record: RecordView) throws(HourglassError) {
        switch record.type {
        case .schedule:
            do throws(TimerWheel.CapacityError) {
                _ = try wheel.schedule(id: record.id, deadline: record.deadline, payload: record.payload, attempt: record.attempt)
            } catch {
                throw .capacityExceeded("partition \(partition) holds more timers than a wheel can: \(error)")
            }
        case .cancel, .ack:
            wheel.cancel(id: record.id)
        case .fire:
            // Fired by an owner (an earlier one, or this one when the outcome of its write was
            // unknown): in flight, due for redelivery at once, since whoever it went to may be gone.
            guard let handle = wheel.lookup(id: record.id) else { return }
            wheel.detach(handle)
            wheel.setAttempt(record.attempt, of: handle)
            wheel.markInFlight(handle, redeliverAt: 0)
        case .ackOf:
            guard let handle = wheel.lookup(id: record.id), generation(of: handle) == record.generation else { return }
            wheel.remove(handle)
        case .retryOf:
            guard let handle = wheel.lookup(id: record.id), generation(of: handle) == record.generation else { return }
            wheel.rearm(handle, deadline: record.deadline, attempt: record.attempt)
        case .retry, .series, .next:
            throw .corruption(file: "hourglass_frames (partition \(partition))", offset: 0,
                              reason: "a \(record.type) record, which a fleet's log does not hold")
        }
    }

    private func generation(of handle: TimerHandle) -> UInt64 { wheel.withPayload(of: handle) { Generation.read($0) } }

    private func publish() {
        pendingTimers.store(wheel.count, ordering: .relaxed)
        appliedSequence.store(applied, ordering: .relaxed)
    }

    // MARK: Firing

    /// Fires what is due: one fenced frame of FIRE records (and ACKs of timers out of
    /// attempts), committed only if nothing was appended since `applied`; the deliveries are
    /// handed over after the commit. Returns true when it should run again at once (more due,
    /// or frames committed first that must be read).
    private func fireDue() async throws(OwnerFailure) -> Bool {
        let now = context.clock.now()
        let limit = 4096
        fired.removeAll(keepingCapacity: true)
        let redeliveries = wheel.takeRedeliveries(through: now, limit: limit, into: &fired)
        _ = wheel.advance(to: now, limit: limit - redeliveries, into: &fired)
        if fired.isEmpty { return false }
        records.reset()
        // What each fired timer becomes once the frame commits: its attempt, or nil to drop it.
        var attempts: [UInt32?] = []
        attempts.reserveCapacity(fired.count)
        for (index, handle) in fired.enumerated() {
            var attempt = wheel.attempt(of: handle)
            if index < redeliveries {
                attempt += 1
                if let maxAttempts = context.configuration.maxAttempts, Int(attempt) > maxAttempts {
                    wheel.withID(of: handle) { records.ack(id: $0) }
                    attempts.append(nil)
                    continue
                }
            }
            wheel.withID(of: handle) { records.fire(id: $0, attempt: attempt) }
            attempts.append(attempt)
        }
        let body = FleetFrames.encode(records, into: &frames)
        let outcome: FleetDatabase.FencedAppend
        do throws(HourglassError) {
            outcome = try await context.database.appendAsOwner(
                partition: partition, node: context.options.node, epoch: epoch, expected: applied, records: records.count, body: body)
        } catch {
            putBack(redeliveries: redeliveries, now: now)
            throw .failed(error)
        }
        switch outcome {
        case let .committed(seq):
            precondition(seq == applied, "a fenced append committed at \(seq), not at \(applied)")
            applied = seq + Int64(records.count)
            sinceCheckpoint += records.count
        case .behind:
            putBack(redeliveries: redeliveries, now: now)
            return true
        case .fenced:
            putBack(redeliveries: redeliveries, now: now)
            throw .fenced
        }
        let redeliverAt = min(now &+ context.redeliveryMilliseconds, TimerWheel.maxDeadline)
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(fired.count)
        for (handle, attempt) in zip(fired, attempts) {
            guard let attempt else {
                wheel.remove(handle)
                continue
            }
            wheel.setAttempt(attempt, of: handle)
            let (payload, generation) = wheel.withPayload(of: handle) { stored in
                (Array(stored[Generation.size...]), Generation.read(stored))
            }
            deliveries.append(Delivery(
                fleet: TimerID(bytes: wheel.id(of: handle)), deadline: Deadline(millisecondsSinceEpoch: wheel.deadline(of: handle)),
                payload: payload, attempt: Int(attempt), firedAt: Deadline(millisecondsSinceEpoch: now), fleetGeneration: generation))
            wheel.markInFlight(handle, redeliverAt: redeliverAt)
        }
        publish()
        if !deliveries.isEmpty {
            _ = firstDeliveryAt.compareExchange(expected: 0, desired: monotonicNanoseconds(), ordering: .relaxed)
            context.delivered.add(deliveries.count)
            context.queue.push(deliveries)
        }
        return fired.count == limit
    }

    /// Undoes the taking of `fired` (the frame did not commit): redeliveries back in flight, due
    /// at once; timers back on the wheel at their deadlines (past: due at once).
    private func putBack(redeliveries: Int, now: Int64) {
        for (index, handle) in fired.enumerated() {
            if index < redeliveries {
                wheel.markInFlight(handle, redeliverAt: now)
            } else {
                wheel.rearm(handle, deadline: wheel.deadline(of: handle))
            }
        }
        fired.removeAll(keepingCapacity: true)
    }

    // MARK: Checkpoints

    /// Encodes the wheel as it stands (the state of the log before `applied`) and stores it in
    /// the background; the owner goes on firing meanwhile. One at a time.
    private func startCheckpoint() {
        guard !checkpointRunning.load(ordering: .acquiring) else { return }  // still storing the last one
        let startSeq = applied
        var chunks: [(timers: Int, body: ByteBuffer)] = []
        var encoder = RecordEncoder(capacity: 1 << 20)
        var timers = 0
        let chunkBytes = 4 << 20
        wheel.forEachHandle { handle in
            wheel.withID(of: handle) { id in
                wheel.withPayload(of: handle) { payload in
                    encoder.schedule(id: id, deadline: wheel.deadline(of: handle), attempt: wheel.attempt(of: handle), payload: payload)
                }
                if wheel.isInFlight(handle) { encoder.fire(id: id, attempt: wheel.attempt(of: handle)) }
            }
            timers += 1
            if encoder.byteCount >= chunkBytes {
                chunks.append((timers, FleetFrames.encode(encoder, into: &frames)))
                encoder.reset()
                timers = 0
            }
        }
        if timers > 0 || chunks.isEmpty { chunks.append((timers, FleetFrames.encode(encoder, into: &frames))) }
        sinceCheckpoint = 0
        checkpointRunning.store(true, ordering: .releasing)
        let database = context.database
        let partition = partition
        let logger = logger
        let total = chunks.reduce(0) { $0 + $1.timers }
        checkpointTask = Task { [chunks] in
            let started = monotonicNanoseconds()
            do throws(HourglassError) {
                try await database.storeCheckpoint(partition: partition, startSeq: startSeq, chunks: chunks)
                logger.info("fleet: checkpoint stored", metadata: [
                    "partition": "\(partition)", "start_seq": "\(startSeq)", "timers": "\(total)", "chunks": "\(chunks.count)",
                    "ms": "\((monotonicNanoseconds() - started) / 1_000_000)"])
            } catch {
                logger.warning("fleet: checkpoint failed (the log is kept)", metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
            self.checkpointRunning.store(false, ordering: .releasing)
        }
    }
}

/// What every owner of a node shares: the database, the settings, the clock, the delivery queue.
struct FleetContext: Sendable {
    let database: FleetDatabase
    let configuration: Configuration
    let options: FleetOptions
    let clock: any HourglassClock
    let queue: DeliveryQueue
    let logger: Logger
    let tickMilliseconds: Int64
    let redeliveryMilliseconds: Int64
    let delivered: Counter

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func add(_ count: Int) { value.add(count, ordering: .relaxed) }
    }
}

/// A wake-up for one waiting task: `signal()` ends the current (or the next) `wait`.
final class Wakeup: Sendable {
    private struct State {
        var signalled = false
        var waiter: UnsafeContinuation<Void, Never>? = nil
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.signalled = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns after a signal, after `nanoseconds`, or when the task is cancelled.
    func wait(nanoseconds: UInt64) async {
        if nanoseconds == 0 || Task.isCancelled { return }
        if state.withLock({ state in defer { state.signalled = false }; return state.signalled }) { return }
        let timer = Task { [self] in
            try? await Task.sleep(nanoseconds: nanoseconds)
            signal()
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.signalled {
                        state.signalled = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
        timer.cancel()
    }
}
