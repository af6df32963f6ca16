import HourglassCore

/// Applying a group: each request to the wheel and the journal, in arrival order.
extension Engine {
    func apply(_ batch: [Request], into replies: inout Replies) {
        noteSyncFailure()
        for (position, request) in batch.enumerated() {
            if closeReply != nil {
                Self.refuse(request)  // nothing after `close` is applied
                continue
            }
            // Start loading what a request a few places ahead will touch, so the cache misses
            // of a large group overlap.
            if position + 8 < batch.count { prefetch(for: batch[position + 8]) }
            apply(request, into: &replies)
        }
    }

    func apply(_ request: Request, into replies: inout Replies) {
        switch request {
        case let .schedule(item, reply):
            replies.append(reply, schedule(item))
        case let .scheduleBatch(items, reply):
            replies.append(reply, schedule(items))
        case let .scheduleSeries(item, reply):
            replies.append(reply, scheduleSeries(item))
        case let .cancel(id, reply):
            if let result = cancel(id) {
                replies.append(reply, result)
            } else {
                deferredCancels.append((id, reply))
            }
        case let .ack(ref, reply):
            replies.append(reply, ack(ref))
        case let .ackBatch(refs, reply):
            replies.append(reply, ack(refs))
        case let .take(ref, reply):
            replies.append(reply, take(ref))
        case let .retry(ref, delay, reply):
            replies.append(reply, retry(ref, delayMilliseconds: delay))
        case let .stats(reply):
            barriers.append(reply)
        case let .checkpoint(reply):
            if let error = refuseIfStopped() {
                replies.append(reply, .failure(error))
            } else if let journal {
                checkpointWaiters.append((reply, journal.nextSequence))
                checkpointRequested = true
                planNeeded = true
            } else {
                replies.append(reply, .success(()))  // in memory: nothing to write
            }
        case let .close(reply):
            closeReply = reply
        }
    }

    @inline(__always)
    func prefetch(for request: Request) {
        switch request {
        case let .schedule(item, _): item.id.bytes.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .cancel(id, _): id.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
        case let .ack(ref, _), let .retry(ref, _, _), let .take(ref, _): wheel.prefetch(TimerHandle(rawValue: ref.handle))
        default: break
        }
    }
}
