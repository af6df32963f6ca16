/// A fixed-size file that the log writes by copying bytes in and reads by looking at them: a
/// shared memory mapping for real files, plain memory for simulated ones (the crash tests).
///
/// All pointer work on a file's bytes happens behind this door: `write` and `withBytes` check
/// bounds.
package protocol StorageFile: AnyObject {
    var path: String { get }
    var length: Int { get }
    /// Copies `bytes` to `offset`. A real file does this with `memcpy` into its mapping.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError)
    /// Calls `body` with the whole file's bytes (valid only during the call).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
    /// Makes `offset ..< offset + length` durable (msync).
    func sync(offset: Int, length: Int) throws(StorageError)
    /// Where bytes that may be non-zero start, at or after `offset` (nil: only zeros follow).
    /// A real file asks the file system (`SEEK_DATA`), so recovery need not read the
    /// never-written rest of a preallocated segment; the default says "look from here".
    func nextData(from offset: Int) -> Int?
    func close()
}

extension StorageFile {
    package func nextData(from offset: Int) -> Int? { offset < length ? offset : nil }
}

/// A file written front to back with ordinary writes (checkpoints).
package protocol StorageStream: AnyObject {
    var path: String { get }
    func append(_ bytes: UnsafeRawBufferPointer) throws(StorageError)
    var length: Int { get }
    /// fsync.
    func sync() throws(StorageError)
    func close()
}

/// The directory an engine owns: its files, their creation, and the lock that keeps a second
/// engine out. Names are plain file names within the directory.
package protocol StorageDirectory: AnyObject {
    var path: String { get }
    /// Takes the directory's exclusive lock; `StorageError.locked` when another engine (in this
    /// or another process) holds it.
    func lock() throws(StorageError)
    func unlock()
    func list() throws(StorageError) -> [String]
    /// Creates `name` with `length` bytes allocated on disk and reading as zeros, replacing any
    /// file with that name. A full disk is reported here, not later.
    func createFile(_ name: String, length: Int) throws(StorageError) -> any StorageFile
    func openFile(_ name: String, writable: Bool) throws(StorageError) -> any StorageFile
    func createStream(_ name: String) throws(StorageError) -> any StorageStream
    func fileLength(_ name: String) throws(StorageError) -> Int
    func remove(_ name: String) throws(StorageError)
    func rename(_ from: String, to: String) throws(StorageError)
    /// Makes creations, renames and removals in the directory durable (fsync of the directory).
    func sync() throws(StorageError)
}

/// Opens storage directories; the engine takes one so that tests can substitute their own.
package protocol StorageFileSystem: Sendable {
    /// Opens (creating if missing) the directory at `path`.
    func openDirectory(_ path: String) throws(StorageError) -> any StorageDirectory
}
