import HourglassStorage
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under `$TMPDIR` (or `/tmp`), for an engine under test; `remove()` deletes
/// it with everything in it.
///
/// ```swift
/// let directory = TemporaryDirectory("orders")
/// defer { directory.remove() }
/// let engine = try await HourglassEngine.open(.directory(directory.path), clock: ManualClock())
/// ```
public struct TemporaryDirectory: Sendable, Hashable {
    /// The directory's absolute path.
    public let path: String

    /// Creates a new, empty directory named `label-XXXXXX` (six random characters).
    ///
    /// Traps when the directory cannot be created (no temporary directory, or `label` holds a
    /// `/`): the test environment is broken, and no test could run.
    public init(_ label: String = "hourglass") {
        precondition(!label.isEmpty && !label.contains("/"), "TemporaryDirectory: the label must be a non-empty file name, not '\(label)'")
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "TemporaryDirectory: cannot create a directory under \(base) (errno \(errno))")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The path of `name` inside the directory.
    public func appending(_ name: String) -> String { path + "/" + name }

    /// Deletes the directory and everything in it. Close the engine on it first.
    public func remove() { _ = removeTree(path) }

    /// The names of the files in the directory, sorted (empty once it is removed).
    public func files() -> [String] { listDirectory(path).sorted() }
}
