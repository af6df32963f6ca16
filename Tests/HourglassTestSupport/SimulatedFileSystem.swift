import HourglassStorage
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An in-memory file system that models what a crash keeps, for the crash tests.
///
/// Every file has two images: its **current** contents (what the process sees; the page cache)
/// and its **durable** contents (what survives a power loss). Directories likewise have their
/// current entries and their durable entries.
///
/// - `StorageFile.sync(offset:length:)` (msync) makes the pages it covers durable, the range
///   rounded out to 4096-byte pages. `StorageStream.sync()` (fsync) makes the whole stream
///   durable, its length included.
/// - Creating, renaming and removing a file changes the directory's current entries at once; the
///   change becomes durable at `StorageDirectory.sync()` (fsync of the directory). Until then a
///   power loss may or may not keep it: each pending change is kept or dropped independently
///   (chosen per crash from the random generator given to `crashImage`).
/// - `lock()` keeps a second engine out of a directory (`StorageError.locked`) until `unlock()`.
///
/// The plan (`Plan`) injects faults. Mutating operations (write, append, msync, fsync, create,
/// rename, remove, directory fsync) are numbered from 1 as they happen, across all threads:
/// - **crash** at operation N: it does not happen (or, for a torn write, only a prefix of its
///   bytes lands), it fails with EIO, and so does every later operation of any kind; nothing more
///   reaches either image. `crashImage` then produces what a restart would find after a process
///   crash (the current contents: the page cache survives) or a power loss (the durable image,
///   plus a random subset of the pages and directory changes that were not yet durable: pages
///   may be written back in any order).
/// - **fail** the first write or sync at or after operation N with EIO or ENOSPC, once; later
///   operations work (the engine is expected to stop on its own).
/// - an **allocation budget**: `createFile` (and stream appends) fail with `.diskFull` once the
///   files would take more bytes than the budget.
///
/// `crashImage` returns a `SimulatedImage`, which can be damaged (`flipBit`) and mounted again
/// with `init(image:)`, where everything is durable.
///
/// Thread-safe: one lock guards all state (the engine, the segment preparer and the checkpoint
/// writer use the file system from different threads). `StorageFile.withBytes` reads a file's
/// buffer without the lock, like a read through a real mapping.
public final class SimulatedFileSystem: StorageFileSystem, @unchecked Sendable {
    public static let pageSize = 4096

    /// An error to inject.
    public enum Failure: String, Sendable {
        /// EIO.
        case io
        /// ENOSPC (reported as `StorageError.diskFull`).
        case noSpace
    }

    public struct Plan: Sendable {
        /// Crash at this mutating operation (1-based).
        public var crashAtOperation: Int? = nil
        /// With `crashAtOperation`: the crash waits for the first write or append at or after
        /// that operation, and a random prefix of that write lands (the copy was interrupted).
        public var tearCrashingWrite = false
        /// Fail the first write, append or sync at or after this operation (1-based), once.
        public var failAtOperation: Int? = nil
        public var failure: Failure = .io
        /// Bytes all files together may take; past it `createFile` and appends fail with `.diskFull`.
        public var allocationBudget: Int? = nil
        /// Every mutating operation on a path containing this text fails with `failure` (a
        /// targeted fault: "checkpoint files cannot be created").
        public var failPathsContaining: String? = nil
        /// Crash at the next msync or fsync of a path containing this text (a targeted crash).
        public var crashAtSyncOfPathContaining: String? = nil
        public init() {}
    }

    /// Where and how the file system stopped.
    public struct Crash: Sendable, CustomStringConvertible {
        /// The operation that crashed (nil: `crashNow()`), and what it was.
        public var operation: Int?
        public var what: String
        /// Bytes of the crashing write that landed, for a torn write.
        public var tornAt: Int?
        public var description: String {
            let torn = tornAt.map { " (torn after \($0) bytes)" } ?? ""
            return operation.map { "crash at operation \($0): \(what)\(torn)" } ?? "crash: \(what)"
        }
    }

    // Guarded by `lock`.
    let lock = SimulatedLock()
    var directories: [String: SimulatedDirectoryState] = [:]
    var plan: Plan
    var operations = 0
    var crash: Crash? = nil
    var injected: String? = nil
    var diskFullHit: String? = nil
    var random: SeededRandom
    var violationList: [String] = []
    var nextInode = 0
    var recent: [String] = []

    /// An empty file system. `seed` drives its own random choices (where a write tears).
    public init(plan: Plan = Plan(), seed: UInt64 = 0) {
        self.plan = plan
        self.random = SeededRandom(seed: seed)
    }

    /// The file system a restart finds on a disk holding `image`: everything in it is durable.
    public init(image: SimulatedImage, plan: Plan = Plan(), seed: UInt64 = 0) {
        self.plan = plan
        self.random = SeededRandom(seed: seed)
        for (path, files) in image.directories {
            let directory = SimulatedDirectoryState(path: path)
            for (name, file) in files {
                nextInode += 1
                let inode = SimulatedInode(number: nextInode, image: file)
                directory.entries[name] = inode
            }
            directory.durableEntries = directory.entries
            directories[path] = directory
        }
    }

    // MARK: The test's side

    /// Changes the plan (clearing a budget, say, before reopening).
    public func update(_ body: (inout Plan) -> Void) { lock.withLock { body(&plan) } }

    /// Mutating operations so far.
    public var operationCount: Int { lock.withLock { operations } }

    /// The crash, once it happened.
    public var crashed: Crash? { lock.withLock { crash } }

    /// A description of the injected failure (fail or disk full), once it happened.
    public var injectedFailure: String? { lock.withLock { injected ?? diskFullHit } }

    /// Whether the plan's crash, failure or disk-full has happened.
    public var hasFaulted: Bool { lock.withLock { crash != nil || injected != nil || diskFullHit != nil } }

    /// Misuse of the storage protocols seen so far (a write to a closed file, out of bounds, ...).
    public var violations: [String] { lock.withLock { violationList } }

    /// The last operations, newest last, for failure messages.
    public var recentOperations: [String] { lock.withLock { recent } }

    /// Whether an engine holds the directory's lock.
    public func isLocked(_ path: String) -> Bool { lock.withLock { directories[path]?.lockOwner != nil } }

    /// Crashes now (if not crashed already): every later operation fails, nothing more lands.
    public func crashNow(_ what: String = "killed") {
        lock.withLock {
            if crash == nil { crash = Crash(operation: nil, what: what, tornAt: nil) }
        }
    }

    /// What a restart finds: after a process crash, every file's current contents and the
    /// current entries; after a power loss, the durable images plus a random subset of what was
    /// not durable yet. Crashes the file system first if it has not crashed.
    ///
    /// `keepPage`, when given, decides for each page not yet durable (file path, page index)
    /// whether a power loss wrote it back, instead of the random generator.
    public func crashImage(powerLoss: Bool, random: inout SeededRandom, keepPage: ((String, Int) -> Bool)? = nil) -> SimulatedImage {
        crashNow("image taken")
        return lock.withLock {
            var image = SimulatedImage()
            // Per crash: how much of what was not durable the disk happened to keep, and how
            // the kernel wrote it back: page by page in any order, or file by file (all of a
            // file's dirty pages or none).
            let pageKeep = [0.0, 0.25, 0.5, 0.75, 1.0][Int(random.next() % 5)]
            let byFile = random.next() % 3 == 0
            let entryKeep = [0.0, 0.5, 1.0][Int(random.next() % 3)]
            // In a fixed order, so that a seed gives the same image in every process.
            for (path, directory) in directories.sorted(by: { $0.key < $1.key }) {
                var entries: [String: SimulatedInode]
                if powerLoss {
                    entries = directory.durableEntries
                    for change in directory.pending where Double(random.next() % 1000) / 1000 < entryKeep {
                        switch change {
                        case let .link(name, inode):
                            entries[name] = inode
                        case let .rename(from, to, inode):
                            if entries[from] === inode { entries[from] = nil }
                            entries[to] = inode
                        case let .unlink(name, inode):
                            if entries[name] === inode { entries[name] = nil }
                        }
                    }
                } else {
                    entries = directory.entries
                }
                var files: [String: SimulatedImage.File] = [:]
                for (name, inode) in entries.sorted(by: { $0.key < $1.key }) {
                    let filePath = path + "/" + name
                    var keepPage = keepPage
                    if keepPage == nil && byFile {
                        let whole = random.next() % 2 == 0
                        keepPage = { _, _ in whole }
                    }
                    files[name] = powerLoss
                        ? inode.powerLossImage(keep: pageKeep, random: &random, decide: keepPage.map { keep in { keep(filePath, $0) } })
                        : inode.currentImage()
                }
                image.directories[path] = files
            }
            return image
        }
    }

    // MARK: Holding syncs (to pin a race)

    private var heldText: String? = nil
    private var heldCount = 0
    private let holdCondition = SimulatedCondition()

    /// From now on, an msync or fsync of a path containing `text` waits (before it does
    /// anything) until `releaseSyncs()`: it stands for a slow disk under a sync thread.
    public func holdSyncs(ofPathContaining text: String) { holdCondition.withLock { heldText = text } }

    /// Waits until a held sync is waiting, at most `seconds`. Returns whether one is.
    @discardableResult
    public func waitForHeldSync(seconds: Double) -> Bool {
        holdCondition.wait(seconds: seconds) { heldCount > 0 }
    }

    /// The same, without holding a thread of the concurrency pool while it waits: the held
    /// sync may be a caller's own (under `always` a lone caller syncs on its own thread), and
    /// the pool has as many threads as cores.
    @discardableResult
    public func waitForHeldSync(seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if holdCondition.withLock({ heldCount > 0 }) { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return holdCondition.withLock { heldCount > 0 }
    }

    /// Lets the held syncs go on.
    public func releaseSyncs() {
        holdCondition.withLock { heldText = nil }
        holdCondition.broadcast()
    }

    func holdIfAsked(_ path: String) {
        holdCondition.withLock {
            guard let text = heldText, path.contains(text) else { return }
            heldCount += 1
            holdCondition.broadcast()
            holdCondition.waitLocked { heldText == nil }
            heldCount -= 1
        }
    }

    // MARK: StorageFileSystem

    package func openDirectory(_ path: String) throws(StorageError) -> any StorageDirectory {
        let state = try lock.withLock { () throws(StorageError) -> SimulatedDirectoryState in
            if crash != nil { throw .io(operation: "open", path: path, errno: .ioError) }
            if let existing = directories[path] { return existing }
            let created = SimulatedDirectoryState(path: path)
            directories[path] = created
            return created
        }
        return SimulatedDirectory(fileSystem: self, state: state)
    }

    // MARK: Under the lock

    enum Operation: String {
        case write, append, msync, fsync, create, rename, remove, directorySync = "fsync(dir)"
        var isWrite: Bool { self == .write || self == .append }
        var isWriteOrSync: Bool { self == .write || self == .append || self == .msync || self == .fsync || self == .directorySync }
    }

    enum Gate {
        case proceed
        case fail(StorageError)
        /// Let `bytes` bytes land, then fail (the crash).
        case tear(Int, StorageError)
    }

    func note(_ text: String) {
        recent.append(text)
        if recent.count > 40 { recent.removeFirst(recent.count - 40) }
    }

    /// Non-mutating operations: refused after the crash.
    func checkAlive(_ operation: String, _ path: String) throws(StorageError) {
        if crash != nil { throw .io(operation: operation, path: path, errno: .ioError) }
    }

    /// Counts a mutating operation and applies the plan to it. `bytes`: the size of a write.
    func gate(_ operation: Operation, _ path: String, _ detail: String = "", bytes: Int = 0) -> Gate {
        let eio = StorageError.io(operation: operation.rawValue, path: path, errno: .ioError)
        if crash != nil { return .fail(eio) }
        operations += 1
        let what = "\(operation.rawValue) \(path)\(detail.isEmpty ? "" : " " + detail)"
        note("#\(operations) \(what)")
        if let text = plan.crashAtSyncOfPathContaining, operation == .msync || operation == .fsync, path.contains(text) {
            crash = Crash(operation: operations, what: what, tornAt: nil)
            return .fail(eio)
        }
        if let at = plan.crashAtOperation, operations >= at, !plan.tearCrashingWrite || operation.isWrite {
            if plan.tearCrashingWrite && bytes > 0 {
                let landed = Int(random.next() % UInt64(bytes))
                crash = Crash(operation: operations, what: what, tornAt: landed)
                return .tear(landed, eio)
            }
            crash = Crash(operation: operations, what: what, tornAt: nil)
            return .fail(eio)
        }
        if let text = plan.failPathsContaining, path.contains(text) {
            injected = "\(plan.failure == .io ? "EIO" : "ENOSPC") at operation \(operations): \(what)"
            switch plan.failure {
            case .io: return .fail(eio)
            case .noSpace: return .fail(.diskFull(path: path))
            }
        }
        if let at = plan.failAtOperation, operations >= at, operation.isWriteOrSync {
            plan.failAtOperation = nil
            injected = "\(plan.failure == .io ? "EIO" : "ENOSPC") at operation \(operations): \(what)"
            switch plan.failure {
            case .io: return .fail(eio)
            case .noSpace: return .fail(.diskFull(path: path))
            }
        }
        return .proceed
    }

    func violation(_ text: String) {
        violationList.append(text)
        note("VIOLATION \(text)")
    }

    /// Bytes all linked files take.
    func allocatedBytes() -> Int {
        var seen = Set<Int>()
        var total = 0
        for directory in directories.values {
            for inode in directory.entries.values where seen.insert(inode.number).inserted { total += inode.length }
        }
        return total
    }

    func makeInode(length: Int, isStream: Bool) -> SimulatedInode {
        nextInode += 1
        return SimulatedInode(number: nextInode, length: length, isStream: isStream)
    }
}

/// A file system's image after a crash: the files a restart finds, and their bytes. Sparse:
/// pages that were never written read as zeros.
public struct SimulatedImage: Sendable {
    public struct File: Sendable {
        public var length: Int
        /// Page index → the page's bytes (`SimulatedFileSystem.pageSize`, shorter at the end).
        public var pages: [Int: [UInt8]]

        public init(length: Int, pages: [Int: [UInt8]] = [:]) {
            self.length = length
            self.pages = pages
        }

        /// The whole file.
        public var bytes: [UInt8] {
            var bytes = [UInt8](repeating: 0, count: length)
            for (index, page) in pages {
                let start = index * SimulatedFileSystem.pageSize
                for i in 0 ..< min(page.count, max(0, length - start)) { bytes[start + i] = page[i] }
            }
            return bytes
        }

        /// Flips bit `bit` (0 ..< length * 8).
        public mutating func flipBit(_ bit: Int) {
            precondition(bit >= 0 && bit < length * 8, "bit \(bit) outside the file")
            let offset = bit / 8
            let index = offset / SimulatedFileSystem.pageSize
            var page = pages[index] ?? [UInt8](repeating: 0, count: min(SimulatedFileSystem.pageSize, length - index * SimulatedFileSystem.pageSize))
            page[offset % SimulatedFileSystem.pageSize] ^= UInt8(1) << UInt8(bit % 8)
            pages[index] = page
        }
    }

    /// Directory path → file name → file.
    public var directories: [String: [String: File]] = [:]

    public init() {}

    /// The file names in `directory`, sorted.
    public func names(in directory: String) -> [String] { (directories[directory] ?? [:]).keys.sorted() }

    public func file(_ directory: String, _ name: String) -> File? { directories[directory]?[name] }

    /// Flips one bit of a file.
    public mutating func flipBit(_ directory: String, _ name: String, bit: Int) {
        directories[directory]![name]!.flipBit(bit)
    }
}

// MARK: - Internals

/// A pthread mutex (the state holds non-`Sendable` classes shared between threads).
final class SimulatedLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A mutex and a condition variable, for holding syncs.
final class SimulatedCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }
    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func withLock<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    func broadcast() { pthread_cond_broadcast(condition) }

    /// With the mutex held: waits until `done()`.
    func waitLocked(until done: () -> Bool) {
        while !done() { pthread_cond_wait(condition, mutex) }
    }

    /// Waits until `done()` holds, at most `seconds`; returns whether it holds.
    func wait(seconds: Double, until done: () -> Bool) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Int(now.tv_nsec) + Int(seconds * 1e9)
        var deadline = timespec(tv_sec: now.tv_sec + total / 1_000_000_000, tv_nsec: total % 1_000_000_000)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !done() {
            if pthread_cond_timedwait(condition, mutex, &deadline) != 0 { return done() }
        }
        return true
    }
}

/// A file's bytes: a zero-filled buffer with the current contents, and for every page written
/// since it was last made durable, the page's durable contents.
final class SimulatedInode {
    let number: Int
    let isStream: Bool
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private(set) var length: Int
    private var durableLength: Int
    /// Dirty page → its durable contents (a full page; zeros past the durable length).
    private var durablePages: [Int: [UInt8]] = [:]
    /// Pages that may hold non-zero bytes.
    private var touched = Set<Int>()
    /// Buffers replaced by a bigger one: kept until the inode goes, since a reader may hold one.
    private var retired: [UnsafeMutableRawPointer] = []

    private static var page: Int { SimulatedFileSystem.pageSize }

    private static func roundUp(_ n: Int) -> Int { max(page, (n + page - 1) / page * page) }

    init(number: Int, length: Int, isStream: Bool) {
        self.number = number
        self.isStream = isStream
        self.length = length
        self.durableLength = length
        capacity = Self.roundUp(length)
        base = calloc(capacity, 1)!
    }

    init(number: Int, image: SimulatedImage.File) {
        self.number = number
        self.isStream = false
        length = image.length
        durableLength = image.length
        capacity = Self.roundUp(image.length)
        base = calloc(capacity, 1)!
        for (index, bytes) in image.pages {
            let start = index * Self.page
            let count = min(bytes.count, length - start)
            guard count > 0 else { continue }
            bytes.withUnsafeBytes { (base + start).copyMemory(from: $0.baseAddress!, byteCount: count) }
            touched.insert(index)
        }
    }

    deinit {
        free(base)
        for buffer in retired { free(buffer) }
    }

    func pageBytes(_ index: Int) -> [UInt8] {
        let start = index * Self.page
        return Array(UnsafeRawBufferPointer(start: base + start, count: min(Self.page, capacity - start)))
    }

    /// Copies `bytes` to `offset` (a stream grows); the pages become dirty.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard bytes.count > 0 else { return }
        let end = offset + bytes.count
        if end > capacity {
            var bigger = capacity
            while bigger < end { bigger *= 2 }
            let buffer = calloc(bigger, 1)!
            buffer.copyMemory(from: base, byteCount: capacity)
            retired.append(base)
            base = buffer
            capacity = bigger
        }
        for index in offset / Self.page ... (end - 1) / Self.page {
            if durablePages[index] == nil { durablePages[index] = pageBytes(index) }
            touched.insert(index)
        }
        (base + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        if end > length { length = end }
    }

    /// msync: the pages covering the range become durable.
    func sync(offset: Int, length count: Int) {
        guard count > 0 else { return }
        for index in offset / Self.page ... (offset + count - 1) / Self.page { durablePages[index] = nil }
    }

    /// fsync: everything becomes durable.
    func syncAll() {
        durablePages.removeAll()
        durableLength = length
    }

    /// Where data may be, at or after `offset`: the start of the first page ever written there
    /// (the rest of the file is a hole, as a file system's SEEK_DATA reports it).
    func nextData(from offset: Int) -> Int? {
        guard offset < length else { return nil }
        let first = offset / Self.page
        guard let page = touched.filter({ $0 >= first }).min() else { return nil }
        let start = max(offset, page * Self.page)
        return start < length ? start : nil
    }

    func currentImage() -> SimulatedImage.File {
        var pages: [Int: [UInt8]] = [:]
        for index in touched where index * Self.page < length { pages[index] = trimmed(pageBytes(index), index, length) }
        return SimulatedImage.File(length: length, pages: pages)
    }

    /// The durable image, each dirty page written back with probability `keep`; a stream's
    /// length is the durable one or the current one.
    func powerLossImage(keep: Double, random: inout SeededRandom, decide: ((Int) -> Bool)? = nil) -> SimulatedImage.File {
        var size = length
        if isStream && durableLength != length && random.next() % 2 == 0 { size = durableLength }
        var pages: [Int: [UInt8]] = [:]
        for index in touched.sorted() where index * Self.page < size {
            var bytes = pageBytes(index)
            if let durable = durablePages[index] {
                let kept = decide.map { $0(index) } ?? (Double(random.next() % 1000) / 1000 < keep)
                if !kept { bytes = durable }
            }
            pages[index] = trimmed(bytes, index, size)
        }
        return SimulatedImage.File(length: size, pages: pages)
    }

    private func trimmed(_ bytes: [UInt8], _ index: Int, _ size: Int) -> [UInt8] {
        let count = min(bytes.count, size - index * Self.page)
        return count == bytes.count ? bytes : Array(bytes[0 ..< count])
    }
}

/// A directory's entries, current and durable, and the changes not yet durable.
final class SimulatedDirectoryState {
    enum Change {
        case link(String, SimulatedInode)
        case rename(String, String, SimulatedInode)
        case unlink(String, SimulatedInode)
    }

    let path: String
    var entries: [String: SimulatedInode] = [:]
    var durableEntries: [String: SimulatedInode] = [:]
    var pending: [Change] = []
    var lockOwner: ObjectIdentifier? = nil

    init(path: String) { self.path = path }
}

final class SimulatedDirectory: StorageDirectory {
    let fileSystem: SimulatedFileSystem
    let state: SimulatedDirectoryState
    private var holdsLock = false

    init(fileSystem: SimulatedFileSystem, state: SimulatedDirectoryState) {
        self.fileSystem = fileSystem
        self.state = state
    }

    deinit { unlock() }

    var path: String { state.path }
    private func full(_ name: String) -> String { state.path + "/" + name }

    func lock() throws(StorageError) {
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            try fs.checkAlive("flock", full("LOCK"))
            if state.lockOwner != nil { throw .locked(path: path) }
            state.lockOwner = ObjectIdentifier(self)
            holdsLock = true
            if state.entries["LOCK"] == nil {
                // An empty file, as the real lock creates; nothing in it to lose.
                let inode = fs.makeInode(length: 0, isStream: false)
                state.entries["LOCK"] = inode
                state.durableEntries["LOCK"] = inode
            }
        }
    }

    func unlock() {
        fileSystem.lock.withLock {
            if holdsLock {
                state.lockOwner = nil
                holdsLock = false
            }
        }
    }

    func list() throws(StorageError) -> [String] {
        let fs = fileSystem
        return try fs.lock.withLock { () throws(StorageError) -> [String] in
            try fs.checkAlive("readdir", path)
            return state.entries.keys.sorted()
        }
    }

    func createFile(_ name: String, length: Int) throws(StorageError) -> any StorageFile {
        let fs = fileSystem
        let inode = try fs.lock.withLock { () throws(StorageError) -> SimulatedInode in
            if case let .fail(error) = fs.gate(.create, full(name), "(\(length) bytes)") { throw error }
            if let budget = fs.plan.allocationBudget, fs.allocatedBytes() - (state.entries[name]?.length ?? 0) + length > budget {
                fs.diskFullHit = "disk full at operation \(fs.operations): create \(full(name)) of \(length) bytes, past the budget of \(budget)"
                throw .diskFull(path: full(name))
            }
            let inode = fs.makeInode(length: length, isStream: false)
            state.entries[name] = inode
            state.pending.append(.link(name, inode))
            return inode
        }
        return SimulatedFile(fileSystem: fs, inode: inode, path: full(name), writable: true)
    }

    func openFile(_ name: String, writable: Bool) throws(StorageError) -> any StorageFile {
        let fs = fileSystem
        let inode = try fs.lock.withLock { () throws(StorageError) -> SimulatedInode in
            try fs.checkAlive("open", full(name))
            guard let inode = state.entries[name] else { throw .io(operation: "open", path: full(name), errno: .noSuchFileOrDirectory) }
            return inode
        }
        return SimulatedFile(fileSystem: fs, inode: inode, path: full(name), writable: writable)
    }

    func createStream(_ name: String) throws(StorageError) -> any StorageStream {
        let fs = fileSystem
        let inode = try fs.lock.withLock { () throws(StorageError) -> SimulatedInode in
            if case let .fail(error) = fs.gate(.create, full(name)) { throw error }
            let inode = fs.makeInode(length: 0, isStream: true)
            state.entries[name] = inode
            state.pending.append(.link(name, inode))
            return inode
        }
        return SimulatedStream(fileSystem: fs, inode: inode, path: full(name))
    }

    func fileLength(_ name: String) throws(StorageError) -> Int {
        let fs = fileSystem
        return try fs.lock.withLock { () throws(StorageError) -> Int in
            try fs.checkAlive("open", full(name))
            guard let inode = state.entries[name] else { throw .io(operation: "open", path: full(name), errno: .noSuchFileOrDirectory) }
            return inode.length
        }
    }

    func remove(_ name: String) throws(StorageError) {
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if case let .fail(error) = fs.gate(.remove, full(name)) { throw error }
            guard let inode = state.entries[name] else { return }  // as unlink's ENOENT, ignored
            state.entries[name] = nil
            state.pending.append(.unlink(name, inode))
        }
    }

    func rename(_ from: String, to: String) throws(StorageError) {
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if case let .fail(error) = fs.gate(.rename, full(from), "-> \(to)") { throw error }
            guard let inode = state.entries[from] else { throw .io(operation: "rename", path: full(from), errno: .noSuchFileOrDirectory) }
            state.entries[from] = nil
            state.entries[to] = inode
            state.pending.append(.rename(from, to, inode))
        }
    }

    func sync() throws(StorageError) {
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if case let .fail(error) = fs.gate(.directorySync, path) { throw error }
            state.durableEntries = state.entries
            state.pending.removeAll()
        }
    }
}

final class SimulatedFile: StorageFile {
    let fileSystem: SimulatedFileSystem
    let inode: SimulatedInode
    let path: String
    let length: Int
    let writable: Bool
    private var closed = false

    init(fileSystem: SimulatedFileSystem, inode: SimulatedInode, path: String, writable: Bool) {
        self.fileSystem = fileSystem
        self.inode = inode
        self.path = path
        self.length = inode.length
        self.writable = writable
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
        guard bytes.count > 0 else { return }
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if closed || !writable || offset < 0 || offset + bytes.count > length {
                fs.violation("write of \(bytes.count) bytes at \(offset) to \(path) (length \(length), \(closed ? "closed" : writable ? "open" : "read-only"))")
                throw .io(operation: "write", path: path, errno: .badFileDescriptor)
            }
            switch fs.gate(.write, path, "[\(offset) ..< \(offset + bytes.count)]", bytes: bytes.count) {
            case .proceed:
                inode.write(bytes, at: offset)
            case let .fail(error):
                throw error
            case let .tear(landed, error):
                inode.write(UnsafeRawBufferPointer(rebasing: bytes[0 ..< landed]), at: offset)
                throw error
            }
        }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if closed {
            fileSystem.lock.withLock { fileSystem.violation("read of \(path) after close") }
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: inode.base, count: length))
    }

    func nextData(from offset: Int) -> Int? {
        fileSystem.lock.withLock { inode.nextData(from: offset) }
    }

    func sync(offset: Int, length count: Int) throws(StorageError) {
        guard count > 0 else { return }
        let fs = fileSystem
        fs.holdIfAsked(path)
        try fs.lock.withLock { () throws(StorageError) in
            if closed || offset < 0 || offset + count > length {
                fs.violation("msync of [\(offset) ..< \(offset + count)] of \(path) (length \(length), \(closed ? "closed" : "open"))")
                throw .io(operation: "msync", path: path, errno: .badFileDescriptor)
            }
            if case let .fail(error) = fs.gate(.msync, path, "[\(offset) ..< \(offset + count)]") { throw error }
            // msync covers whole pages: round the range out.
            inode.sync(offset: offset, length: count)
        }
    }

    func close() {
        fileSystem.lock.withLock { closed = true }
    }
}

final class SimulatedStream: StorageStream {
    let fileSystem: SimulatedFileSystem
    let inode: SimulatedInode
    let path: String
    private var closed = false

    init(fileSystem: SimulatedFileSystem, inode: SimulatedInode, path: String) {
        self.fileSystem = fileSystem
        self.inode = inode
        self.path = path
    }

    var length: Int { fileSystem.lock.withLock { inode.length } }

    func append(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        guard bytes.count > 0 else { return }
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if closed {
                fs.violation("append to \(path) after close")
                throw .io(operation: "write", path: path, errno: .badFileDescriptor)
            }
            switch fs.gate(.append, path, "(\(bytes.count) bytes at \(inode.length))", bytes: bytes.count) {
            case .proceed:
                break
            case let .fail(error):
                throw error
            case let .tear(landed, error):
                inode.write(UnsafeRawBufferPointer(rebasing: bytes[0 ..< landed]), at: inode.length)
                throw error
            }
            if let budget = fs.plan.allocationBudget, fs.allocatedBytes() + bytes.count > budget {
                fs.diskFullHit = "disk full at operation \(fs.operations): append to \(path), past the budget of \(budget)"
                throw .diskFull(path: path)
            }
            inode.write(bytes, at: inode.length)
        }
    }

    func sync() throws(StorageError) {
        let fs = fileSystem
        try fs.lock.withLock { () throws(StorageError) in
            if closed {
                fs.violation("fsync of \(path) after close")
                throw .io(operation: "fsync", path: path, errno: .badFileDescriptor)
            }
            if case let .fail(error) = fs.gate(.fsync, path) { throw error }
            inode.syncAll()
        }
    }

    func close() {
        fileSystem.lock.withLock { closed = true }
    }
}
