import HourglassCore
import HourglassStorage

/// Closing: what `close` (or a dropped engine) does once the leader applies it.
extension Engine {
    /// Applies `close`: refuses what came after, finishes loading (deferred cancels need their
    /// answer), waits for the syncs, closes the journal and releases the directory. The door
    /// stays held: nobody leads a closed engine.
    func finish() {
        let leftovers = door.withLock { state -> [Request] in
            state.accepting = false
            defer { state.queue.removeAll() }
            return state.queue
        }
        for request in leftovers { Self.refuse(request) }
        var result: Result<Void, HourglassError> = .success(())
        if let loader, stoppedReason == nil {
            do throws(HourglassError) {
                try loader.loadAll(into: &wheel)
            } catch {
                result = .failure(error)
            }
            finishLoading()
        }
        for (_, reply) in deferredCancels { reply.resume(returning: .failure(.closed)) }
        deferredCancels.removeAll()
        checkpointJob?.writer.cancel()
        checkpointJob = nil
        for (waiter, _) in checkpointWaiters { waiter.resume(returning: .failure(.closed)) }
        checkpointWaiters.removeAll()
        for barrier in barriers { barrier.resume(returning: stats()) }
        barriers.removeAll()
        if let claimed = claimedSync {
            claimedSync = nil
            syncer?.perform(claimed.batch, claimed.replies)
        }
        syncer?.waitIdle()
        syncer?.stop()
        if let failure = stoppedBy ?? syncer?.failed, case .success = result { result = .failure(failure) }
        if let journal {
            if stoppedReason != nil || syncer?.failed != nil {
                journal.abandon()  // after a failure nothing more is written
            } else {
                do throws(HourglassError) {
                    try journal.close()
                } catch {
                    result = .failure(error)
                }
            }
        }
        journal = nil
        ticker.stop(fromTurn: true)
        deliveries.finish()
        closeReply?.resume(returning: result)
        closeReply = nil
    }

    /// Closes an engine nobody holds any more (`HourglassEngine.deinit`): as `close()`, waiting
    /// here until the directory is released.
    func closeAbandoned() {
        let done = Latch()
        enter(.close(Reply(callback: { _ in done.open() })))
        done.wait()
        ticker.stop()
    }

    static func refuse(_ request: Request) {
        switch request {
        case let .schedule(_, reply), let .scheduleBatch(_, reply), let .scheduleSeries(_, reply), let .checkpoint(reply), let .close(reply):
            reply.resume(returning: .failure(.closed))
        case let .cancel(_, reply), let .ack(_, reply), let .retry(_, _, reply), let .take(_, reply):
            reply.resume(returning: .failure(.closed))
        case let .ackBatch(_, reply):
            reply.resume(returning: .failure(.closed))
        case let .stats(reply):
            reply.resume(returning: EngineStats())
        }
    }
}
