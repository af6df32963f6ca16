import HourglassStorage
import HourglassTestSupport
import Testing

/// The crash tests are only as good as the simulated file system's crash semantics: these pin
/// them (what msync, fsync and a directory fsync make durable, what a process crash and a power
/// loss keep, torn writes, injected failures, the lock, the allocation budget).
@Suite("Simulated file system: crash semantics")
struct SimulatedFileSystemTests {
    static let path = "/sim/test"
    static let page = SimulatedFileSystem.pageSize

    func bytes(_ count: Int, _ value: UInt8) -> [UInt8] { [UInt8](repeating: value, count: count) }

    func write(_ file: any StorageFile, _ bytes: [UInt8], at offset: Int) throws(StorageError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(StorageError) in try file.write(raw, at: offset) } }
        try result.get()
    }

    func append(_ stream: any StorageStream, _ bytes: [UInt8]) throws(StorageError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(StorageError) in try stream.append(raw) } }
        try result.get()
    }

    /// Images after a power loss, over many random choices.
    func powerLossImages(_ fileSystem: SimulatedFileSystem, count: Int = 200) -> [SimulatedImage] {
        var random = SeededRandom(seed: 42)
        // One file system, imaged again and again: crashImage crashes it the first time only and
        // never changes its state.
        return (0 ..< count).map { _ in fileSystem.crashImage(powerLoss: true, random: &random) }
    }

    @Test("msync makes the pages it covers durable, rounded out to whole pages; other pages may or may not survive a power loss")
    func msyncPages() throws {
        let fileSystem = SimulatedFileSystem()
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: 4 * Self.page)
        try directory.sync()
        try write(file, bytes(3 * Self.page, 7), at: 0)
        // Bytes 100 ..< 200 of page 1 (only): page 1 becomes durable whole.
        try file.sync(offset: Self.page + 100, length: 100)
        var sawPage0 = Set<Bool>()
        var sawPage2 = Set<Bool>()
        for image in powerLossImages(fileSystem) {
            let content = image.file(Self.path, "f")!.bytes
            #expect(content.count == 4 * Self.page)
            #expect(content[Self.page ..< 2 * Self.page].allSatisfy { $0 == 7 }, "the synced page is durable")
            #expect(content[(3 * Self.page)...].allSatisfy { $0 == 0 })
            sawPage0.insert(content[0] == 7)
            sawPage2.insert(content[2 * Self.page] == 7)
            // A page survives whole or not at all.
            #expect(Set(content[0 ..< Self.page]).count == 1)
        }
        #expect(sawPage0 == [true, false], "an unsynced page is sometimes kept, sometimes lost")
        #expect(sawPage2 == [true, false])
        // A process crash keeps everything written.
        var random = SeededRandom(seed: 1)
        let kept = fileSystem.crashImage(powerLoss: false, random: &random).file(Self.path, "f")!.bytes
        #expect(kept[0 ..< 3 * Self.page].allSatisfy { $0 == 7 })
    }

    @Test("fsync of a stream makes its contents and length durable")
    func streamFsync() throws {
        let fileSystem = SimulatedFileSystem()
        let directory = try fileSystem.openDirectory(Self.path)
        let stream = try directory.createStream("s")
        try append(stream, bytes(5000, 1))
        try stream.sync()
        try directory.sync()
        try append(stream, bytes(5000, 2))
        var lengths = Set<Int>()
        for image in powerLossImages(fileSystem) {
            let file = image.file(Self.path, "s")!
            lengths.insert(file.length)
            #expect(file.bytes[0 ..< 5000].allSatisfy { $0 == 1 }, "what fsync covered survives")
        }
        #expect(lengths == [5000, 10000], "the unsynced length may or may not survive")
    }

    @Test("creations, renames and removals are durable only after the directory's fsync")
    func directoryOperations() throws {
        func changed(syncedAfter: Bool) throws -> SimulatedFileSystem {
            let fileSystem = SimulatedFileSystem()
            let directory = try fileSystem.openDirectory(Self.path)
            _ = try directory.createFile("kept", length: Self.page)
            _ = try directory.createFile("old", length: Self.page)
            try directory.sync()
            _ = try directory.createFile("new", length: Self.page)
            try directory.rename("old", to: "renamed")
            try directory.remove("kept")
            if syncedAfter { try directory.sync() }
            return fileSystem
        }
        var seen = Set<[String]>()
        for image in powerLossImages(try changed(syncedAfter: false)) {
            let names = image.names(in: Self.path)
            seen.insert(names)
            #expect(names.contains("old") != names.contains("renamed"), "a rename is kept or not, never both names or neither: \(names)")
        }
        #expect(seen.contains(["kept", "old"]), "none of the changes")
        #expect(seen.contains(["new", "renamed"]), "all of them")
        #expect(seen.count > 2)
        for image in powerLossImages(try changed(syncedAfter: true), count: 20) {
            #expect(image.names(in: Self.path) == ["new", "renamed"])
        }
    }

    @Test("a crash at operation N: it does not happen, it and everything after fail with EIO, nothing more lands")
    func crashAtOperation() throws {
        var plan = SimulatedFileSystem.Plan()
        plan.crashAtOperation = 3
        let fileSystem = SimulatedFileSystem(plan: plan)
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: Self.page)  // 1
        try write(file, [1], at: 0)  // 2
        #expect(throws: StorageError.self) { try write(file, [2], at: 1) }  // 3: the crash
        #expect(fileSystem.crashed?.operation == 3)
        #expect(throws: StorageError.self) { try write(file, [3], at: 2) }
        #expect(throws: StorageError.self) { try file.sync(offset: 0, length: 1) }
        #expect(throws: StorageError.self) { try directory.list() }
        #expect(throws: StorageError.self) { _ = try directory.createFile("g", length: 1) }
        var random = SeededRandom(seed: 1)
        let content = fileSystem.crashImage(powerLoss: false, random: &random).file(Self.path, "f")!.bytes
        #expect(Array(content[0 ..< 3]) == [1, 0, 0])
        #expect(fileSystem.operationCount == 3)
    }

    @Test("a torn write: the crash cuts the write after some prefix of its bytes")
    func tornWrite() throws {
        var prefixes = Set<Int>()
        for seed in 0 ..< 50 as Range<UInt64> {
            var plan = SimulatedFileSystem.Plan()
            plan.crashAtOperation = 1
            plan.tearCrashingWrite = true
            let fileSystem = SimulatedFileSystem(plan: plan, seed: seed)
            let directory = try fileSystem.openDirectory(Self.path)
            let file = try directory.createFile("f", length: Self.page)  // waits for a write
            #expect(throws: StorageError.self) { try write(file, bytes(100, 9), at: 0) }
            var random = SeededRandom(seed: seed)
            let content = fileSystem.crashImage(powerLoss: false, random: &random).file(Self.path, "f")!.bytes
            let landed = content.prefix { $0 == 9 }.count
            #expect(content[landed...].allSatisfy { $0 == 0 })
            #expect(landed < 100)
            #expect(fileSystem.crashed?.tornAt == landed)
            prefixes.insert(landed)
        }
        #expect(prefixes.count > 10)
    }

    @Test("an injected failure fails one write or sync, then the file system works again")
    func injectedFailure() throws {
        var plan = SimulatedFileSystem.Plan()
        plan.failAtOperation = 2
        plan.failure = .noSpace
        let fileSystem = SimulatedFileSystem(plan: plan)
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: Self.page)  // 1
        #expect(throws: StorageError.diskFull(path: Self.path + "/f")) { try write(file, [1], at: 0) }  // 2
        try write(file, [2], at: 0)
        try file.sync(offset: 0, length: 1)
        #expect(fileSystem.crashed == nil)
        #expect(fileSystem.injectedFailure != nil)
    }

    @Test("the lock keeps a second opener out until it is released")
    func lock() throws {
        let fileSystem = SimulatedFileSystem()
        let first = try fileSystem.openDirectory(Self.path)
        let second = try fileSystem.openDirectory(Self.path)
        try first.lock()
        #expect(throws: StorageError.locked(path: Self.path)) { try second.lock() }
        #expect(fileSystem.isLocked(Self.path))
        first.unlock()
        try second.lock()
        second.unlock()
        #expect(!fileSystem.isLocked(Self.path))
    }

    @Test("createFile past the allocation budget fails with diskFull")
    func allocationBudget() throws {
        var plan = SimulatedFileSystem.Plan()
        plan.allocationBudget = 3 * Self.page
        let fileSystem = SimulatedFileSystem(plan: plan)
        let directory = try fileSystem.openDirectory(Self.path)
        _ = try directory.createFile("a", length: 2 * Self.page)
        #expect(throws: StorageError.diskFull(path: Self.path + "/b")) { _ = try directory.createFile("b", length: 2 * Self.page) }
        try directory.remove("a")
        _ = try directory.createFile("b", length: 2 * Self.page)
    }

    @Test("an image mounts again with everything durable, and a flipped bit is in it")
    func imageRoundTrip() throws {
        let fileSystem = SimulatedFileSystem()
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: 2 * Self.page)
        try write(file, bytes(10, 5), at: Self.page)
        var random = SeededRandom(seed: 3)
        var image = fileSystem.crashImage(powerLoss: false, random: &random)
        image.flipBit(Self.path, "f", bit: (Self.page + 3) * 8 + 1)
        let mounted = SimulatedFileSystem(image: image)
        let reopened = try mounted.openDirectory(Self.path).openFile("f", writable: false)
        let content = reopened.withBytes { Array($0) }
        #expect(content.count == 2 * Self.page)
        #expect(content[Self.page + 3] == 5 ^ 2)
        #expect(content[Self.page + 4] == 5)
        // Everything in a mounted image is durable: a power loss keeps it.
        var again = SeededRandom(seed: 4)
        #expect(mounted.crashImage(powerLoss: true, random: &again).file(Self.path, "f")!.bytes == content)
    }

    @Test("nextData reports the pages ever written; the rest is a hole")
    func holes() throws {
        let fileSystem = SimulatedFileSystem()
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: 8 * Self.page)
        try write(file, [1], at: 2 * Self.page + 10)
        try write(file, [2], at: 5 * Self.page)
        #expect(file.nextData(from: 0) == 2 * Self.page)
        #expect(file.nextData(from: 2 * Self.page + 100) == 2 * Self.page + 100)
        #expect(file.nextData(from: 3 * Self.page) == 5 * Self.page)
        #expect(file.nextData(from: 6 * Self.page) == nil)
        #expect(file.nextData(from: 8 * Self.page) == nil)
    }

    @Test("misuse is recorded: a write to a closed file")
    func violations() throws {
        let fileSystem = SimulatedFileSystem()
        let directory = try fileSystem.openDirectory(Self.path)
        let file = try directory.createFile("f", length: Self.page)
        file.close()
        #expect(throws: StorageError.self) { try write(file, [1], at: 0) }
        #expect(fileSystem.violations.count == 1)
    }
}
