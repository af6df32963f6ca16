import CoreMetrics
import HourglassStorage
import Logging

/// How an engine keeps its timers and what a returned call promises.
public struct Configuration: Sendable {
    /// Where timers live.
    public enum Storage: Sendable, Hashable {
        /// In memory only: everything is lost when the process ends.
        case memory
        /// A directory holding the write-ahead log and checkpoints (created if missing).
        case directory(String)
    }

    /// What a returned `schedule`, `cancel`, `ack` or `retry` promises about the disk.
    public enum Durability: Sendable, Hashable, CustomStringConvertible {
        /// The call returns after an fsync that covers its record; concurrent calls share one
        /// fsync (group commit). Nothing acknowledged is lost, even on power failure.
        case always
        /// The call returns once its record is in the log's mapping; the log is synced at most
        /// this long later (at least 1 ms, at most `Configuration.longestDuration`). A process
        /// crash loses nothing (the page cache belongs to the kernel); a power failure can lose
        /// the last interval.
        ///
        /// ```swift
        /// let configuration = Configuration.directory("/var/lib/timers", durability: .interval(.milliseconds(10)))
        /// ```
        case interval(Duration)
        /// The call returns once its record is in the mapping; the kernel writes it back when it
        /// chooses. A process crash loses nothing; a power failure can lose what the kernel had
        /// not yet written (typically up to 30 s).
        case none
        /// A fleet's policy: the call returns once its frame is committed in PostgreSQL (and,
        /// with a synchronous standby, on the standby; see `Docs/OPERATIONS.md`). Only a fleet
        /// node (`HourglassFleetNode`, in the `HourglassFleet` library) runs under it; a local
        /// engine refuses it.
        case replicated

        /// The policy as the command line spells it: `always`, `interval:10` (whole
        /// milliseconds; a fractional period is written as its `Duration`), `none`.
        public var description: String {
            switch self {
            case .always: return "always"
            case let .interval(period):
                let (seconds, attoseconds) = period.components
                if attoseconds % 1_000_000_000_000_000 == 0, seconds < Int64.max / 1000 {
                    return "interval:\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)"
                }
                return "interval:\(period)"
            case .none: return "none"
            case .replicated: return "replicated"
            }
        }
    }

    /// Delivery guarantees.
    public enum DeliveryMode: Sendable, Hashable {
        /// A fired timer stays in flight until it is acknowledged; it is delivered again after
        /// `redeliveryTimeout`, and after a restart.
        case atLeastOnce
        /// A fired timer is acknowledged as it is handed over: never delivered twice, lost if the
        /// consumer fails while handling it.
        case atMostOnce
    }

    /// Where timers live: in memory, or in a directory.
    public var storage: Storage
    /// What a returned call promises about the disk (ignored in memory).
    public var durability: Durability
    /// The wheel's resolution: a timer fires at the first tick at or after its deadline. A
    /// whole number of milliseconds, from 1 ms (the default) to 60 s.
    public var tick: Duration = .milliseconds(1)
    /// The longest id accepted, in bytes (at most 1024).
    public var maxIDBytes: Int = 1024
    /// The longest payload accepted, in bytes (at most 16 MiB - 1).
    public var maxPayloadBytes: Int = 1 << 20
    /// At least once (the default) or at most once.
    public var deliveryMode: DeliveryMode = .atLeastOnce
    /// How long a delivered timer may stay unacknowledged before it is delivered again
    /// (positive, at most `Configuration.longestDuration`).
    public var redeliveryTimeout: Duration = .seconds(30)
    /// Most timers delivered and not yet acknowledged; due timers beyond it wait, in order.
    public var maxInFlight: Int = 10_000
    /// Attempts after which `retry` gives up on a timer (nil: no limit). For a recurring timer
    /// the occurrence is given up and the series goes on with the next one.
    public var maxAttempts: Int? = nil
    /// How late an occurrence of a recurring timer may fire and still count as on time; one
    /// later than this is a misfire, handled by the series' `MisfirePolicy` (at least 0, at
    /// most `Configuration.longestDuration`; Quartz's default, 60 s, by default).
    public var misfireThreshold: Duration = .seconds(60)
    /// Partitions: independent single writers (each its own log, checkpoints and wheel, in a
    /// subdirectory), an id always in the same one, behind one engine and one `deliveries`. More
    /// partitions let more cores write at once. Fixed when a directory is created (recorded in
    /// it; opening it with another count is refused); 1 to 256, 1 by default (a directory of
    /// one partition is laid out as before partitions existed). See `Docs/PARTITIONS.md`.
    public var partitions: Int = 1
    /// Size of each log segment file (default 64 MiB).
    public var segmentBytes: Int = 64 << 20
    /// Write a checkpoint once the log since the last one passes this size (default 256 MiB).
    /// The log a restart replayed counts: a service that restarts often still checkpoints.
    public var checkpointLogBytes: Int = 256 << 20
    /// Also write a checkpoint once this much time has passed since the last one (or since
    /// `open`) and the log has grown since: bounds recovery time and disk use when changes are
    /// rare. Measured on the engine's clock. `nil` (the default): by size and on request only.
    /// At least 1 ms, at most `Configuration.longestDuration`.
    public var checkpointInterval: Duration? = nil
    /// On corruption in the middle of the log, open anyway, drop the damaged frames and report
    /// exactly what was dropped (`HourglassEngine.recoveryReport`). Off by default: opening fails
    /// with an error that names the file and the offset.
    public var salvage: Bool = false
    /// Where the engine reports its metrics (see `Docs/OPERATIONS.md`); the process-wide
    /// `MetricsSystem` by default.
    public var metricsFactory: (any MetricsFactory)? = nil
    /// Dimensions added to every metric (to tell several engines apart).
    public var metricsDimensions: [(String, String)] = []
    /// Where the engine logs notable events (open, recovery, failures). Silent by default.
    public var logger: Logger = Logger(label: "hourglass", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Whether the engine fires timers; the `checkpoint` command opens a directory without
    /// firing anything.
    package var deliversTimers = true

    /// The file system under a directory engine; tests substitute one that injects faults.
    package var fileSystem: any StorageFileSystem = PosixFileSystem()

    /// A configuration with the defaults of every other setting.
    public init(storage: Storage = .memory, durability: Durability = .interval(.milliseconds(10))) {
        self.storage = storage
        self.durability = durability
    }

    /// A durable engine over `directory`.
    public static func directory(_ path: String, durability: Durability = .interval(.milliseconds(10))) -> Configuration {
        Configuration(storage: .directory(path), durability: durability)
    }

    /// An in-memory engine.
    public static var memory: Configuration { Configuration(storage: .memory) }

    /// The longest `redeliveryTimeout`, `checkpointInterval` and `.interval` sync period
    /// accepted: 100 years of 365.25 days. `open` refuses a longer one with
    /// `invalidConfiguration` rather than let the engine's `now + timeout` overflow; any clock
    /// reading up to `Deadline.latest` plus this still fits in an Int64 many times over.
    public static let longestDuration: Duration = .seconds(100 * 31_557_600)

    func validate() throws(HourglassError) {
        func require(_ condition: Bool, _ message: String) throws(HourglassError) {
            if !condition { throw .invalidConfiguration(message) }
        }
        try require(tick >= .milliseconds(1) && tick <= .seconds(60) && tick.components.attoseconds % 1_000_000_000_000_000 == 0,
                    "tick must be a whole number of milliseconds from 1 ms to 60 s, not \(tick)")
        try require(maxIDBytes >= 1 && maxIDBytes <= 1024, "maxIDBytes must be 1 ... 1024, not \(maxIDBytes)")
        try require(maxPayloadBytes >= 0 && maxPayloadBytes <= (1 << 24) - 1, "maxPayloadBytes must be 0 ... 16777215, not \(maxPayloadBytes)")
        try require(redeliveryTimeout > .zero, "redeliveryTimeout must be positive, not \(redeliveryTimeout)")
        try require(redeliveryTimeout <= Self.longestDuration, "redeliveryTimeout must be at most 100 years (Configuration.longestDuration), not \(redeliveryTimeout)")
        try require(maxInFlight >= 1, "maxInFlight must be at least 1, not \(maxInFlight)")
        try require(partitions >= 1 && partitions <= 256, "partitions must be 1 ... 256, not \(partitions)")
        if let maxAttempts { try require(maxAttempts >= 1, "maxAttempts must be at least 1, not \(maxAttempts)") }
        try require(misfireThreshold >= .zero && misfireThreshold <= Self.longestDuration,
                    "misfireThreshold must be 0 ... 100 years (Configuration.longestDuration), not \(misfireThreshold)")
        if case let .interval(period) = durability {
            try require(period >= .milliseconds(1), "the sync interval (durability .interval) must be at least 1 ms, not \(period)")
            try require(period <= Self.longestDuration, "the sync interval (durability .interval) must be at most 100 years (Configuration.longestDuration), not \(period)")
        }
        try require(segmentBytes >= 1 << 20 && segmentBytes <= 1 << 30, "segmentBytes must be 1 MiB ... 1 GiB, not \(segmentBytes)")
        try require(segmentBytes >= 2 * maxPayloadBytes + (1 << 16), "segmentBytes must hold at least two of the largest records (raise it or lower maxPayloadBytes)")
        try require(checkpointLogBytes >= segmentBytes, "checkpointLogBytes must be at least segmentBytes")
        if let checkpointInterval {
            try require(checkpointInterval >= .milliseconds(1), "checkpointInterval must be at least 1 ms, not \(checkpointInterval)")
            try require(checkpointInterval <= Self.longestDuration, "checkpointInterval must be at most 100 years (Configuration.longestDuration), not \(checkpointInterval)")
        }
        if case let .directory(path) = storage { try require(!path.isEmpty, "the directory path is empty") }
    }

    /// `validate()`, and refuses `.replicated`, which only a fleet node runs under.
    func validateForLocalEngine() throws(HourglassError) {
        try validate()
        if durability == .replicated {
            throw .invalidConfiguration("durability .replicated is a fleet's: start an HourglassFleetNode (the HourglassFleet library) with a PostgreSQL URL")
        }
    }
}

extension Configuration {
    /// The deadline `delay` after `now`; refused when `delay` is negative or the deadline would
    /// pass `Deadline.latest`.
    package func deadline(after delay: Duration, now: Int64) throws(HourglassError) -> Int64 {
        let ms = delay.wholeMillisecondsRoundedUp
        let (deadline, overflow) = now.addingReportingOverflow(ms)
        if overflow || delay < .zero || deadline > Deadline.latest.millisecondsSinceEpoch {
            throw .deadlineOutOfRange(milliseconds: overflow ? .max : deadline)
        }
        return deadline
    }

    /// Refuses an empty id or one over `maxIDBytes`.
    package func check(_ id: TimerID) throws(HourglassError) {
        if id.bytes.isEmpty { throw .emptyID }
        if id.bytes.count > maxIDBytes { throw .idTooLong(length: id.bytes.count, limit: maxIDBytes) }
    }

    /// Refuses a timer whose id, payload (over `payloadLimit`, `maxPayloadBytes` by default) or
    /// deadline is out of bounds.
    @inline(__always)
    package func check(_ timer: TimerRequest, payloadLimit: Int? = nil) throws(HourglassError) {
        try check(timer.id)
        let limit = payloadLimit ?? maxPayloadBytes
        if timer.payload.count > limit { throw .payloadTooLarge(length: timer.payload.count, limit: limit) }
        let deadline = timer.deadline.millisecondsSinceEpoch
        guard Deadline.validRange.contains(deadline) else { throw .deadlineOutOfRange(milliseconds: deadline) }
    }

    /// `tick` in milliseconds, for the wheel (valid once `validate()` has passed).
    var tickMilliseconds: Int64 { tick.components.seconds * 1000 + tick.components.attoseconds / 1_000_000_000_000_000 }

    /// The sync period of `.interval` in nanoseconds; nil under `always` and `none`. Valid once
    /// `validate()` has passed (at most 100 years: far inside UInt64).
    var syncIntervalNanoseconds: UInt64? {
        guard case let .interval(period) = durability else { return nil }
        let (seconds, attoseconds) = period.components
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
