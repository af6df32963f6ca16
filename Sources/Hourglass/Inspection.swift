import HourglassCore
import HourglassStorage

/// A timer as `HourglassEngine.inspect` finds it in a directory.
public struct TimerInfo: Sendable, Equatable {
    /// The timer's id.
    public var id: TimerID
    /// Its deadline (for a retried timer: the retry's time).
    public var deadline: Deadline
    /// Deliveries so far (0 for a timer never delivered).
    public var attempt: Int
    /// Its payload.
    public var payload: [UInt8]
    /// Delivered and not acknowledged when the directory was last written.
    public var inFlight: Bool
    /// For a recurring timer, its rule: "every 60000 ms", "cron '30 2 * * *' in Europe/Berlin",
    /// with the misfire policy when it is not the default. nil for a one-shot timer.
    public var recurrence: String? = nil
    /// For a recurring timer, the scheduled time of its current occurrence (nil for a one-shot timer).
    public var occurrence: Deadline? = nil
    /// For a recurring timer with a count, the occurrences left, the current one included (nil
    /// for a series without end and for a one-shot timer).
    public var remaining: Int? = nil
}

/// What a directory holds, read without changing it.
public struct DirectoryInspection: Sendable {
    /// Timers waiting for their deadline.
    public var pending: Int
    /// Timers delivered and not acknowledged when the directory was last written.
    public var inFlight: Int
    /// The earliest deadline among pending timers.
    public var nextDeadline: Deadline?
    /// Bytes of log frames on disk (since the newest checkpoint).
    public var logBytes: Int
    /// Log segment files (spare included).
    public var segments: Int
    /// The newest checkpoint's start sequence (nil without a checkpoint).
    public var checkpointSequence: UInt64?
    /// Uncompressed over stored bytes, over the checkpoint and the log read.
    public var compressionRatio: Double
    /// What reading the log found (torn tail, records, bytes).
    public var report: RecoveryReport
    /// Every timer, in deadline order (in-flight ones first), when asked for.
    public var timers: [TimerInfo]
    /// The bytes `compressionRatio` divides: as stored, and decompressed.
    var storedBytes = 0
    var rawBytes = 0
}

/// A problem `HourglassEngine.verify` found: where, and what.
public struct VerificationProblem: Sendable, Equatable, CustomStringConvertible {
    /// The damaged file.
    public var file: String
    /// Where, in bytes from the file's start.
    public var offset: Int64
    /// What is wrong there.
    public var reason: String
    /// `FILE at offset N: reason`.
    public var description: String { "\(file) at offset \(offset): \(reason)" }
}

extension HourglassEngine {
    /// Reads a directory without changing it: the state an engine would recover, counters, and
    /// optionally every timer. Takes the directory's lock for the duration, so it fails with
    /// `.directoryLocked` while an engine runs on it.
    ///
    /// - Parameters:
    ///   - path: the engine's directory.
    ///   - includeTimers: whether to list every timer in `timers` (in deadline order, in-flight
    ///     ones first); without it only the counts are computed.
    ///   - progress: called as the checkpoint and the log are read (see `DirectoryProgress`),
    ///     for a progress display on large directories.
    /// - Throws: `.directoryLocked` while an engine runs on it, `.corruption` (with the file and
    ///   offset), `.io`.
    public static func inspect(
        directory path: String, includeTimers: Bool = false, progress: ((DirectoryProgress) -> Void)? = nil
    ) throws(HourglassError) -> DirectoryInspection {
        guard let partitions = try Partitioning.existingDirectories(at: path) else {
            return try inspectOne(directory: path, includeTimers: includeTimers, progress: progress)
        }
        // A partitioned directory: every partition, as one.
        var merged: DirectoryInspection? = nil
        for partition in partitions {
            let one = try inspectOne(directory: partition, includeTimers: includeTimers, progress: progress)
            guard var sum = merged else {
                merged = one
                continue
            }
            sum.pending += one.pending
            sum.inFlight += one.inFlight
            sum.nextDeadline = [sum.nextDeadline, one.nextDeadline].compactMap { $0 }.min()
            sum.logBytes += one.logBytes
            sum.segments += one.segments
            sum.checkpointSequence = [sum.checkpointSequence, one.checkpointSequence].compactMap { $0 }.max()
            sum.storedBytes += one.storedBytes
            sum.rawBytes += one.rawBytes
            sum.compressionRatio = sum.storedBytes > 0 ? Double(sum.rawBytes) / Double(sum.storedBytes) : 1
            sum.report.merge(one.report)
            sum.timers += one.timers
            merged = sum
        }
        var result = merged!
        result.timers.sort { ($0.inFlight ? 0 : 1, $0.deadline) < ($1.inFlight ? 0 : 1, $1.deadline) }
        return result
    }

    private static func inspectOne(
        directory path: String, includeTimers: Bool, progress: ((DirectoryProgress) -> Void)?
    ) throws(HourglassError) -> DirectoryInspection {
        try _withLockedDirectory(path) { (directory) throws(HourglassError) in
            var throttle = ProgressThrottle(progress)
            var wheel = TimerWheel(now: 0)
            let rules = SeriesRules()
            var report = RecoveryReport()
            var stored = 0
            var raw = 0
            var startSequence: UInt64 = 1
            do {
                for sequence in CheckpointName.all(in: try directory.list()) {
                    do {
                        let reader = try CheckpointReader(directory: directory, name: CheckpointName.name(sequence))
                        let loader = CheckpointLoader(reader: reader, rules: rules)
                        let total = Int(reader.trailer.framesBytes)
                        throttle.note(.checkpoint, reader.file.path, 0, total)
                        while !loader.isDone {
                            try loader.loadSlice(into: &wheel, until: 0)  // one frame
                            throttle.note(.checkpoint, reader.file.path, reader.bytesRead, total)
                        }
                        stored += loader.storedBytes
                        raw += loader.rawBytes
                        report.checkpointSequence = sequence
                        report.checkpointTimers = loader.timersLoaded
                        startSequence = sequence
                        break
                    } catch {
                        report.damagedCheckpoints.append("\(error)")
                    }
                }
                var failure: HourglassError? = nil
                var recovery = LogRecovery(directory: directory, startSequence: startSequence, readOnly: true)
                if progress != nil {
                    recovery.progress = { done, total in throttle.note(.log, directory.path, done, total) }
                }
                _ = try recovery.run(report: &report) { record, _ in
                    do throws(HourglassError) { try _replay(record, into: &wheel, rules: rules, loader: nil) } catch { failure = error }
                }
                if let failure { throw failure }
            } catch let error as StorageError {
                throw HourglassError(error)
            } catch let error as HourglassError {
                throw error
            } catch {
                throw .stopped(reason: "\(error)")
            }
            stored += report.logBytes
            raw += report.logRawBytes
            var timers: [TimerInfo] = []
            if includeTimers {
                wheel.forEachHandle { handle in
                    var info = TimerInfo(
                        id: TimerID(bytes: wheel.id(of: handle)), deadline: Deadline(millisecondsSinceEpoch: wheel.deadline(of: handle)),
                        attempt: Int(wheel.attempt(of: handle)), payload: wheel.withUserPayload(of: handle) { Array($0) },
                        inFlight: wheel.isInFlight(handle))
                    if wheel.isSeries(handle) {
                        let trailer = wheel.seriesTrailer(of: handle)
                        info.recurrence = rules[trailer.rule].description
                        info.occurrence = Deadline(millisecondsSinceEpoch: trailer.occurrence)
                        info.remaining = trailer.remaining == 0 ? nil : Int(trailer.remaining)
                    }
                    timers.append(info)
                }
                timers.sort { ($0.inFlight ? 0 : 1, $0.deadline) < ($1.inFlight ? 0 : 1, $1.deadline) }
            }
            var next: Int64? = nil
            wheel.forEachHandle { handle in
                if !wheel.isInFlight(handle) { next = min(next ?? .max, wheel.deadline(of: handle)) }
            }
            return DirectoryInspection(
                pending: wheel.count - wheel.inFlightCount, inFlight: wheel.inFlightCount,
                nextDeadline: next.map { Deadline(millisecondsSinceEpoch: $0) },
                logBytes: report.logBytes, segments: report.segmentFiles, checkpointSequence: report.checkpointSequence,
                compressionRatio: stored > 0 ? Double(raw) / Double(stored) : 1, report: report, timers: timers,
                storedBytes: stored, rawBytes: raw)
        }
    }

    /// Checks every checksum of every checkpoint and log segment, and that every frame decodes.
    /// Returns the problems found (empty when all hold), each with its file and offset. Changes
    /// nothing; takes the directory's lock.
    ///
    /// - Parameters:
    ///   - path: the engine's directory.
    ///   - progress: called as each checkpoint and the log are read (see `DirectoryProgress`),
    ///     for a progress display on large directories.
    /// - Throws: `.directoryLocked` while an engine runs on it, `.io` when a file cannot be
    ///   read (damage is reported in the result, not thrown).
    public static func verify(directory path: String, progress: ((DirectoryProgress) -> Void)? = nil) throws(HourglassError) -> [VerificationProblem] {
        let partitions: [String]?
        do throws(HourglassError) {
            partitions = try Partitioning.existingDirectories(at: path)
        } catch {
            if case let .corruption(file, offset, reason) = error { return [VerificationProblem(file: file, offset: offset, reason: reason)] }
            throw error
        }
        guard let partitions else { return try verifyOne(directory: path, progress: progress) }
        var problems: [VerificationProblem] = []
        for partition in partitions { problems += try verifyOne(directory: partition, progress: progress) }
        return problems
    }

    private static func verifyOne(directory path: String, progress: ((DirectoryProgress) -> Void)?) throws(HourglassError) -> [VerificationProblem] {
        try _withLockedDirectory(path) { (directory) throws(HourglassError) in
            var throttle = ProgressThrottle(progress)
            var problems: [VerificationProblem] = []
            var newest: UInt64? = nil
            do throws(StorageError) {
                let names = try directory.list()
                for name in names where name.hasSuffix(".tmp") {
                    problems.append(.init(file: directory.path + "/" + name, offset: 0,
                                          reason: "an unfinished file from an interrupted write (opening the directory deletes it)"))
                }
                for sequence in CheckpointName.all(in: names) {
                    do throws(StorageError) {
                        let reader = try CheckpointReader(directory: directory, name: CheckpointName.name(sequence))
                        let total = Int(reader.trailer.framesBytes)
                        throttle.note(.checkpoint, reader.file.path, 0, total)
                        while try reader.nextFrame({ _ in }) {
                            throttle.note(.checkpoint, reader.file.path, reader.bytesRead, total)
                        }
                        if newest == nil { newest = sequence }
                    } catch {
                        if case let .corruption(file, offset, reason) = error {
                            problems.append(.init(file: file, offset: offset, reason: reason))
                        } else {
                            throw error
                        }
                    }
                }
                var report = RecoveryReport()
                var recovery = LogRecovery(directory: directory, startSequence: newest ?? 1, salvage: true, readOnly: true)
                if progress != nil {
                    recovery.progress = { done, total in throttle.note(.log, directory.path, done, total) }
                }
                _ = try recovery.run(report: &report) { _, _ in }
                for dropped in report.dropped {
                    problems.append(.init(file: dropped.file, offset: dropped.offset, reason: dropped.reason))
                }
                if let torn = report.tornTail {
                    problems.append(.init(file: torn.file, offset: torn.offset,
                                          reason: "torn tail, \(torn.bytes) bytes: \(torn.reason) (a crash interrupted this write; opening the directory cuts it)"))
                }
            } catch {
                if case let .corruption(file, offset, reason) = error {
                    problems.append(.init(file: file, offset: offset, reason: reason))
                } else {
                    throw HourglassError(error)
                }
            }
            return problems
        }
    }
}

/// Runs `body` with the directory locked; a running engine makes it fail with `.directoryLocked`.
func _withLockedDirectory<R>(_ path: String, _ body: (any StorageDirectory) throws(HourglassError) -> R) throws(HourglassError) -> R {
    let directory: any StorageDirectory
    do throws(StorageError) {
        guard fileExists(path) else { throw StorageError.io(operation: "open", path: path, errno: .noSuchFileOrDirectory) }
        directory = try PosixFileSystem().openDirectory(path)
        try directory.lock()
    } catch {
        throw HourglassError(error)
    }
    defer { directory.unlock() }
    return try body(directory)
}

#if canImport(Glibc)
import Glibc
#endif

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}
