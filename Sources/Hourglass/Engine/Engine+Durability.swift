import HourglassCore
import HourglassStorage

/// Durability: the group's frame written and answered, or synced first, as the policy asks.
extension Engine {
    /// Writes the group's records as one frame, then answers or syncs as the policy asks: under
    /// `always` the group waits for a sync that covers it (claimed here, in log order); otherwise
    /// it is answered at once and the log is synced every interval by the sync thread (or, with
    /// `none`, only at close). A failure stops the engine: every reply of the group gets it.
    func commit(_ replies: inout Replies) -> HourglassError? {
        guard let journal, let syncer, stoppedReason == nil else { return refuseIfStopped() }
        let grownBefore = journal.bytesWritten - logBytesAtLastCheckpoint
        do throws(HourglassError) {
            if try journal.commit() {
                if !unsynced { planNeeded = true }  // the clock thread syncs an interval from now
                unsynced = true
                let grown = journal.bytesWritten - logBytesAtLastCheckpoint
                if checkpointJob == nil && (grown >= configuration.checkpointLogBytes || (grownBefore <= 0 && checkpointIntervalMilliseconds != nil)) {
                    planNeeded = true  // a checkpoint is due, or the interval now runs: the clock thread knows when
                }
            }
        } catch {
            stop(because: error)
            replies.failAll(with: error)
            return error
        }
        switch configuration.durability {
        case .always:
            guard unsynced || !replies.isEmpty else { break }
            let batch = unsynced ? journal.takeSyncBatch() : LogWriter.SyncBatch()
            unsynced = false
            if var claimed = claimedSync {
                claimed.batch.append(batch)
                claimed.replies.append(contentsOf: replies)
                claimedSync = claimed
            } else if syncer.claim(batch, replies) {
                claimedSync = (batch, replies)
            }
            replies = Replies()
        case .interval:
            if unsynced && monotonicNanoseconds() - lastSyncNanoseconds >= syncIntervalNanoseconds ?? 0 {
                syncer.handToThread(journal.takeSyncBatch(), Replies())
                unsynced = false
                lastSyncNanoseconds = monotonicNanoseconds()
            }
        case .none, .replicated:  // .replicated: refused before an engine opens
            break
        }
        return nil
    }

    func stop(because error: HourglassError) {
        stoppedReason = error.description
        stoppedBy = error
        logger.error("hourglass stopped accepting changes", metadata: ["error": "\(error)"])
        checkpointJob?.writer.cancel()
        checkpointJob = nil
        for (reply, _) in checkpointWaiters { reply.resume(returning: .failure(error)) }
        checkpointWaiters.removeAll()
    }

    func refuseIfStopped() -> HourglassError? {
        stoppedReason.map { HourglassError.stopped(reason: $0) }
    }
}
