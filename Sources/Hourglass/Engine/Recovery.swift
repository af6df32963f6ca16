import HourglassCore
import HourglassStorage
import Logging

/// Opens a directory: takes its lock, loads the newest sound checkpoint's head, replays the log
/// from the checkpoint's start sequence, and returns the journal that continues the log and
/// the loader for the rest of the checkpoint (see `Docs/CHECKPOINTS.md` and `Docs/RECOVERY.md`).
func recoverDirectory(
    path: String, configuration: Configuration, clock: any HourglassClock,
    into wheel: inout TimerWheel, rules: SeriesRules, report: inout RecoveryReport, replayNanoseconds: inout UInt64,
    progress: ((DirectoryProgress) -> Void)? = nil
) throws(HourglassError) -> (WALJournal, CheckpointLoader?) {
    let started = monotonicNanoseconds()
    let directory: any StorageDirectory
    do throws(StorageError) {
        directory = try configuration.fileSystem.openDirectory(path)
        try directory.lock()
    } catch {
        throw HourglassError(error)
    }
    do throws(HourglassError) {
        let (journal, loader) = try recoverDirectory(directory, configuration: configuration, clock: clock, into: &wheel, rules: rules, report: &report,
                                              replayNanoseconds: &replayNanoseconds, progress: progress)
        configuration.logger.info("hourglass opened", metadata: [
            "directory": "\(path)", "timers": "\(wheel.count)", "in_flight": "\(wheel.inFlightCount)",
            "loading": "\(loader != nil)", "recovery": "\(report)",
            "milliseconds": "\((monotonicNanoseconds() - started) / 1_000_000)",
        ])
        if !report.dropped.isEmpty || !report.damagedCheckpoints.isEmpty {
            configuration.logger.warning("hourglass recovered past damaged data", metadata: ["report": "\(report)"])
        }
        return (journal, loader)
    } catch {
        directory.unlock()
        throw error
    }
}

private func recoverDirectory(
    _ directory: any StorageDirectory, configuration: Configuration, clock: any HourglassClock,
    into wheel: inout TimerWheel, rules: SeriesRules, report: inout RecoveryReport, replayNanoseconds: inout UInt64,
    progress: ((DirectoryProgress) -> Void)?
) throws(HourglassError) -> (WALJournal, CheckpointLoader?) {
    var throttle = ProgressThrottle(progress)
    // The checkpoint: the newest one that reads back whole.
    var loader: CheckpointLoader? = nil
    var damaged: HourglassError? = nil
    do throws(StorageError) {
        let names = try directory.list()
        for name in names where name.hasPrefix(CheckpointName.prefix) && name.hasSuffix(".tmp") {
            try directory.remove(name)  // a checkpoint whose writing was interrupted
        }
        for sequence in CheckpointName.all(in: names) {
            do throws(StorageError) {
                let reader = try CheckpointReader(directory: directory, name: CheckpointName.name(sequence))
                loader = CheckpointLoader(reader: reader, rules: rules)
                report.checkpointSequence = sequence
                break
            } catch {
                if damaged == nil { damaged = HourglassError(error) }
                report.damagedCheckpoints.append("\(error)")
            }
        }
    } catch {
        throw HourglassError(error)
    }
    let startSequence = report.checkpointSequence ?? 1

    // Its head: the timers in flight and those due by now. Room for all its timers first, so
    // that neither the slab nor the id index grows (and rehashes) while it loads.
    if let loader {
        wheel.reserveCapacity(Int(min(loader.reader.trailer.timers, UInt64(Int32.max))))
        try loader.loadHead(into: &wheel, now: clock.now())
        // The head, of the whole checkpoint: the rest loads after `open` returns.
        throttle.note(.checkpoint, loader.reader.file.path, loader.reader.bytesRead, Int(loader.reader.trailer.framesBytes))
    }

    // The log from the checkpoint's start sequence.
    var failure: HourglassError? = nil
    let tail: LogTail
    do throws(StorageError) {
        var recovery = LogRecovery(directory: directory, startSequence: startSequence, salvage: configuration.salvage)
        if progress != nil {
            recovery.progress = { done, total in throttle.note(.log, directory.path, done, total) }
        }
        let replayStarted = monotonicNanoseconds()
        defer { replayNanoseconds = monotonicNanoseconds() - replayStarted }
        tail = try recovery.run(report: &report) { record, _ in
            guard failure == nil else { return }
            do throws(HourglassError) {
                try _replay(record, into: &wheel, rules: rules, loader: loader)
            } catch {
                failure = error
            }
        }
    } catch {
        // A log that cannot serve the fallback checkpoint: the damaged newer one is the cause.
        if let damaged, case .corruption = HourglassError(error) { throw damaged }
        throw HourglassError(error)
    }
    if let failure { throw failure }
    if let damaged, report.checkpointSequence == nil, tail.segments.first?.firstSequence ?? 1 > 1 {
        // No older checkpoint, and the log no longer starts at the beginning.
        throw damaged
    }
    if let loader { report.checkpointTimers = loader.timersLoaded }
    do throws(StorageError) {
        let writer = try LogWriter(
            directory: directory, segmentLength: configuration.segmentBytes, tail: tail,
            clock: { [clock] in clock.now() })
        return (WALJournal(writer: writer, directory: directory), loader.flatMap { $0.isDone ? nil : $0 })
    } catch {
        throw HourglassError(error)
    }
}

/// Applies one log record to the wheel. Every record is idempotent: replaying a record whose
/// effect is already there changes nothing. While the rest of a checkpoint waits to load,
/// removals leave tombstones, and a record about a timer not loaded yet loads the rest first.
func _replay(_ record: RecordView, into wheel: inout TimerWheel, rules: SeriesRules, loader: CheckpointLoader?) throws(HourglassError) {
    let pending = loader.map { !$0.isDone } ?? false
    switch record.type {
    case .schedule:
        do throws(TimerWheel.CapacityError) {
            _ = try wheel.schedule(id: record.id, deadline: record.deadline, payload: record.payload, attempt: record.attempt)
        } catch {
            throw .capacityExceeded("recovering more timers than the engine can hold: \(error)")
        }
    case .series:
        _ = try scheduleSeries(record, into: &wheel, rules: rules)
    case .next:
        if wheel.lookup(id: record.id) == nil, pending { try loader!.loadAll(into: &wheel) }
        // A NEXT for a timer no longer held (cancelled after it) or no longer a series (replaced
        // by a one-shot schedule after it) changes nothing.
        guard let handle = wheel.lookup(id: record.id), wheel.isSeries(handle) else { return }
        wheel.armSeries(handle, at: record.deadline, SeriesTrailer(rule: wheel.seriesTrailer(of: handle).rule, fields: record.series))
    case .cancel, .ack:
        wheel.cancel(id: record.id)
        if pending { loader!.tombstones.insert(record.id) }
    case .ackOf, .retryOf:
        return  // never decoded from a local log (RecordDecoder refuses them there)
    case .fire, .retry:
        if wheel.lookup(id: record.id) == nil, pending {
            // Only possible when the wall clock went back across the restart.
            try loader!.loadAll(into: &wheel)
        }
        guard let handle = wheel.lookup(id: record.id) else { return }
        if record.type == .fire {
            wheel.detach(handle)
            wheel.setAttempt(record.attempt, of: handle)
            wheel.markInFlight(handle, redeliverAt: 0)
        } else {
            wheel.rearm(handle, deadline: record.deadline, attempt: record.attempt)
        }
    }
}

/// Schedules the recurring timer of a SERIES record (from the log or a checkpoint), interning
/// its rule.
func scheduleSeries(_ record: RecordView, into wheel: inout TimerWheel, rules: SeriesRules) throws(HourglassError) -> TimerHandle {
    let rule = try rules.intern(encoded: record.rule)
    do throws(TimerWheel.CapacityError) {
        return try wheel.scheduleSeries(id: record.id, deadline: record.deadline, attempt: record.attempt, payload: record.payload,
                                        trailer: SeriesTrailer(rule: rule, fields: record.series))
    } catch {
        throw .capacityExceeded("recovering more timers than the engine can hold: \(error)")
    }
}
