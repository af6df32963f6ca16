import HourglassCore

/// Recurring timers: a series is one timer whose payload ends with its state (`SeriesTrailer`);
/// when an occurrence is done the same timer is re-armed at the next one, logged as one NEXT
/// record. Called by the leader only. See `Docs/RECURRING.md`.
extension Engine {
    func scheduleSeries(_ item: SeriesRequest) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        let rule = seriesRules.intern(item.rule)
        let fields = SeriesFields(occurrence: item.first, coalesced: 1, remaining: item.remaining)
        let result = item.id.bytes.withUnsafeBytes { id in
            item.payload.withUnsafeBytes { payload in
                Result { () throws(TimerWheel.CapacityError) in
                    _ = try wheel.scheduleSeries(id: id, deadline: item.first, attempt: 1, payload: payload,
                                                 trailer: SeriesTrailer(rule: rule, fields: fields))
                    seriesRules[rule].encoded.withUnsafeBytes { encoded in
                        journal?.series(id: id, deadline: item.first, attempt: 1, payload: payload, rule: encoded, state: fields)
                    }
                    scheduledTotal += 1
                }
            }
        }
        if case .success = result { noteWork(at: item.first) }
        return result.mapError(HourglassError.init(capacity:))
    }

    /// A held timer's occurrence is done (acknowledged, taken, or out of attempts): a one-shot
    /// timer is removed; a series moves on to its next occurrence, or ends after its last.
    func complete(_ handle: TimerHandle) {
        guard wheel.isSeries(handle) else { return removeForGood(handle) }
        var trailer = wheel.seriesTrailer(of: handle)
        guard trailer.remaining != 1, let next = seriesRules[trailer.rule].occurrence(after: trailer.occurrence) else {
            return removeForGood(handle)  // the last occurrence, or none left before year 10000
        }
        trailer.occurrence = next
        trailer.coalesced = 1
        if trailer.remaining > 1 { trailer.remaining -= 1 }
        arm(handle, at: next, trailer)
    }

    /// Re-arms a series at `deadline` with a new state: attempt 1, a new generation (so that an
    /// acknowledgement of an earlier occurrence's delivery matches nothing), one NEXT record.
    private func arm(_ handle: TimerHandle, at deadline: Int64, _ trailer: SeriesTrailer) {
        wheel.armSeries(handle, at: deadline, trailer)
        wheel.withID(of: handle) { journal?.next(id: $0, deadline: deadline, state: trailer.fields) }
        noteWork(at: deadline)
    }

    /// Applies the misfire policy to a series occurrence about to be delivered for the first
    /// time (detached, just fired): it may stand for several due occurrences, or be skipped.
    /// Returns whether it is to be delivered now.
    func prepareOccurrence(_ handle: TimerHandle, now: Int64) -> Bool {
        // A retried occurrence (attempt 2 or more) keeps its occurrence: delivered as it is.
        guard wheel.attempt(of: handle) == 1 else { return true }
        var trailer = wheel.seriesTrailer(of: handle)
        let first = trailer.occurrence
        // On time, or late by no more than the threshold: delivered as it is.
        guard first <= now, now - first > misfireThresholdMilliseconds else { return true }
        let rule = seriesRules[trailer.rule]
        let cap = trailer.remaining == 0 ? UInt32.max : trailer.remaining
        switch rule.misfire {
        case .fireAll:
            return true
        case .fireOnceNow:
            let (last, count) = rule.due(from: first, through: now, cap: cap)
            if count > 1 {
                fold(handle, &trailer, into: last, count: count)
                counters.occurrencesCoalesced += Int(count - 1)
            }
            return true
        case .skip:
            let (last, count) = rule.due(from: first, through: now, cap: cap)
            if now - last <= misfireThresholdMilliseconds {
                // The latest due occurrence is on time: it fires, the ones before are skipped.
                if count > 1 {
                    fold(handle, &trailer, into: last, count: count)
                    counters.occurrencesSkipped += Int(count - 1)
                }
                return true
            }
            // All due occurrences missed: wait for the next future one, which reports them.
            counters.occurrencesSkipped += Int(count)
            guard trailer.remaining == 0 || trailer.remaining > count, let next = rule.occurrence(after: last) else {
                removeForGood(handle)  // the skipped ones were the last
                return false
            }
            trailer.occurrence = next
            trailer.coalesced += count
            if trailer.remaining > 0 { trailer.remaining -= count }
            arm(handle, at: next, trailer)
            return false
        }
    }

    /// The fired occurrence stands for `count` due ones from it through `last`: it becomes
    /// `last`, reporting them in `coalesced` and counting them off `remaining`.
    private func fold(_ handle: TimerHandle, _ trailer: inout SeriesTrailer, into last: Int64, count: UInt32) {
        trailer.occurrence = last
        trailer.coalesced += count - 1
        if trailer.remaining > 0 { trailer.remaining -= count - 1 }
        setDetached(handle, deadline: last, trailer)
    }

    /// A fired series timer now stands for a later occurrence: logged as a NEXT record before
    /// the FIRE that follows, so that replay fires the same occurrence.
    private func setDetached(_ handle: TimerHandle, deadline: Int64, _ trailer: SeriesTrailer) {
        wheel.setSeriesTrailer(trailer, of: handle)
        wheel.setDeadline(deadline, ofDetached: handle)
        wheel.withID(of: handle) { journal?.next(id: $0, deadline: deadline, state: trailer.fields) }
    }
}
