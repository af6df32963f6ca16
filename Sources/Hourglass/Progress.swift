/// How far a long read of a directory has got, for a progress display: `open` recovering a
/// large directory, `inspect` loading every timer, `verify` checking every checksum.
///
/// ```swift
/// let problems = try HourglassEngine.verify(directory: "/var/lib/orders/timers") { progress in
///     print("\(progress.step) \(Int(progress.fraction * 100))%")
/// }
/// ```
///
/// Reports come on the calling thread, in order, at most once per MiB read (and once at the
/// end of each step), so a handler may draw directly.
public struct DirectoryProgress: Sendable, Equatable, CustomStringConvertible {
    /// What is being read.
    public enum Step: Sendable, Equatable, CustomStringConvertible {
        /// A checkpoint file: its frames decoded (and, by `verify`, checked).
        case checkpoint
        /// The log after the checkpoint, frame by frame.
        case log

        /// `checkpoint` or `log`.
        public var description: String {
            switch self {
            case .checkpoint: return "checkpoint"
            case .log: return "log"
            }
        }
    }

    /// What is being read.
    public var step: Step
    /// The checkpoint file, or the directory for the log.
    public var path: String
    /// Bytes read so far in this step.
    public var completedBytes: Int
    /// Bytes this step reads in all (for the log: the segment files' full, preallocated length,
    /// so the last report of the step jumps to it).
    public var totalBytes: Int

    /// Creates a report.
    public init(step: Step, path: String, completedBytes: Int, totalBytes: Int) {
        self.step = step
        self.path = path
        self.completedBytes = completedBytes
        self.totalBytes = totalBytes
    }

    /// `completedBytes` over `totalBytes`, from 0 to 1 (1 for an empty step).
    public var fraction: Double { totalBytes > 0 ? min(1, Double(completedBytes) / Double(totalBytes)) : 1 }

    /// For example `log 12.0 of 64.0 MiB (18%)`.
    public var description: String {
        func mebibytes(_ bytes: Int) -> String {
            let tenths = (bytes * 10 + (1 << 19)) >> 20
            return "\(tenths / 10).\(tenths % 10)"
        }
        return "\(step) \(mebibytes(completedBytes)) of \(mebibytes(totalBytes)) MiB (\(Int(fraction * 100))%)"
    }
}

/// Passes reports on at most once per MiB, and always the last one of a step.
struct ProgressThrottle {
    let report: ((DirectoryProgress) -> Void)?
    /// The step and file reported last, and how far it had got (nil: report the next one).
    private var last: (step: DirectoryProgress.Step, path: String, bytes: Int)? = nil

    init(_ report: ((DirectoryProgress) -> Void)?) { self.report = report }

    mutating func note(_ step: DirectoryProgress.Step, _ path: String, _ done: Int, _ total: Int) {
        guard let report else { return }
        let sameStep = last.map { $0.step == step && $0.path == path } ?? false
        if done >= total || !sameStep || done - last!.bytes >= 1 << 20 {
            last = done >= total ? nil : (step, path, done)
            report(DirectoryProgress(step: step, path: path, completedBytes: done, totalBytes: total))
        }
    }
}
