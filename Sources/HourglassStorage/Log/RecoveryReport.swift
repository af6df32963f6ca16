/// What recovery found, dropped and cut: the LevelDB habit of accounting for every byte.
public struct RecoveryReport: Sendable, Equatable, CustomStringConvertible {
    /// A torn tail cut off the newest segment: a frame the crash interrupted.
    public struct TornTail: Sendable, Equatable {
        /// The segment file that was cut.
        public var file: String
        /// Where the cut starts, in bytes from the file's start.
        public var offset: Int64
        /// Non-zero bytes discarded from `offset` on.
        public var bytes: Int
        /// Why the bytes at `offset` were not a valid frame.
        public var reason: String
    }

    /// Damage skipped in salvage mode, and the records lost with it.
    public struct Dropped: Sendable, Equatable {
        /// The file holding the damage.
        public var file: String
        /// Where the damage starts, in bytes from the file's start.
        public var offset: Int64
        /// Bytes skipped.
        public var bytes: Int
        /// The sequence numbers lost: `firstSequence ..< firstSequence + records`.
        public var firstSequence: UInt64
        /// Records lost.
        public var records: Int
        /// What was wrong, and the evidence that it was not a torn write.
        public var reason: String
    }

    /// Log segments read.
    public var segments = 0
    /// Frames read.
    public var frames = 0
    /// Records read (including those before the checkpoint's sequence, which are skipped).
    public var records = 0
    /// Records applied (at or after the checkpoint's sequence).
    public var applied = 0
    /// The torn tail cut off the log, if the last write was interrupted.
    public var tornTail: TornTail? = nil
    /// What salvage skipped (empty unless `Configuration.salvage` is set and there was damage).
    public var dropped: [Dropped] = []
    /// Bytes of the frames read (as stored) and of their bodies (decompressed).
    public var logBytes = 0
    /// The frames' bodies, decompressed.
    public var logRawBytes = 0
    /// Segment files in the directory (spares included).
    public var segmentFiles = 0
    /// Segments that ended before the checkpoint's start sequence, deleted during recovery.
    public var obsoleteSegments = 0
    /// The checkpoint recovery started from (its start sequence), if any.
    public var checkpointSequence: UInt64? = nil
    /// Timers loaded from the checkpoint.
    public var checkpointTimers = 0
    /// Damaged checkpoints passed over for an older one.
    public var damagedCheckpoints: [String] = []

    /// An empty report: nothing read.
    public init() {}

    /// One line: what was read, cut and dropped.
    public var description: String {
        var text = ""
        if let checkpointSequence { text += "checkpoint at \(checkpointSequence) with \(checkpointTimers) timers; " }
        for damaged in damagedCheckpoints { text += "passed over damaged checkpoint \(damaged); " }
        text += "\(segments) segments, \(frames) frames, \(records) records (\(applied) applied)"
        if let tornTail { text += "; torn tail cut at \(tornTail.file):\(tornTail.offset) (\(tornTail.bytes) bytes: \(tornTail.reason))" }
        for dropped in dropped {
            text += "; DROPPED \(dropped.bytes) bytes at \(dropped.file):\(dropped.offset), sequence numbers \(dropped.firstSequence) ..< \(dropped.firstSequence + UInt64(dropped.records)) (\(dropped.reason))"
        }
        return text
    }
}
