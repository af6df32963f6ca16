import HourglassCore

/// The background half of writing a checkpoint: sorts the engine's snapshot, compresses the
/// record bodies the engine encodes into frames, appends them to `checkpoint-L.hgc.tmp`, and at
/// the end writes the trailer, fsyncs, renames into place and fsyncs the directory.
///
/// The engine thread hands work over and polls for results; `notify` is called (from the
/// checkpoint thread) whenever a result is ready or queued work was taken, so the engine can
/// wake up.
package final class CheckpointWriter: @unchecked Sendable {
    package enum Outcome {
        case done(CheckpointTrailer, bytes: Int)
        case failed(StorageError)
    }

    /// A record body on its way to the checkpoint thread. Buffers go back and forth: the engine
    /// fills one while the thread compresses another, so no body is copied and no memory is
    /// touched for the first time while the checkpoint runs.
    package final class Body: @unchecked Sendable {
        package var bytes = ByteWriter(capacity: 1 << 20)
        package var records = 0
        package init() {}
    }

    private enum Job {
        case sort(keys: [UInt64], handles: [UInt32])
        case body(Body)
        case finish(timers: Int)
    }

    package let startSequence: UInt64
    private let directory: any StorageDirectory
    private let clock: @Sendable () -> Int64
    private let notify: @Sendable () -> Void
    private let lock = ConditionLock()
    private let wake = Semaphore()
    // Guarded by `lock`.
    private var jobs: [Job] = []
    private var queued = 0
    private var sorted: [UInt32]? = nil
    private var outcome: Outcome? = nil
    private var cancelled = false
    private var spares: [Body] = []

    /// Starts the checkpoint thread; the temporary file is created on it.
    package init(directory: any StorageDirectory, startSequence: UInt64, clock: @escaping @Sendable () -> Int64, notify: @escaping @Sendable () -> Void) {
        self.directory = directory
        self.startSequence = startSequence
        self.clock = clock
        self.notify = notify
        startThread(name: "hourglass-ckpt", niceIncrement: 10) { [self] in run() }
    }

    /// Sorts `handles` by `keys` (ascending) on the checkpoint thread; see `takeSorted`.
    package func sort(keys: [UInt64], handles: [UInt32]) { enqueue(.sort(keys: keys, handles: handles), bytes: 0) }

    /// The sorted handles, once ready (taken once).
    package func takeSorted() -> [UInt32]? {
        lock.withLock {
            defer { sorted = nil }
            return sorted
        }
    }

    /// An empty body to fill (one the thread is done with, or a new one).
    package func emptyBody() -> Body {
        lock.withLock { spares.popLast() } ?? Body()
    }

    /// Queues a record body (at most `LogFormat.maxRawFrameLength` bytes) to become a frame; the
    /// writer owns it from now on.
    package func append(_ body: Body) { enqueue(.body(body), bytes: body.bytes.count) }

    /// Bytes of bodies queued and not yet written: the engine stops encoding above a bound.
    package var queuedBytes: Int { lock.withLock { queued } }

    /// Queues the end: trailer, fsync, rename, directory fsync.
    package func finish(timers: Int) { enqueue(.finish(timers: timers), bytes: 0) }

    /// The result, once the checkpoint is durable (or failed).
    package var result: Outcome? { lock.withLock { outcome } }

    /// Abandons the checkpoint: the thread stops and deletes the temporary file.
    package func cancel() {
        lock.withLock { cancelled = true }
        wake.signal()
    }

    private func enqueue(_ job: Job, bytes: Int) {
        lock.withLock {
            jobs.append(job)
            queued += bytes
        }
        wake.signal()
    }

    private func run() {
        let name = CheckpointName.name(startSequence)
        let temporary = name + ".tmp"
        var stream: (any StorageStream)? = nil
        var encoder = FrameEncoder()
        var records = 0
        var bytes = 0
        func fail(_ error: StorageError) {
            stream?.close()
            try? directory.remove(temporary)
            lock.withLock { outcome = .failed(error) }
            notify()
        }
        do throws(StorageError) {
            stream = try directory.createStream(temporary)
        } catch {
            fail(error)
            return
        }
        while true {
            wake.wait()
            while let job = lock.withLock({ () -> Job? in
                if cancelled { return nil }
                return jobs.isEmpty ? nil : jobs.removeFirst()
            }) {
                switch job {
                case var .sort(keys, handles):
                    radixSort(keys: &keys, values: &handles)
                    lock.withLock { sorted = handles }
                    notify()
                case let .body(body):
                    let count = body.records
                    let length = body.bytes.count
                    let header = encoder.encode(body: UnsafeRawBufferPointer(start: body.bytes.base, count: length),
                                                firstSequence: UInt64(records) + 1, recordCount: count)
                    do throws(StorageError) {
                        try stream!.append(encoder.frame.bytes)
                    } catch {
                        fail(error)
                        return
                    }
                    records += count
                    bytes += header.frameLength
                    body.bytes.removeAll()
                    body.records = 0
                    lock.withLock {
                        queued -= length
                        if spares.count < 32 { spares.append(body) }
                    }
                    notify()
                case let .finish(timers):
                    let trailer = CheckpointTrailer(
                        startSequence: startSequence, records: UInt64(records), timers: UInt64(timers),
                        framesBytes: UInt64(bytes), createdMilliseconds: clock())
                    do throws(StorageError) {
                        let trailerBytes = trailer.bytes
                        let result = trailerBytes.withUnsafeBytes { raw in Result { () throws(StorageError) in try stream!.append(raw) } }
                        try result.get()
                        try stream!.sync()
                        stream!.close()
                        try directory.rename(temporary, to: name)
                        try directory.sync()
                    } catch {
                        fail(error)
                        return
                    }
                    lock.withLock { outcome = .done(trailer, bytes: bytes + LogFormat.checkpointTrailerLength) }
                    notify()
                    return
                }
            }
            if lock.withLock({ cancelled }) {
                stream?.close()
                try? directory.remove(temporary)
                return
            }
        }
    }
}
