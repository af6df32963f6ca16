import HourglassStorage

/// What a thread arriving at the door becomes.
enum DoorRole { case refused, queued, leader }

/// What the door guards: who leads, and what waits for the leader.
struct DoorState {
    /// Someone holds the engine: a caller, or the clock thread.
    var leading = false
    /// False once the engine has closed: every request is refused.
    var accepting = true
    /// Requests left by callers that found the engine held, in arrival order.
    var queue: [Request] = []
    /// The clock thread found the engine held: its leader does the housekeeping before leaving.
    var housekeepingRequested = false
    /// A caller that led its own group found others queued: it handed the engine, still held,
    /// to the clock thread, which leads them.
    var handedToClock = false
}

/// The door's lock and state: a pthread mutex (held for nanoseconds, never across work), which
/// ThreadSanitizer understands, so that a run under `-sanitize=thread` checks every access to
/// leader-only state against the hand-overs of the door.
final class Door: @unchecked Sendable {
    private let lock = ConditionLock()
    private var state = DoorState()

    @inline(__always)
    func withLock<R>(_ body: (inout DoorState) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }
}

/// A one-shot gate a thread can wait on.
final class Latch: @unchecked Sendable {
    private let lock = ConditionLock()
    private var isOpen = false

    func open() {
        lock.withLock {
            isOpen = true
            lock.broadcast()
        }
    }

    func wait() {
        lock.withLock {
            while !isOpen { lock.wait(nanoseconds: nil) }
        }
    }
}
