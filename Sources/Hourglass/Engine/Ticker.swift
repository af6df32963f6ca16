import HourglassStorage
/// The engine's clock thread: it sleeps until the engine next has work of its own (a deadline,
/// a redelivery, an interval sync, a checkpoint slice) and then takes a turn as leader.
///
/// Callers never wait for it: they do their own work (see `Engine`). It exists for what no
/// caller is there to do: firing a timer at its millisecond while nobody calls, syncing the
/// log an interval after the last write, and background work. Its plan (`wakeAt`) is set by
/// whoever last led the engine, which knows what comes next; a leader that sees work earlier
/// than the plan moves it forward (one wake-up), never once per call.
final class Ticker: @unchecked Sendable {
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var wakeAt: UInt64 = .max
    private var stopping = false
    private var running = false

    /// Starts the thread; `turn` runs each time the plan comes due, until `stop()`.
    func start(_ turn: @escaping @Sendable () -> Void) {
        lock.withLock { running = true }
        startThread(name: "hourglass-clock") { [self] in
            while waitForTurn() { turn() }
            lock.withLock {
                running = false
                lock.broadcast()
            }
        }
    }

    /// Sleeps until the plan comes due; false once stopping. The plan is cleared as the turn
    /// begins: the turn (or the leader it defers to) sets the next one.
    private func waitForTurn() -> Bool {
        lock.withLock {
            while !stopping {
                let now = monotonicNanoseconds()
                if wakeAt <= now {
                    wakeAt = .max
                    return true
                }
                lock.wait(nanoseconds: wakeAt == .max ? nil : wakeAt - now)
            }
            return false
        }
    }

    /// The next turn comes `nanoseconds` from now (`.max`: only when woken).
    func plan(inNanoseconds nanoseconds: UInt64) {
        let target = nanoseconds == .max ? UInt64.max : monotonicNanoseconds() &+ nanoseconds
        lock.withLock {
            let earlier = target < wakeAt
            wakeAt = target
            if earlier { lock.signal() }
        }
    }

    /// A turn now (the clock moved, a checkpoint thread progressed, leadership was handed over).
    func wake() {
        lock.withLock {
            wakeAt = 0
            lock.signal()
        }
    }

    /// Ends the thread and waits until it has left its loop (unless called from it).
    func stop(fromTurn: Bool = false) {
        lock.withLock {
            stopping = true
            lock.broadcast()
            guard !fromTurn else { return }
            while running { lock.wait(nanoseconds: nil) }
        }
    }
}
