import HourglassCore

/// What each request does to the wheel and the journal. Called by the leader only.
extension Engine {
    func schedule(_ item: TimerRequest) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        return apply(item)
    }

    func schedule(_ items: [TimerRequest]) -> Result<Void, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        // A software pipeline: start loading the index slots of ids a few items ahead, so the
        // cache misses of a large batch overlap.
        let lookahead = 8
        for i in 0 ..< items.count {
            if i + lookahead < items.count {
                items[i + lookahead].id.bytes.withUnsafeBytes { wheel.prefetchIndex(id: $0) }
            }
            if case let .failure(error) = apply(items[i]) { return .failure(error) }
        }
        return .success(())
    }

    private func apply(_ item: TimerRequest) -> Result<Void, HourglassError> {
        let deadline = item.deadline.millisecondsSinceEpoch
        let result = item.id.bytes.withUnsafeBytes { id in
            item.payload.withUnsafeBytes { payload in
                Result { () throws(TimerWheel.CapacityError) in
                    _ = try wheel.schedule(id: id, deadline: deadline, payload: payload, attempt: 1)
                    journal?.schedule(id: id, deadline: deadline, attempt: 1, payload: payload)
                    scheduledTotal += 1
                }
            }
        }
        if case .success = result { noteWork(at: deadline) }
        return result.mapError(HourglassError.init(capacity:))
    }

    /// nil: the answer waits until the checkpoint has loaded (the timer may be in the rest).
    func cancel(_ id: [UInt8]) -> Result<Bool, HourglassError>? {
        if let error = refuseIfStopped() { return .failure(error) }
        return id.withUnsafeBytes { id -> Result<Bool, HourglassError>? in
            let found = wheel.cancel(id: id)
            if found { cancelledTotal += 1 }
            guard let loader else {
                if found { journal?.cancel(id: id) }
                return .success(found)
            }
            // While the checkpoint loads, the cancel must win over a copy not loaded yet.
            loader.tombstones.insert(id)
            journal?.cancel(id: id)
            return found ? .success(true) : nil
        }
    }

    /// Removes a held timer for good (ack, last attempt, at-most-once delivery), logging it.
    func removeForGood(_ handle: TimerHandle) {
        wheel.withID(of: handle) { id in
            journal?.ack(id: id)
            loader?.tombstones.insert(id)
        }
        wheel.remove(handle)
    }

    /// The timer a delivery refers to, if it is still that delivery in flight: the same slot,
    /// generation and attempt, and the same id (a slot reused by another timer never matches).
    func inFlightTimer(_ ref: DeliveryRef) -> TimerHandle? {
        let handle = TimerHandle(rawValue: ref.handle)
        guard wheel.isHeld(handle), wheel.isInFlight(handle),
              wheel.generation(of: handle) == ref.generation,
              Int(wheel.attempt(of: handle)) == ref.attempt,
              wheel.withID(of: handle, { held in ref.id.withUnsafeBytes { held.elementsEqual($0) } })
        else { return nil }
        return handle
    }

    func ack(_ ref: DeliveryRef) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        complete(handle)
        counters.acknowledged += 1
        return .success(true)
    }

    func ack(_ refs: [DeliveryRef]) -> Result<Int, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        var done = 0
        for (i, ref) in refs.enumerated() {
            if i + 8 < refs.count { wheel.prefetch(TimerHandle(rawValue: refs[i + 8].handle)) }
            guard let handle = inFlightTimer(ref) else { continue }
            complete(handle)
            counters.acknowledged += 1
            done += 1
        }
        return .success(done)
    }

    /// At-most-once: a consumer takes the delivery; from now on it counts as delivered (logged
    /// as done). False when it is no longer in flight (cancelled or replaced meanwhile).
    func take(_ ref: DeliveryRef) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        complete(handle)
        return .success(true)
    }

    func retry(_ ref: DeliveryRef, delayMilliseconds: Int64) -> Result<Bool, HourglassError> {
        if let error = refuseIfStopped() { return .failure(error) }
        let (deadline, overflow) = clock.now().addingReportingOverflow(delayMilliseconds)
        guard !overflow, deadline <= TimerWheel.maxDeadline else {
            return .failure(.deadlineOutOfRange(milliseconds: overflow ? .max : deadline))
        }
        guard let handle = inFlightTimer(ref) else { return .success(false) }
        let attempt = Int(wheel.attempt(of: handle)) + 1
        if let maxAttempts = configuration.maxAttempts, attempt > maxAttempts {
            complete(handle)  // out of attempts: the timer (or this occurrence of a series) is done
            counters.exhausted += 1
            return .success(false)
        }
        let at = max(deadline, 0)
        wheel.rearm(handle, deadline: at, attempt: UInt32(attempt))
        ref.id.withUnsafeBytes { journal?.retry(id: $0, deadline: at, attempt: UInt32(attempt)) }
        counters.retried += 1
        noteWork(at: at)
        return .success(true)
    }

    /// A timer now has work at `milliseconds`: if that comes before the clock thread's plan,
    /// the plan is redone when the group ends.
    @inline(__always)
    func noteWork(at milliseconds: Int64) {
        if milliseconds < plannedUntil { planNeeded = true }
    }
}

extension HourglassError {
    /// The wheel is full, as a caller's error.
    init(capacity error: TimerWheel.CapacityError) {
        switch error {
        case .tooManyTimers: self = .capacityExceeded("the engine holds 2^32 - 1 timers")
        case .arenaFull: self = .capacityExceeded("ids and payloads held in memory would pass 32 GiB")
        }
    }
}
