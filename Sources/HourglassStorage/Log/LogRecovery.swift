import HourglassCore

/// Reads every segment in order, checks every frame, applies the records, and decides what
/// damage is a torn tail (cut) and what is corruption (refused, or skipped and reported in
/// salvage mode): the decision table of `Docs/RECOVERY.md`, which names the function that
/// decides each row.
///
/// - `LogRecovery+Table.swift`: the table: what the walk can find (`Finding`, `Damage`), the
///   decisions about damage (`Decision`), and the one switch from each finding to its decision;
/// - `LogRecovery+Findings.swift`: the walk's reading side: what it finds at a segment's start,
///   in its header, at its next frame, where its frames stop;
/// - `LogRecovery+Decisions.swift`: one function per decision (per row, or per rows that share
///   one decision);
/// - `LogRecovery+Evidence.swift`: what the log after damage proves, and the scan for intact
///   frames that it rests on;
/// - `LogRecovery+Walk.swift`, `LogRecovery+FrameReader.swift`: the state of one run and the
///   reader that decodes each frame once;
/// - `LogRecovery+Segments.swift`, `LogRecovery+Cut.swift`: the segment files before the table
///   applies, and the cut after it.
package struct LogRecovery {
    package let directory: any StorageDirectory
    /// Records before this sequence number are read and checked but not applied (a checkpoint
    /// holds their effect).
    package let startSequence: UInt64
    package let salvage: Bool
    /// Change nothing: no torn tail is cut, no file deleted (inspection tools).
    package let readOnly: Bool

    /// Called as the log is read, for a progress display: the bytes of segment files read so
    /// far and in all (spares not counted; segments are preallocated, so the total is their
    /// full length and the last report jumps to it). At most once per MiB read, and at the end.
    package var progress: ((_ done: Int, _ total: Int) -> Void)? = nil

    package init(directory: any StorageDirectory, startSequence: UInt64 = 1, salvage: Bool = false, readOnly: Bool = false) {
        self.directory = directory
        self.startSequence = startSequence
        self.salvage = salvage
        self.readOnly = readOnly
    }

    /// Runs recovery, calling `apply` for every record at or after `startSequence`, in order.
    package func run(report: inout RecoveryReport, apply: (RecordView, UInt64) -> Void) throws(StorageError) -> LogTail {
        var segments: [Segment] = []
        defer { for segment in segments { segment.file.close() } }
        try openSegments(into: &segments)
        try dropCoveredSegments(&segments, report: &report)

        var walk = Walk(recovery: self, segments: segments, report: report)
        defer { report = walk.report }
        try walk.read(apply: apply)
        try walk.cutLog()
        return try walk.tail()
    }

    /// The granularity at which file systems report data and holes.
    static let block = 4096
}
