/// A snapshot of the engine's counters.
public struct EngineStats: Sendable, Equatable {
    /// Timers waiting for their deadline (those loaded so far, while a checkpoint loads).
    public var pending = 0
    /// Timers delivered and not yet acknowledged.
    public var inFlight = 0
    /// Deliveries made so far (first deliveries and redeliveries).
    public var delivered = 0
    /// Of those, redeliveries after a timeout or a restart.
    public var redelivered = 0
    /// Acknowledgements that took effect.
    public var acknowledged = 0
    /// Retries asked by consumers that took effect.
    public var retried = 0
    /// Timers dropped after `Configuration.maxAttempts` deliveries (for a recurring timer:
    /// occurrences given up, the series going on).
    public var exhausted = 0
    /// Occurrences of recurring timers folded into a later delivery by `MisfirePolicy.fireOnceNow`.
    public var occurrencesCoalesced = 0
    /// Occurrences of recurring timers not delivered under `MisfirePolicy.skip`.
    public var occurrencesSkipped = 0
    /// Deliveries waiting for a consumer to take them.
    public var buffered = 0
    /// The earliest deadline among pending timers (or cascade point before it).
    public var nextDeadline: Deadline? = nil
    /// Bytes of memory allocated for the timers (address space reserved for entries, index,
    /// arena and slots; what is resident is usually less, since the tables grow by doubling).
    public var memoryBytes = 0
    /// Log bytes written since the engine opened (0 in memory).
    public var logBytesWritten = 0
    /// The same records before compression (frame bodies), for the compression ratio.
    public var logRawBytesWritten = 0
    /// Frames (group commits) written since the engine opened.
    public var framesWritten = 0
    /// Syncs (fsync, msync) since the engine opened.
    public var syncs = 0
    /// Log bytes written since the last checkpoint began.
    public var logBytesSinceCheckpoint = 0
    /// Checkpoints written since the engine opened.
    public var checkpoints = 0
    /// The start sequence of the newest checkpoint written since the engine opened.
    public var checkpointSequence: UInt64? = nil
    /// How long the last checkpoint took, in milliseconds.
    public var lastCheckpointMilliseconds: Double? = nil
    /// Whether a checkpoint is being written.
    public var checkpointInProgress = false
    /// Whether the rest of a checkpoint is still loading after a restart.
    public var loading = false
    /// How long after `open` began the checkpoint had fully loaded, in milliseconds (nil while
    /// it loads, or when there was nothing left to load in the background).
    public var fullyLoadedMilliseconds: Double? = nil
    /// How long `open` spent reading the log after the checkpoint and applying its records
    /// (`recoveryReport.applied` of them), in milliseconds; 0 without a directory.
    public var logReplayMilliseconds: Double = 0

    /// All zero.
    public init() {}
}

extension EngineStats {
    /// The counters of two partitions as one engine's: counts add up, the next deadline is the
    /// earlier one, flags are set when either's is.
    func adding(_ other: EngineStats) -> EngineStats {
        var sum = self
        sum.pending += other.pending
        sum.inFlight += other.inFlight
        sum.delivered += other.delivered
        sum.redelivered += other.redelivered
        sum.acknowledged += other.acknowledged
        sum.retried += other.retried
        sum.exhausted += other.exhausted
        sum.occurrencesCoalesced += other.occurrencesCoalesced
        sum.occurrencesSkipped += other.occurrencesSkipped
        sum.buffered = max(buffered, other.buffered)  // one queue: each partition reads the same count
        sum.nextDeadline = [nextDeadline, other.nextDeadline].compactMap { $0 }.min()
        sum.memoryBytes += other.memoryBytes
        sum.logBytesWritten += other.logBytesWritten
        sum.logRawBytesWritten += other.logRawBytesWritten
        sum.framesWritten += other.framesWritten
        sum.syncs += other.syncs
        sum.logBytesSinceCheckpoint += other.logBytesSinceCheckpoint
        sum.checkpoints += other.checkpoints
        sum.checkpointSequence = [checkpointSequence, other.checkpointSequence].compactMap { $0 }.max()
        sum.lastCheckpointMilliseconds = [lastCheckpointMilliseconds, other.lastCheckpointMilliseconds].compactMap { $0 }.max()
        sum.checkpointInProgress = checkpointInProgress || other.checkpointInProgress
        sum.loading = loading || other.loading
        sum.fullyLoadedMilliseconds = [fullyLoadedMilliseconds, other.fullyLoadedMilliseconds].compactMap { $0 }.max()
        sum.logReplayMilliseconds += other.logReplayMilliseconds
        return sum
    }
}
