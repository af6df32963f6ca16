import ArgumentParser
import Hourglass

/// Exit codes: 0 success, 1 a problem found (verify), 2 the command could not run (bad
/// arguments, directory locked or unreadable).
enum ExitStatus {
    static let problems: Int32 = 1
    static let failure: Int32 = 2
}

/// Reports an engine error on stderr, as one line saying what and where, and exits 2.
func fail(_ error: HourglassError, _ directory: String) -> ExitCode {
    switch error {
    case .directoryLocked:
        printError("hourglass: \(directory) is locked by a running engine (hourglass run or an embedding service); stop it first, or point at another directory")
    default:
        printError("hourglass: \(error)")
    }
    return ExitCode(ExitStatus.failure)
}

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print every timer in a directory as one JSON line: id, deadline, attempt, payload.",
        discussion: """
            Timers in flight (delivered, not yet acknowledged) come first, then pending timers in \
            deadline order. Payloads that are not UTF-8 are printed as "payload_b64". Reads the \
            directory without changing it.
            """)

    @Option(help: "The engine's directory.")
    var dir: String

    func run() throws {
        let progressLine = ProgressLine("dump")
        let result = Result { () throws(HourglassError) in try HourglassEngine.inspect(directory: dir, includeTimers: true, progress: progressLine.show) }
        progressLine.finish()
        guard case let .success(inspection) = result else {
            if case let .failure(error) = result { throw fail(error, dir) }
            return
        }
        for timer in inspection.timers {
            var line = JSONLine()
            line.string("id", timer.id.string ?? timer.id.description)
            line.int("deadline", timer.deadline.millisecondsSinceEpoch)
            line.int("attempt", timer.attempt)
            if let text = String(validating: timer.payload, as: UTF8.self) {
                line.string("payload", text)
            } else {
                line.string("payload_b64", Base64.encode(timer.payload))
            }
            if timer.inFlight { line.bool("in_flight", true) }
            if let recurrence = timer.recurrence { line.string("recurrence", recurrence) }
            if let occurrence = timer.occurrence { line.int("occurrence", occurrence.millisecondsSinceEpoch) }
            if let remaining = timer.remaining { line.int("remaining", remaining) }
            writeAll(1, line.line)
        }
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print one JSON object describing a directory: pending, in_flight, next_deadline, log_bytes, segments, checkpoint_sequence, compression_ratio.",
        discussion: "Reads the directory without changing it.")

    @Option(help: "The engine's directory.")
    var dir: String

    func run() throws {
        let progressLine = ProgressLine("inspect")
        let result = Result { () throws(HourglassError) in try HourglassEngine.inspect(directory: dir, progress: progressLine.show) }
        progressLine.finish()
        guard case let .success(inspection) = result else {
            if case let .failure(error) = result { throw fail(error, dir) }
            return
        }
        var line = JSONLine()
        line.int("pending", inspection.pending)
        line.int("in_flight", inspection.inFlight)
        if let next = inspection.nextDeadline { line.int("next_deadline", next.millisecondsSinceEpoch) } else { line.null("next_deadline") }
        line.int("log_bytes", inspection.logBytes)
        line.int("segments", inspection.segments)
        if let sequence = inspection.checkpointSequence { line.int("checkpoint_sequence", Int64(sequence)) } else { line.null("checkpoint_sequence") }
        line.double("compression_ratio", (inspection.compressionRatio * 100).rounded() / 100)
        line.int("log_records", inspection.report.records)
        line.int("checkpoint_timers", inspection.report.checkpointTimers)
        if let torn = inspection.report.tornTail {
            line.string("torn_tail", "\(torn.file) at offset \(torn.offset): \(torn.bytes) bytes")
        }
        writeAll(1, line.line)
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every checksum of every checkpoint and log segment.",
        discussion: "Exit status 0 when all hold; 1 with one line per problem naming the file and offset; 2 when the directory cannot be read (or is locked).")

    @Option(help: "The engine's directory.")
    var dir: String

    func run() throws {
        let progressLine = ProgressLine("verify")
        let result = Result { () throws(HourglassError) in try HourglassEngine.verify(directory: dir, progress: progressLine.show) }
        progressLine.finish()
        guard case let .success(problems) = result else {
            if case let .failure(error) = result { throw fail(error, dir) }
            return
        }
        if problems.isEmpty {
            writeAll(1, "ok: every checksum holds in \(dir)\n")
            return
        }
        for problem in problems { writeAll(1, "\(problem.file) at offset \(problem.offset): \(problem.reason)\n") }
        printError("hourglass verify: \(problems.count) problem(s) in \(dir)")
        throw ExitCode(ExitStatus.problems)
    }
}

struct CheckpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Write a checkpoint of a directory and delete the log it covers.",
        discussion: "Opens the directory (recovering it), fires nothing, writes the checkpoint, closes.")

    @Option(help: "The engine's directory.")
    var dir: String

    func run() async throws {
        guard directoryExists(dir) else {
            printError("hourglass: \(dir) does not exist")
            throw ExitCode(ExitStatus.failure)
        }
        var configuration = Configuration.directory(dir, durability: .always)
        do throws(HourglassError) {
            configuration.partitions = try HourglassEngine.recordedPartitions(at: dir) ?? 1
        } catch {
            throw fail(error, dir)
        }
        configuration.deliversTimers = false
        configuration.maxPayloadBytes = TimerLimits.maxPayload
        let progressLine = ProgressLine("checkpoint")
        defer { progressLine.finish() }
        do throws(HourglassError) {
            let engine = try await HourglassEngine.open(configuration, progress: { progressLine.show($0) })
            // Writing the checkpoint (after the rest of the old one has loaded): elapsed time
            // and what the engine holds, redrawn while it works.
            let started = ContinuousClock.now
            let ticker = ProgressLine.enabled ? Task {
                while !Task.isCancelled {
                    let stats = await engine.stats()
                    let what = stats.loading ? "loading the previous checkpoint" : "writing"
                    progressLine.show(status: "\(what), \(stats.pending + stats.inFlight) timers, \(secondsSince(started))")
                    try? await Task.sleep(for: .milliseconds(200))
                }
            } : nil
            do throws(HourglassError) {
                try await engine.checkpoint()
            } catch {
                ticker?.cancel()
                try? await engine.close()
                throw error
            }
            ticker?.cancel()
            _ = await ticker?.value
            progressLine.finish()
            let stats = await engine.stats()
            try await engine.close()
            var line = JSONLine()
            line.string("event", "checkpoint")
            line.int("checkpoint_sequence", Int64(stats.checkpointSequence ?? 0))
            line.int("pending", stats.pending)
            line.int("in_flight", stats.inFlight)
            if let ms = stats.lastCheckpointMilliseconds { line.double("milliseconds", ms) }
            writeAll(1, line.line)
        } catch {
            throw fail(error, dir)
        }
    }
}

/// The largest limits, so that the commands accept any directory an engine wrote.
enum TimerLimits {
    static let maxPayload = (1 << 24) - 1
}

#if canImport(Glibc)
import Glibc
#endif

func directoryExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}
