import CoreMetrics

/// The engine's metrics (swift-metrics): counters, gauges and timers, updated from the engine
/// thread once per loop turn (counters by their change since the last turn), so the hot path
/// pays nothing per timer but the lateness record.
///
/// | label | kind | what |
/// |-------|------|------|
/// | `hourglass_pending` | gauge | timers waiting for their deadline |
/// | `hourglass_in_flight` | gauge | delivered, not yet acknowledged |
/// | `hourglass_scheduled_total` | counter | schedules applied |
/// | `hourglass_cancelled_total` | counter | cancels that removed a timer |
/// | `hourglass_fired_total` | counter | deliveries (first deliveries and redeliveries) |
/// | `hourglass_redelivered_total` | counter | redeliveries after a timeout or a restart |
/// | `hourglass_acked_total` | counter | acknowledgements |
/// | `hourglass_retried_total` | counter | retries asked by consumers |
/// | `hourglass_exhausted_total` | counter | timers dropped after their last attempt (occurrences given up) |
/// | `hourglass_occurrences_coalesced_total` | counter | recurring occurrences folded into a later delivery (misfires) |
/// | `hourglass_occurrences_skipped_total` | counter | recurring occurrences skipped by `MisfirePolicy.skip` |
/// | `hourglass_log_bytes_total` | counter | bytes written to the log |
/// | `hourglass_lateness` | timer | fired-at minus deadline, per delivery |
/// | `hourglass_sync_duration` | timer | each msync/fsync of the log |
/// | `hourglass_checkpoint_duration` | timer | each checkpoint, start to durable |
struct EngineMetrics {
    let pending: Gauge
    let inFlight: Gauge
    let scheduled: Counter
    let cancelled: Counter
    let fired: Counter
    let redelivered: Counter
    let acked: Counter
    let retried: Counter
    let exhausted: Counter
    let coalesced: Counter
    let skipped: Counter
    let logBytes: Counter
    let lateness: CoreMetrics.Timer
    let syncDuration: CoreMetrics.Timer
    let checkpointDuration: CoreMetrics.Timer

    /// The counters' values at the last update.
    private var last = EngineStats()
    private var lastScheduled = 0
    private var lastCancelled = 0

    init(factory: any MetricsFactory, dimensions: [(String, String)]) {
        pending = Gauge(label: "hourglass_pending", dimensions: dimensions, factory: factory)
        inFlight = Gauge(label: "hourglass_in_flight", dimensions: dimensions, factory: factory)
        scheduled = Counter(label: "hourglass_scheduled_total", dimensions: dimensions, factory: factory)
        cancelled = Counter(label: "hourglass_cancelled_total", dimensions: dimensions, factory: factory)
        fired = Counter(label: "hourglass_fired_total", dimensions: dimensions, factory: factory)
        redelivered = Counter(label: "hourglass_redelivered_total", dimensions: dimensions, factory: factory)
        acked = Counter(label: "hourglass_acked_total", dimensions: dimensions, factory: factory)
        retried = Counter(label: "hourglass_retried_total", dimensions: dimensions, factory: factory)
        exhausted = Counter(label: "hourglass_exhausted_total", dimensions: dimensions, factory: factory)
        coalesced = Counter(label: "hourglass_occurrences_coalesced_total", dimensions: dimensions, factory: factory)
        skipped = Counter(label: "hourglass_occurrences_skipped_total", dimensions: dimensions, factory: factory)
        logBytes = Counter(label: "hourglass_log_bytes_total", dimensions: dimensions, factory: factory)
        lateness = CoreMetrics.Timer(label: "hourglass_lateness", dimensions: dimensions, factory: factory)
        syncDuration = CoreMetrics.Timer(label: "hourglass_sync_duration", dimensions: dimensions, factory: factory)
        checkpointDuration = CoreMetrics.Timer(label: "hourglass_checkpoint_duration", dimensions: dimensions, factory: factory)
    }

    /// Publishes what changed since the last call.
    mutating func update(_ stats: EngineStats, scheduled totalScheduled: Int, cancelled totalCancelled: Int) {
        pending.record(stats.pending)
        inFlight.record(stats.inFlight)
        func bump(_ counter: Counter, _ now: Int, _ before: Int) { if now > before { counter.increment(by: now - before) } }
        bump(scheduled, totalScheduled, lastScheduled)
        bump(cancelled, totalCancelled, lastCancelled)
        bump(fired, stats.delivered, last.delivered)
        bump(redelivered, stats.redelivered, last.redelivered)
        bump(acked, stats.acknowledged, last.acknowledged)
        bump(retried, stats.retried, last.retried)
        bump(exhausted, stats.exhausted, last.exhausted)
        bump(coalesced, stats.occurrencesCoalesced, last.occurrencesCoalesced)
        bump(skipped, stats.occurrencesSkipped, last.occurrencesSkipped)
        bump(logBytes, stats.logBytesWritten, last.logBytesWritten)
        last = stats
        lastScheduled = totalScheduled
        lastCancelled = totalCancelled
    }
}
