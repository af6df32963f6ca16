import CHourglass
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The library's one lock: a pthread mutex with a condition variable whose timed waits run on
/// the monotonic clock, so that a wall-clock step neither shortens nor stretches a sleep.
///
/// A pthread mutex rather than `Synchronization.Mutex`: the state it guards is often not
/// `Sendable` (open files shared with a helper thread), the engine's threads wait on its
/// condition, and ThreadSanitizer understands it, so a run under `-sanitize=thread` checks every
/// hand-over it makes.
package final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        precondition(pthread_mutex_init(mutex, nil) == 0)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if canImport(Glibc)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        precondition(pthread_cond_init(condition, &attributes) == 0)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    @inline(__always)
    package func lock() { pthread_mutex_lock(mutex) }

    @inline(__always)
    package func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    package func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits (the lock held) until signalled or until `nanoseconds` pass (nil: no limit).
    package func wait(nanoseconds: UInt64?) {
        guard let nanoseconds else {
            pthread_cond_wait(condition, mutex)
            return
        }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let deadline = (UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)) &+ nanoseconds
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &ts)
    }

    package func signal() { pthread_cond_signal(condition) }
    package func broadcast() { pthread_cond_broadcast(condition) }
}

/// A counting semaphore: a count under a `ConditionLock`.
package final class Semaphore: @unchecked Sendable {
    private let lock = ConditionLock()
    private var count = 0

    package init() {}

    package func signal() {
        lock.withLock {
            count += 1
            lock.signal()
        }
    }

    package func wait() {
        lock.withLock {
            while count == 0 { lock.wait(nanoseconds: nil) }
            count -= 1
        }
    }
}

/// Starts a detached thread named `name` (it shows in `top -H` and debuggers) running `body`:
/// the library's one way to start a thread. `niceIncrement` lowers the thread's priority, so
/// that background work yields the CPU to the engine's callers.
package func startThread(name: String, niceIncrement: Int32 = 0, _ body: @escaping @Sendable () -> Void) {
    final class Start: @unchecked Sendable {
        let name: String
        let niceIncrement: Int32
        let body: @Sendable () -> Void
        init(name: String, niceIncrement: Int32, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.niceIncrement = niceIncrement
            self.body = body
        }
    }
    let start = Unmanaged.passRetained(Start(name: name, niceIncrement: niceIncrement, body: body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { raw in
        let start = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Start
        hg_set_thread_name(start.name)
        if start.niceIncrement > 0 { _ = hg_lower_thread_priority(start.niceIncrement) }
        start.body()
        return nil
    }, start)
    precondition(result == 0, "Hourglass: cannot start the thread \(name) (errno \(result))")
    pthread_detach(thread)
}
