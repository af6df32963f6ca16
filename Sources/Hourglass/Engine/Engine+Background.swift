import HourglassCore
import HourglassStorage

/// Background work, in slices given by whoever leads when the clock thread asks for it (see
/// `housekeeping`): loading the rest of a checkpoint after a restart, and writing a checkpoint.
extension Engine {
    var checkpointDue: Bool {
        guard let journal, checkpointJob == nil, stoppedReason == nil, loader == nil else { return false }
        if checkpointRequested || journal.bytesWritten - logBytesAtLastCheckpoint >= configuration.checkpointLogBytes { return true }
        guard let due = checkpointIntervalDueTime() else { return false }
        return clock.now() >= due
    }

    /// When `checkpointInterval` asks for the next checkpoint, if it does: only once the log
    /// has grown since the last one. A wall clock stepped back restarts the interval.
    func checkpointIntervalDueTime() -> Int64? {
        guard let interval = checkpointIntervalMilliseconds, let journal,
              journal.bytesWritten - logBytesAtLastCheckpoint > 0 else { return nil }
        let now = clock.now()
        if now < lastCheckpointAt { lastCheckpointAt = now }
        let due = lastCheckpointAt.addingReportingOverflow(interval)
        return due.overflow ? .max : due.partialValue
    }

    func backgroundWork(budgetNanoseconds: UInt64) {
        guard stoppedReason == nil else { return }
        let deadline = monotonicNanoseconds() + budgetNanoseconds
        if let loader {
            do throws(HourglassError) {
                try loader.loadSlice(into: &wheel, until: deadline)
            } catch {
                stop(because: error)
                return
            }
            if loader.isDone { finishLoading() }
            return
        }
        if checkpointDue { beginCheckpoint() }
        if let job = checkpointJob, let outcome = job.advance(wheel: &wheel, rules: seriesRules, until: deadline) {
            endCheckpoint(job, outcome)
        }
    }

    func finishLoading() {
        guard let loader else { return }
        self.loader = nil
        counters.fullyLoadedMilliseconds = Double(monotonicNanoseconds() - openedNanoseconds) / 1e6
        for (id, reply) in deferredCancels {
            let existed = id.withUnsafeBytes { loader.tombstones.isMarked($0) }
            reply.resume(returning: .success(existed))
        }
        deferredCancels.removeAll()
        logger.info("hourglass finished loading the checkpoint", metadata: ["timers": "\(loader.timersLoaded)"])
    }

    func beginCheckpoint() {
        guard let journal else { return }
        checkpointRequested = false
        do throws(HourglassError) {
            checkpointJob = try journal.beginCheckpoint(handleLimit: wheel.handleLimit, clock: clock) { [weak self] in self?.wake() }
            logBytesAtLastCheckpoint = journal.bytesWritten
            lastCheckpointAt = clock.now()
        } catch {
            logger.error("hourglass could not start a checkpoint", metadata: ["error": "\(error)"])
            for (reply, _) in checkpointWaiters { reply.resume(returning: .failure(error)) }
            checkpointWaiters.removeAll()
        }
    }

    func endCheckpoint(_ job: CheckpointJob, _ outcome: CheckpointWriter.Outcome) {
        checkpointJob = nil
        guard let journal else { return }
        var result: Result<Void, HourglassError> = .success(())
        switch outcome {
        case let .done(trailer, bytes):
            do throws(HourglassError) {
                try journal.completeCheckpoint(job)
                counters.checkpoints += 1
                counters.checkpointSequence = trailer.startSequence
                counters.lastCheckpointMilliseconds = Double(monotonicNanoseconds() - job.startedNanoseconds) / 1e6
                metrics.checkpointDuration.recordNanoseconds(Int64(monotonicNanoseconds() - job.startedNanoseconds))
                logger.info("hourglass wrote a checkpoint", metadata: [
                    "sequence": "\(trailer.startSequence)", "timers": "\(trailer.timers)", "bytes": "\(bytes)",
                    "milliseconds": "\(counters.lastCheckpointMilliseconds ?? 0)",
                ])
            } catch {
                result = .failure(error)
            }
        case let .failed(error):
            result = .failure(HourglassError(error))
            logger.error("hourglass checkpoint failed", metadata: ["error": "\(error)"])
        }
        // Answer the callers whose changes this checkpoint covers; start another for the rest.
        var remaining: [(Reply<Void>, UInt64)] = []
        for (reply, sequence) in checkpointWaiters {
            if case .failure = result {
                reply.resume(returning: result)
            } else if sequence <= job.startSequence {
                reply.resume(returning: result)
            } else {
                remaining.append((reply, sequence))
            }
        }
        checkpointWaiters = remaining
        if !remaining.isEmpty { checkpointRequested = true }
    }
}
