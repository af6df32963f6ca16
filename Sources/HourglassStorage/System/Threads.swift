import CHourglass
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A counting semaphore over a pthread mutex and condition.
final class _Semaphore: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var count = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        count += 1
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while count == 0 { pthread_cond_wait(condition, mutex) }
        count -= 1
        pthread_mutex_unlock(mutex)
    }
}

/// A detached thread running one closure.
final class _StorageThread: @unchecked Sendable {
    private let body: @Sendable () -> Void
    private let name: String
    private let niceIncrement: Int32

    /// `name` shows in `top -H` and debuggers; `niceIncrement` lowers the thread's priority, so
    /// that background work yields the CPU to the engine thread and its callers.
    init(name: String, niceIncrement: Int32 = 0, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        self.niceIncrement = niceIncrement
        self.body = body
    }

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<_StorageThread>.fromOpaque(raw!).takeRetainedValue()
            hg_set_thread_name(me.name)
            if me.niceIncrement > 0 { _ = hg_lower_thread_priority(me.niceIncrement) }
            me.body()
            return nil
        }, box)
        precondition(result == 0, "Hourglass: cannot start a storage thread (errno \(result))")
        pthread_detach(thread)
    }
}

/// A plain mutex for state that holds non-`Sendable` values (files) shared with a helper thread.
final class _Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
