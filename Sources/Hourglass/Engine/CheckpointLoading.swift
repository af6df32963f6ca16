import HourglassCore
import HourglassStorage

/// Loads a checkpoint into the wheel: first its head (in flight and overdue timers) before the
/// log is replayed, then the rest, after the log, skipping every timer that the log or a caller
/// has touched since (see `Docs/CHECKPOINTS.md`, "ready before fully loaded").
final class CheckpointLoader {
    let reader: CheckpointReader
    /// Every record loaded so far has a deadline at or before this; every record left has one at
    /// or after it (the checkpoint is in deadline order). Timers fire only before it while
    /// loading continues.
    private(set) var loadedDeadline: Int64 = .min
    private(set) var timersLoaded = 0
    /// Bytes of frames read, as stored and decompressed (for the compression ratio).
    private(set) var storedBytes = 0
    private(set) var rawBytes = 0
    /// Removals since the checkpoint's start sequence, while records are left: those timers
    /// must not come back from the checkpoint. A member is marked when it stopped one.
    var tombstones = IDSet()
    /// Whether the head is loaded and the loader has moved to skipping what is already held.
    private(set) var pastHead = false

    /// Where the rules of the recurring timers loaded go.
    let rules: SeriesRules

    init(reader: CheckpointReader, rules: SeriesRules) {
        self.reader = reader
        self.rules = rules
    }

    var isDone: Bool { reader.isAtEnd }

    /// Loads the head: frames until every timer due at `now` (and every timer in flight) is in.
    func loadHead(into wheel: inout TimerWheel, now: Int64) throws(HourglassError) {
        while !reader.isAtEnd && loadedDeadline <= now {
            try loadFrame(into: &wheel)
        }
        pastHead = true
    }

    /// Loads frames until `deadlineNanoseconds` (monotonic) or the end.
    func loadSlice(into wheel: inout TimerWheel, until deadlineNanoseconds: UInt64) throws(HourglassError) {
        pastHead = true
        repeat {
            try loadFrame(into: &wheel)
        } while !reader.isAtEnd && monotonicNanoseconds() < deadlineNanoseconds
    }

    /// Loads everything left.
    func loadAll(into wheel: inout TimerWheel) throws(HourglassError) {
        pastHead = true
        while !reader.isAtEnd { try loadFrame(into: &wheel) }
    }

    /// The records of the frame being loaded (views into the decoder's buffer).
    private var views: [RecordView] = []

    private func loadFrame(into wheel: inout TimerWheel) throws(HourglassError) {
        var failure: HourglassError? = nil
        do throws(StorageError) {
            _ = try reader.nextFrame { frame in
                storedBytes += frame.header.frameLength
                rawBytes += frame.header.rawLength
                views.removeAll(keepingCapacity: true)
                _ = try RecordDecoder.forEach(in: frame.body) { views.append($0) }
                failure = apply(views, into: &wheel)
            }
        } catch {
            throw HourglassError(error)
        }
        if let failure { throw failure }
    }

    /// Applies a frame's records, starting to load each id's index slot eight records ahead so
    /// the cache misses overlap.
    private func apply(_ records: [RecordView], into wheel: inout TimerWheel) -> HourglassError? {
        var lastApplied: TimerHandle? = nil
        for i in records.indices {
            if i + 8 < records.count { wheel.prefetchIndex(id: records[i + 8].id) }
            let record = records[i]
            switch record.type {
            case .schedule, .series:
                lastApplied = nil
                loadedDeadline = max(loadedDeadline, record.deadline)
                if pastHead {
                    if wheel.lookup(id: record.id) != nil { continue }
                    if tombstones.contains(record.id) {
                        tombstones.mark(record.id)
                        continue
                    }
                }
                if record.type == .series {
                    do throws(HourglassError) {
                        lastApplied = try scheduleSeries(record, into: &wheel, rules: rules)
                        timersLoaded += 1
                    } catch {
                        return error
                    }
                    continue
                }
                do throws(TimerWheel.CapacityError) {
                    lastApplied = try wheel.schedule(id: record.id, deadline: record.deadline, payload: record.payload, attempt: record.attempt).handle
                    timersLoaded += 1
                } catch {
                    return .capacityExceeded("loading more timers than the engine can hold: \(error)")
                }
            case .fire:
                // The timer just loaded is in flight: due for redelivery at once.
                guard let handle = lastApplied else { continue }
                wheel.detach(handle)
                wheel.setAttempt(record.attempt, of: handle)
                wheel.markInFlight(handle, redeliverAt: 0)
                lastApplied = nil
            case .cancel, .ack, .retry, .next, .ackOf, .retryOf:
                continue  // a checkpoint holds none
            }
        }
        return nil
    }
}

/// The engine's checkpoint in progress, advanced a slice at a time on the engine thread.
final class CheckpointJob {
    enum Phase {
        /// Listing handles and deadlines: the next handle to look at.
        case scanning(cursor: UInt32, limit: UInt32)
        /// Waiting for the checkpoint thread to sort the list.
        case sorting
        /// Encoding timers in sorted order: the next position.
        case encoding(order: [UInt32], cursor: Int)
        /// Waiting for the trailer, the fsync and the rename.
        case finishing
    }

    let writer: CheckpointWriter
    let startSequence: UInt64
    let startSegment: UInt64
    let startedNanoseconds = monotonicNanoseconds()
    var phase: Phase
    var keys: [UInt64] = []
    var handles: [UInt32] = []
    var encoder = RecordEncoder(capacity: 1 << 20)
    var timers = 0

    init(writer: CheckpointWriter, startSequence: UInt64, startSegment: UInt64, handleLimit: UInt32) {
        self.writer = writer
        self.startSequence = startSequence
        self.startSegment = startSegment
        phase = .scanning(cursor: 0, limit: handleLimit)
    }

    /// Whether the job can use the engine thread now (not waiting for the checkpoint thread).
    var isRunnable: Bool {
        switch phase {
        case .scanning: return true
        case .encoding: return writer.queuedBytes < 16 << 20
        case .sorting: return false
        case .finishing: return false
        }
    }

    /// Gives the encoded records to the checkpoint thread and goes on in an empty buffer.
    private func handOver() {
        let body = writer.emptyBody()
        swap(&body.bytes, &encoder.buffer)
        body.records = encoder.count
        encoder.reset()
        writer.append(body)
    }

    /// Does up to `deadlineNanoseconds` of work. Returns the outcome when the checkpoint ended.
    func advance(wheel: inout TimerWheel, rules: SeriesRules, until deadlineNanoseconds: UInt64) -> CheckpointWriter.Outcome? {
        // The checkpoint thread failed (creating or writing the file): the checkpoint is over.
        if case .failed? = writer.result { return writer.result }
        switch phase {
        case let .scanning(cursor, limit):
            var h = cursor
            keys.reserveCapacity(Int(limit))
            handles.reserveCapacity(Int(limit))
            // Slices of 4096 handles until the time is up: the slab is read in order, fast.
            repeat {
                let end = min(limit, h &+ 4096)
                wheel.forEachHandle(in: h ..< end) { handle in
                    // In-flight timers first (key 0), then pending ones by deadline.
                    keys.append(wheel.isInFlight(handle) ? 0 : UInt64(wheel.deadline(of: handle)) + 1)
                    handles.append(handle.rawValue)
                }
                h = end
            } while h < limit && monotonicNanoseconds() < deadlineNanoseconds
            if h >= limit {
                writer.sort(keys: keys, handles: handles)
                keys = []
                handles = []
                phase = .sorting
            } else {
                phase = .scanning(cursor: h, limit: limit)
            }
        case .sorting:
            if let order = writer.takeSorted() { phase = .encoding(order: order, cursor: 0) }
        case .encoding(let order, var cursor):
            while cursor < order.count && writer.queuedBytes < 16 << 20 {
                let handle = TimerHandle(rawValue: order[cursor])
                cursor += 1
                // Deadline order is random memory order: load entries 32 ahead, their bytes 16 ahead.
                if cursor + 32 < order.count { wheel.prefetch(TimerHandle(rawValue: order[cursor + 32])) }
                if cursor + 16 < order.count { wheel.prefetchBytes(TimerHandle(rawValue: order[cursor + 16])) }
                guard wheel.isHeld(handle) else { continue }
                wheel.withID(of: handle) { id in
                    if wheel.isSeries(handle) {
                        let trailer = wheel.seriesTrailer(of: handle)
                        wheel.withUserPayload(of: handle) { payload in
                            rules[trailer.rule].encoded.withUnsafeBytes { rule in
                                encoder.series(id: id, deadline: wheel.deadline(of: handle), attempt: wheel.attempt(of: handle),
                                               payload: payload, rule: rule, state: trailer.fields)
                            }
                        }
                    } else {
                        wheel.withPayload(of: handle) { payload in
                            encoder.schedule(id: id, deadline: wheel.deadline(of: handle), attempt: wheel.attempt(of: handle), payload: payload)
                        }
                    }
                    if wheel.isInFlight(handle) { encoder.fire(id: id, attempt: wheel.attempt(of: handle)) }
                }
                timers += 1
                if encoder.byteCount >= 1 << 20 { handOver() }
                if cursor & 63 == 0 && monotonicNanoseconds() >= deadlineNanoseconds { break }
            }
            if cursor >= order.count {
                if !encoder.isEmpty { handOver() }
                writer.finish(timers: timers)
                phase = .finishing
            } else {
                phase = .encoding(order: order, cursor: cursor)
            }
        case .finishing:
            return writer.result
        }
        return nil
    }
}
