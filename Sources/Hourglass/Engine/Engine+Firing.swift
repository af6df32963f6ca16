import HourglassCore
#if canImport(Glibc)
import Glibc
#endif

/// Firing: whoever leads fires what is due at the end of its group, so timers fire on the
/// callers' threads while callers are active and on the clock thread otherwise.
extension Engine {
    func roomToFire() -> Int { configuration.maxInFlight - wheel.inFlightCount }

    /// Fires what is due at the clock's time: redeliveries first (they are older), then due
    /// timers in deadline order while the in-flight window has room. While a checkpoint is still
    /// loading, only timers due before the first one not yet loaded fire.
    func fireDue() {
        guard stoppedReason == nil, configuration.deliversTimers else { return }
        let now = clock.now()
        if let next = nextWorkTime(), next > now { return }
        fired.removeAll(keepingCapacity: true)
        _ = wheel.takeRedeliveries(through: now, limit: .max, into: &fired)
        for handle in fired { deliver(handle, now: now, redelivery: true) }
        let horizon = loader.map { min(now, $0.loadedDeadline - 1) } ?? now
        while true {
            let room = roomToFire()
            guard room > 0 else { break }
            let limit = min(room, 4096)
            fired.removeAll(keepingCapacity: true)
            let count = wheel.advance(to: horizon, limit: limit, into: &fired)
            for handle in fired { deliver(handle, now: now, redelivery: false) }
            if count < limit { break }
        }
    }

    /// The earliest time at which firing has work: the next deadline (when the in-flight window
    /// has room) or the next redelivery.
    func nextWorkTime() -> Int64? {
        guard configuration.deliversTimers else { return nil }
        var next = wheel.nextRedelivery()
        if roomToFire() > 0, let deadline = wheel.nextDeadline() {
            next = min(next ?? deadline, deadline)
        }
        return next
    }

    private func deliver(_ handle: TimerHandle, now: Int64, redelivery: Bool) {
        var attempt = wheel.attempt(of: handle)
        if redelivery {
            attempt += 1
            if let maxAttempts = configuration.maxAttempts, Int(attempt) > maxAttempts {
                complete(handle)
                counters.exhausted += 1
                return
            }
            let deadline = wheel.deadline(of: handle)
            if deadline > now {
                // Nothing is delivered before its deadline. An in-flight timer whose deadline is
                // still ahead (the wall clock went back across a restart, or a salvage dropped
                // the reschedule that came before its FIRE) waits for it: a retry at its deadline.
                wheel.rearm(handle, deadline: deadline, attempt: attempt)
                wheel.withID(of: handle) { journal?.retry(id: $0, deadline: deadline, attempt: attempt) }
                noteWork(at: deadline)
                return
            }
            wheel.setAttempt(attempt, of: handle)
            counters.redelivered += 1
        } else if wheel.isSeries(handle), !prepareOccurrence(handle, now: now) {
            return  // skipped by the misfire policy: re-armed at a later occurrence, or ended
        }
        let id = wheel.id(of: handle)
        var occurrence: Deadline? = nil
        var coalesced = 1
        if wheel.isSeries(handle) {
            let trailer = wheel.seriesTrailer(of: handle)
            occurrence = Deadline(millisecondsSinceEpoch: trailer.occurrence)
            coalesced = Int(trailer.coalesced)
        }
        outgoing.append(Delivery(
            id: TimerID(bytes: id),
            deadline: Deadline(millisecondsSinceEpoch: wheel.deadline(of: handle)),
            payload: wheel.withUserPayload(of: handle) { Array($0) },
            attempt: Int(attempt),
            firedAt: Deadline(millisecondsSinceEpoch: now),
            occurrence: occurrence,
            coalesced: coalesced,
            handle: handle.rawValue,
            generation: wheel.generation(of: handle),
            engine: serial))
        counters.delivered += 1
        metrics.lateness.recordMilliseconds(max(0, now - wheel.deadline(of: handle)))
        switch configuration.deliveryMode {
        case .atLeastOnce:
            // Saturating: a redelivery timeout past the end of time means "not before a restart".
            let (later, overflow) = now.addingReportingOverflow(redeliveryMilliseconds)
            let redeliverAt = overflow ? TimerWheel.maxDeadline : min(later, TimerWheel.maxDeadline)
            wheel.markInFlight(handle, redeliverAt: redeliverAt)
            id.withUnsafeBytes { journal?.fire(id: $0, attempt: attempt) }
            noteWork(at: redeliverAt)
        case .atMostOnce:
            // In flight until a consumer takes it (`take`), which logs it as done. Until then
            // the log still holds it as pending: a close or a crash before the take leaves it
            // to be delivered after the restart, never lost.
            wheel.markInFlight(handle, redeliverAt: TimerWheel.maxDeadline)
        }
    }

    // MARK: Planning the clock thread

    /// Tells the clock thread when it next has work, from what the engine holds now.
    func planClock() {
        planNeeded = false
        let wait = waitNanoseconds()
        ticker.plan(inNanoseconds: wait)
        if clock.isManual {
            plannedUntil = wait == 0 ? .min : (nextWorkTime() ?? .max)
        } else if wait == .max {
            plannedUntil = .max
        } else {
            let (until, overflow) = clock.now().addingReportingOverflow(Int64(wait / 1_000_000))
            plannedUntil = overflow ? .max : until
        }
    }

    /// How long the clock thread may sleep: 0 when there is work now, `.max` for no limit.
    private func waitNanoseconds() -> UInt64 {
        if stoppedReason == nil && (loader != nil || checkpointJob?.isRunnable == true || checkpointDue) { return 0 }
        var wait = UInt64.max
        if unsynced, let period = syncIntervalNanoseconds {
            let due = lastSyncNanoseconds &+ period
            let now = monotonicNanoseconds()
            if due <= now { return 0 }
            wait = due - now
        }
        if checkpointJob != nil { wait = min(wait, 50_000_000) }  // poll the checkpoint thread too
        if stoppedReason == nil, !clock.isManual, let due = checkpointIntervalDueTime() {
            wait = min(wait, nanosecondsUntil(due))
        }
        guard stoppedReason == nil, let next = nextWorkTime() else { return wait }
        if clock.isManual {
            return next <= clock.now() ? 0 : wait
        }
        let untilNext = nanosecondsUntil(next)
        if untilNext == 0 { return 0 }
        // Look at the wall clock at least every 100 ms, so that a step forward fires what became
        // due without waiting for the old deadline.
        return min(wait, untilNext, 100_000_000)
    }

    func nanosecondsUntil(_ milliseconds: Int64) -> UInt64 {
        if clock is SystemClock {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
            let target = milliseconds.multipliedReportingOverflow(by: 1_000_000)
            if target.overflow { return .max }
            return target.partialValue <= now ? 0 : UInt64(target.partialValue - now)
        }
        let now = clock.now()
        return milliseconds <= now ? 0 : UInt64(min(milliseconds - now, Int64.max / 1_000_000)) * 1_000_000
    }
}
