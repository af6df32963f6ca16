import Hourglass
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Progress of long work on stderr: one line, redrawn in place (`\r`), cleared when the work
/// ends. Drawn only when stderr is a terminal, so scripts and logs never see it.
final class ProgressLine: Sendable {
    /// Whether stderr is a terminal (checked once).
    static let enabled = isatty(2) != 0

    private struct State {
        var shown = ""
        var drawn = false
    }

    private let prefix: String
    private let state = Mutex(State())

    /// A line whose text starts with `prefix` (the command: `verify`, `checkpoint`, ...).
    init(_ prefix: String) { self.prefix = prefix }

    /// Shows a bar for `fraction` (0 ... 1) and `text` after it.
    func show(fraction: Double, _ text: String) {
        let percent = Int((max(0, min(1, fraction)) * 100).rounded(.down))
        let filled = percent / 4
        draw("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 25 - filled) + "] \(percent)% " + text)
    }

    /// Shows a step of reading a directory.
    func show(_ progress: DirectoryProgress) {
        let what = progress.step == .checkpoint ? "checkpoint" : "log"
        show(fraction: progress.fraction, "\(what): \(mebibytes(progress.completedBytes)) of \(mebibytes(progress.totalBytes)) MiB")
    }

    /// Shows a step with no measure of its size (`writing the checkpoint, 3.2 s`).
    func show(status text: String) { draw(text) }

    /// Clears the line.
    func finish() {
        guard Self.enabled else { return }
        let wasDrawn = state.withLock { state -> Bool in
            defer { state = State() }
            return state.drawn
        }
        if wasDrawn { writeAll(2, "\r\u{1B}[K") }
    }

    private func draw(_ text: String) {
        guard Self.enabled else { return }
        let line = "hourglass \(prefix): \(text)"
        let changed = state.withLock { state -> Bool in
            guard state.shown != line else { return false }
            state.shown = line
            state.drawn = true
            return true
        }
        if changed { writeAll(2, "\r\u{1B}[K" + line) }
    }

    private func mebibytes(_ bytes: Int) -> String {
        let tenths = (bytes * 10 + (1 << 19)) >> 20
        return "\(tenths / 10).\(tenths % 10)"
    }
}

/// Seconds since `start` (monotonic), with one decimal.
func secondsSince(_ start: ContinuousClock.Instant) -> String {
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    return "\(seconds).\(attoseconds / 100_000_000_000_000_000) s"
}
