import HourglassCore
import HourglassStorage

/// How a directory is split into partitions (see `Docs/PARTITIONS.md`).
///
/// One partition: the directory is the engine's, as it always was. Several: the directory holds
/// `PARTITIONS` (the count, written once when the directory is created) and one subdirectory per
/// partition, `partition-000`, `partition-001`, ..., each an engine directory of its own (its own
/// lock, log and checkpoints). An id belongs to one partition for good: `Partitioning.index`.
package enum Partitioning {
    /// The file that records the count.
    static let manifestName = "PARTITIONS"
    /// The most partitions a directory may have.
    static let maxCount = 256
    /// The key of the id hash that picks a partition: fixed, since the partition of an id is
    /// part of the directory's format ("Hourglas").
    static let hashKey: UInt64 = 0x7361_6C67_7275_6F48

    /// The partition of `id` among `count`: the id's hash scaled to `0 ..< count` (the high
    /// word of hash × count). Never changes for a given id and count.
    @inline(__always)
    package static func index(of id: UnsafeRawBufferPointer, count: Int) -> Int {
        if count == 1 { return 0 }
        return Int(truncatingIfNeeded: hashID(id, seed: hashKey).multipliedFullWidth(by: UInt64(count)).high)
    }

    @inline(__always)
    package static func index(of id: [UInt8], count: Int) -> Int {
        if count == 1 { return 0 }
        return id.withUnsafeBytes { index(of: $0, count: count) }
    }

    static func subdirectoryName(_ index: Int) -> String {
        let digits = String(index)
        return "partition-" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }

    /// The directories of the partitions of `path`, creating the layout when the directory is
    /// new. Refuses a directory created with another count, with an error that says both.
    static func directories(at path: String, count: Int, fileSystem: any StorageFileSystem) throws(HourglassError) -> [String] {
        do {
            let root = try fileSystem.openDirectory(path)
            let names = try root.list()
            let recorded = try recordedCount(in: root, names: names)
            let holdsLog = names.contains { SegmentName.number($0) != nil || CheckpointName.startSequence($0) != nil }
            switch (recorded, count) {
            case (nil, 1):
                return [path]
            case let (nil, wanted):
                if holdsLog {
                    throw HourglassError.invalidConfiguration(
                        "\(path) holds one partition (its log is in the directory itself), not \(wanted): open it with partitions = 1")
                }
                try root.lock()
                defer { root.unlock() }
                // Another opener may have created the layout while this one waited for the lock.
                if let other = try recordedCount(in: root, names: try root.list()), other != wanted {
                    throw HourglassError.invalidConfiguration("\(path) was created with \(other) partitions, not \(wanted)")
                }
                for index in 0 ..< wanted { _ = try fileSystem.openDirectory(path + "/" + subdirectoryName(index)) }
                let stream = try root.createStream(manifestName + ".tmp")
                let text = Array("hourglass partitions \(wanted)\n".utf8)
                try text.withUnsafeBytes { try stream.append($0) }
                try stream.sync()
                stream.close()
                try root.rename(manifestName + ".tmp", to: manifestName)
                try root.sync()
                return (0 ..< wanted).map { path + "/" + subdirectoryName($0) }
            case let (recorded?, wanted):
                guard recorded == wanted else {
                    throw HourglassError.invalidConfiguration("\(path) was created with \(recorded) partitions, not \(wanted): open it with partitions = \(recorded)")
                }
                return (0 ..< wanted).map { path + "/" + subdirectoryName($0) }
            }
        } catch {
            throw hourglassError(error)
        }
    }

    /// The partitions' directories of an existing directory, when it is partitioned (nil when it
    /// is one engine's directory, or missing). Creates nothing: for the read-only commands.
    static func existingDirectories(at path: String) throws(HourglassError) -> [String]? {
        guard fileExists(path + "/" + manifestName) else { return nil }
        do {
            let root = try PosixFileSystem().openDirectory(path)
            guard let count = try recordedCount(in: root, names: [manifestName]) else { return nil }
            return (0 ..< count).map { path + "/" + subdirectoryName($0) }
        } catch {
            throw hourglassError(error)
        }
    }

    /// What the layout's untyped storage calls threw, as the engine's error.
    private static func hourglassError(_ error: any Error) -> HourglassError {
        switch error {
        case let error as HourglassError: return error
        case let error as StorageError: return HourglassError(error)
        default: return .invalidConfiguration("\(error)")
        }
    }

    /// The count `PARTITIONS` records, nil without one.
    private static func recordedCount(in root: any StorageDirectory, names: [String]) throws -> Int? {
        guard names.contains(manifestName) else { return nil }
        let file = try root.openFile(manifestName, writable: false)
        defer { file.close() }
        let text = file.withBytes { String(decoding: $0, as: UTF8.self) }
        let prefix = "hourglass partitions "
        guard text.hasPrefix(prefix), text.hasSuffix("\n"), let count = Int(text.dropFirst(prefix.count).dropLast()),
              count >= 1 && count <= maxCount
        else {
            throw HourglassError.corruption(file: root.path + "/" + manifestName, offset: 0,
                                            reason: "not a partition count (expected \"\(prefix)N\\n\", N 1 ... \(maxCount))")
        }
        return count
    }
}

extension RecoveryReport {
    /// Adds what recovery found in another partition: counts add up, torn tails, drops and
    /// damaged checkpoints are listed together (each names its file).
    mutating func merge(_ other: RecoveryReport) {
        segments += other.segments
        frames += other.frames
        records += other.records
        applied += other.applied
        if tornTail == nil { tornTail = other.tornTail }
        dropped += other.dropped
        logBytes += other.logBytes
        logRawBytes += other.logRawBytes
        segmentFiles += other.segmentFiles
        obsoleteSegments += other.obsoleteSegments
        checkpointSequence = [checkpointSequence, other.checkpointSequence].compactMap { $0 }.max()
        checkpointTimers += other.checkpointTimers
        damagedCheckpoints += other.damagedCheckpoints
    }
}

extension HourglassEngine {
    /// The partition count a directory records (nil: one engine's directory, or none yet): the
    /// command's default for `--partitions`.
    package static func recordedPartitions(at path: String) throws(HourglassError) -> Int? {
        try Partitioning.existingDirectories(at: path)?.count
    }
}
