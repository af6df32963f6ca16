import CoreMetrics
import HourglassCore
import HourglassStorage
import Logging
import Synchronization

/// The single writer of the wheel and the log, without a thread of its own on the hot path.
///
/// At most one thread at a time *leads*: it alone touches the wheel and the journal. A caller
/// that finds the engine free takes it, does its own work, writes its frame and returns, on its
/// own thread, without waiting for anyone (under `interval` and `none`: its record is in the
/// log's mapping, which a process crash cannot lose). A caller that finds it held leaves its
/// request in the door's queue and waits; the leader, before it lets go, applies everything
/// queued as one group (one frame) and answers it. So callers that arrive together form write
/// groups whose cost is shared (RocksDB's `WriteThread`, LevelDB's writer queue), and a lone
/// caller pays for nothing but its own work. Under `always` every caller waits for a sync, and
/// one sync covers every group written before it (see `Syncer`).
///
/// The clock thread (`Ticker`) leads only when the engine has work of its own: firing at a
/// deadline while nobody calls, the interval sync, loading or writing a checkpoint.
final class Engine: @unchecked Sendable {
    let door = Door()

    // MARK: Leader only (whoever holds the door)

    @exclusivity(unchecked) var wheel: TimerWheel
    let clock: any HourglassClock
    let configuration: Configuration
    let deliveries: DeliveryQueue
    @exclusivity(unchecked) var journal: WALJournal?
    @exclusivity(unchecked) var stoppedReason: String?
    /// The failure that stopped the engine: `close` reports it.
    @exclusivity(unchecked) var stoppedBy: HourglassError?
    @exclusivity(unchecked) var fired: [TimerHandle] = []
    @exclusivity(unchecked) var outgoing: [Delivery] = []
    @exclusivity(unchecked) var barriers: [UnsafeContinuation<EngineStats, Never>] = []
    @exclusivity(unchecked) var lastSyncNanoseconds: UInt64 = monotonicNanoseconds()
    @exclusivity(unchecked) var unsynced = false
    /// A sync this leader claimed (under `always`), run once it lets go of the door.
    @exclusivity(unchecked) var claimedSync: (batch: LogWriter.SyncBatch, replies: Replies)?
    @exclusivity(unchecked) var counters = EngineStats()
    /// Distinguishes this engine from every other opened in the process (deliveries carry it).
    let serial: UInt64
    let redeliveryMilliseconds: Int64
    let logger: Logger
    /// Whether a call returns once its record is written (`interval`, `none`), not synced.
    let returnsOnWrite: Bool
    /// The interval sync's period (`interval` only), computed once from the configuration.
    let syncIntervalNanoseconds: UInt64?

    /// The rest of the checkpoint still loading after a restart.
    @exclusivity(unchecked) var loader: CheckpointLoader?
    /// Cancels of ids not held while the checkpoint loads: answered when it is known whether
    /// the timer existed.
    @exclusivity(unchecked) var deferredCancels: [([UInt8], Reply<Bool>)] = []
    /// The checkpoint being written.
    @exclusivity(unchecked) var checkpointJob: CheckpointJob?
    /// Callers of `checkpoint()`, with the sequence number the checkpoint must reach.
    @exclusivity(unchecked) var checkpointWaiters: [(Reply<Void>, UInt64)] = []
    /// `journal.bytesWritten` when the last checkpoint began; negative at first, by the log
    /// bytes recovery replayed (they are part of the log since the last checkpoint).
    @exclusivity(unchecked) var logBytesAtLastCheckpoint = 0
    /// When the last checkpoint began (or the engine opened), by the engine's clock.
    @exclusivity(unchecked) var lastCheckpointAt: Int64
    let checkpointIntervalMilliseconds: Int64?
    @exclusivity(unchecked) var checkpointRequested = false
    @exclusivity(unchecked) var metrics: EngineMetrics
    @exclusivity(unchecked) var turnsSinceMetrics = 0
    /// When `open` began (for `fullyLoadedMilliseconds`).
    let openedNanoseconds: UInt64
    /// Syncs the log and answers the callers waiting on it (directory engines only).
    let syncer: Syncer?
    let ticker = Ticker()
    /// The wall-clock time up to which the clock thread's plan holds: a deadline before it
    /// moves the plan forward.
    @exclusivity(unchecked) var plannedUntil: Int64 = .min
    @exclusivity(unchecked) var planNeeded = true
    /// The `close` request, once applied: nothing after it is.
    @exclusivity(unchecked) var closeReply: Reply<Void>?
    /// The rules of the recurring timers held, each stored once.
    let seriesRules: SeriesRules
    /// `Configuration.misfireThreshold` in milliseconds.
    let misfireThresholdMilliseconds: Int64
    @exclusivity(unchecked) var scheduledTotal = 0
    @exclusivity(unchecked) var cancelledTotal = 0

    init(wheel: consuming TimerWheel, journal: WALJournal?, loader: CheckpointLoader?, seriesRules: SeriesRules, clock: any HourglassClock,
         configuration: Configuration, deliveries: DeliveryQueue, serial: UInt64, checkpointNow: Bool,
         openedNanoseconds: UInt64, logReplayMilliseconds: Double = 0, replayedLogBytes: Int = 0) {
        self.openedNanoseconds = openedNanoseconds
        self.logBytesAtLastCheckpoint = -replayedLogBytes
        self.lastCheckpointAt = clock.now()
        self.checkpointIntervalMilliseconds = configuration.checkpointInterval.map { max(1, $0.wholeMillisecondsRoundedUp) }
        self.wheel = wheel
        self.seriesRules = seriesRules
        self.misfireThresholdMilliseconds = max(0, configuration.misfireThreshold.wholeMillisecondsRoundedUp)
        self.journal = journal
        self.loader = loader
        self.clock = clock
        self.configuration = configuration
        self.deliveries = deliveries
        self.serial = serial
        self.redeliveryMilliseconds = max(1, configuration.redeliveryTimeout.wholeMillisecondsRoundedUp)
        self.logger = configuration.logger
        self.checkpointRequested = checkpointNow
        if case .always = configuration.durability { returnsOnWrite = false } else { returnsOnWrite = true }
        syncIntervalNanoseconds = configuration.syncIntervalNanoseconds
        let metrics = EngineMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory, dimensions: configuration.metricsDimensions)
        self.metrics = metrics
        if journal != nil {
            let syncDuration = metrics.syncDuration
            self.syncer = Syncer { syncDuration.recordNanoseconds(Int64($0)) }
        } else {
            self.syncer = nil
        }
        if let loader, loader.isDone { self.loader = nil }
        counters.logReplayMilliseconds = logReplayMilliseconds
    }

    func start() {
        ticker.start { [self] in clockTurn() }
        ticker.wake()
    }

    /// Asks for a turn of the clock thread (the clock moved, the checkpoint thread progressed).
    func wake() { ticker.wake() }

    // MARK: Entering

    /// Runs `body` as leader when the engine is free and the policy lets a call return once
    /// written; otherwise leaves `request(reply)` for the leader (or leads it, if the engine
    /// was freed meanwhile) and waits for the answer.
    @inline(__always)
    nonisolated(nonsending)
    func perform<T: Sendable>(
        _ body: (Engine) -> Result<T, HourglassError>, orQueue request: (Reply<T>) -> Request
    ) async -> Result<T, HourglassError> {
        if returnsOnWrite && tryLead() {
            noteSyncFailure()
            let result = body(self)
            if let failure = leave() { return .failure(failure) }
            return result
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<T, HourglassError>, Never>) in
            enter(request(Reply(continuation)))
        }
    }

    /// `cancel` through the door. While a checkpoint loads after a restart, a cancel of an id
    /// not loaded yet is answered once the load tells whether the timer existed.
    nonisolated(nonsending)
    func cancelThroughDoor(_ id: [UInt8]) async -> Result<Bool, HourglassError> {
        if returnsOnWrite && tryLead() {
            noteSyncFailure()
            if let result = cancel(id) {
                if let failure = leave() { return .failure(failure) }
                return result
            }
            return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
                deferredCancels.append((id, Reply(continuation)))
                leave()
            }
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Bool, HourglassError>, Never>) in
            enter(.cancel(id, Reply(continuation)))
        }
    }

    /// Takes the door if it is free.
    @inline(__always)
    func tryLead() -> Bool {
        door.withLock { state in
            guard !state.leading && state.accepting else { return false }
            state.leading = true
            return true
        }
    }

    /// Leaves `request` for the leader, or leads it when the engine is free. Refused once closed.
    func enter(_ request: Request) {
        enter(contentsOf: CollectionOfOne(request))
    }

    /// Leaves several requests at once, in order: they are applied in one group, before anything
    /// fires (so a cancel right after the schedule of a timer already due still wins).
    func enter(contentsOf requests: some Collection<Request>) {
        let role = door.withLock { state -> DoorRole in
            guard state.accepting else { return .refused }
            if state.leading {
                state.queue.append(contentsOf: requests)
                return .queued
            }
            state.leading = true
            return .leader
        }
        switch role {
        case .refused:
            for request in requests { Self.refuse(request) }
        case .queued:
            break
        case .leader:
            var replies = Replies()
            apply(Array(requests), into: &replies)
            _ = leave(replies)
        }
    }

    // MARK: Leading

    /// Ends a turn of leadership: fires what is due, writes the group's frame and answers it.
    /// What callers queued meanwhile is the next group: the clock thread leads it (a caller that
    /// leads returns after its own group; the door passes, still held, to the clock thread, which
    /// leads group after group while callers keep queuing, and lets go when none is left).
    /// Returns the failure that stopped the engine while writing the first group (the leader's
    /// own work is not durable then).
    @discardableResult
    func leave(_ replies: consuming Replies = Replies(), isClockThread: Bool = false) -> HourglassError? {
        var replies = replies
        var firstFailure: HourglassError? = nil
        var isFirstGroup = true
        while true {
            let failure = endGroup(&replies)
            if isFirstGroup { firstFailure = failure }
            isFirstGroup = false
            if closeReply != nil {
                finish()
                return firstFailure
            }
            let sync = claimedSync
            claimedSync = nil
            // A caller leads its own group; what others queued meanwhile goes to the clock
            // thread, which leads for as long as callers keep queuing: callers keep their
            // threads to themselves, and nobody sleeps or wakes per call while the load lasts.
            let mayHandOver = !isClockThread
            enum Next { case group([Request]), housekeeping, done, handedOver }
            let next = door.withLock { state -> Next in
                if state.housekeepingRequested {
                    state.housekeepingRequested = false
                    return .housekeeping
                }
                if state.queue.isEmpty {
                    state.leading = false
                    return .done
                }
                if mayHandOver {
                    state.handedToClock = true
                    return .handedOver
                }
                var batch: [Request] = []
                swap(&batch, &state.queue)
                return .group(batch)
            }
            // The sync this group claimed runs outside the door, so the next group forms meanwhile.
            if let sync { syncer?.perform(sync.batch, sync.replies) }
            switch next {
            case .done:
                return firstFailure
            case .handedOver:
                ticker.wake()
                return firstFailure
            case .housekeeping:
                // A slice between two groups: short, so that the callers queued meanwhile wait
                // no longer for it than for a group of their own.
                housekeeping(budgetNanoseconds: 50_000)
            case let .group(batch):
                apply(batch, into: &replies)
            }
        }
    }

    /// The end of a group: fire what is due, write and answer the group, hand over deliveries,
    /// answer `stats()` barriers, replan the clock thread if needed. Returns the commit's failure.
    private func endGroup(_ replies: inout Replies) -> HourglassError? {
        if closeReply == nil { fireDue() }
        let failure = commit(&replies)
        replies.resumeAll()
        replies = Replies()
        if !outgoing.isEmpty {
            deliveries.push(outgoing)
            outgoing.removeAll(keepingCapacity: true)
        }
        turnsSinceMetrics += 1
        if turnsSinceMetrics >= 256 || !barriers.isEmpty { publishMetrics() }
        if !barriers.isEmpty {
            let snapshot = stats()
            for barrier in barriers { barrier.resume(returning: snapshot) }
            barriers.removeAll()
        }
        if planNeeded && closeReply == nil { planClock() }
        return failure
    }

    /// A turn of the clock thread: lead if the engine is free (or was handed over), else ask
    /// its leader to do the housekeeping before it leaves.
    private func clockTurn() {
        enum Turn { case none, handedOver, own }
        let turn = door.withLock { state -> Turn in
            if state.handedToClock {
                state.handedToClock = false
                return .handedOver
            }
            guard state.accepting else { return .none }
            if state.leading {
                state.housekeepingRequested = true
                return .none
            }
            state.leading = true
            return .own
        }
        switch turn {
        case .none:
            return
        case .handedOver:
            // Callers are waiting in the queue: `leave` takes it as its next group (background
            // work gets its slices between groups).
            leave(isClockThread: true)
        case .own:
            housekeeping(budgetNanoseconds: 5_000_000)
            leave(isClockThread: true)
        }
    }

    /// The engine's own work, done by whoever leads when it is asked for: background slices
    /// (checkpoint loading and writing), then a new plan for the clock thread. Firing and the
    /// interval sync follow in `endGroup`.
    func housekeeping(budgetNanoseconds: UInt64) {
        noteSyncFailure()
        if closeReply == nil { backgroundWork(budgetNanoseconds: budgetNanoseconds) }
        planNeeded = true
    }

    /// A sync that failed since the last group stops the engine before the next one applies.
    @inline(__always)
    func noteSyncFailure() {
        if stoppedReason == nil, let failure = syncer?.failed { stop(because: failure) }
    }

    func publishMetrics() {
        turnsSinceMetrics = 0
        var light = counters
        light.pending = wheel.count - wheel.inFlightCount
        light.inFlight = wheel.inFlightCount
        light.logBytesWritten = journal?.bytesWritten ?? 0
        metrics.update(light, scheduled: scheduledTotal, cancelled: cancelledTotal)
    }

    /// A snapshot of the counters and the structures' sizes (`HourglassEngine.stats()`).
    func stats() -> EngineStats {
        var snapshot = counters
        snapshot.inFlight = wheel.inFlightCount
        snapshot.pending = wheel.count - wheel.inFlightCount
        snapshot.buffered = deliveries.buffered
        snapshot.nextDeadline = wheel.nextDeadline().map { Deadline(millisecondsSinceEpoch: $0) }
        snapshot.memoryBytes = wheel.allocatedBytes
        snapshot.loading = loader != nil
        snapshot.checkpointInProgress = checkpointJob != nil
        if let journal {
            snapshot.logBytesWritten = journal.bytesWritten
            snapshot.logRawBytesWritten = journal.rawBytesWritten
            snapshot.framesWritten = journal.framesWritten
            snapshot.syncs = syncer?.syncs ?? journal.syncs
            snapshot.logBytesSinceCheckpoint = journal.bytesWritten - logBytesAtLastCheckpoint
        }
        return snapshot
    }
}
