import HourglassCore
import HourglassStorage
import Logging

/// Opens a directory: takes its lock, replays the log into `wheel`, and returns the journal
/// that continues the log. In-flight timers (fired, never acknowledged) are due for redelivery
/// at once: their consumer went away with the previous process.
func _recover(
    path: String, configuration: Configuration, clock: any HourglassClock,
    into wheel: inout TimerWheel, report: inout RecoveryReport
) throws(HourglassError) -> any _Journal {
    let started = monotonicNanoseconds()
    let directory: any StorageDirectory
    do throws(StorageError) {
        directory = try configuration.fileSystem.openDirectory(path)
        try directory.lock()
    } catch {
        throw HourglassError(error)
    }
    var failure: HourglassError? = nil
    do throws(StorageError) {
        let recovery = LogRecovery(directory: directory, startSequence: 1, salvage: configuration.salvage)
        let tail = try recovery.run(report: &report) { record, _ in
            guard failure == nil else { return }
            do throws(TimerWheel.CapacityError) {
                try _replay(record, into: &wheel)
            } catch {
                failure = .capacityExceeded("recovering more timers than the engine can hold: \(error)")
            }
        }
        if failure == nil {
            let writer = try LogWriter(
                directory: directory, segmentLength: configuration.segmentBytes, tail: tail,
                clock: { [clock] in clock.now() })
            configuration.logger.info("hourglass opened", metadata: [
                "directory": "\(path)", "timers": "\(wheel.count)", "in_flight": "\(wheel.inFlightCount)",
                "recovery": "\(report)", "milliseconds": "\((monotonicNanoseconds() - started) / 1_000_000)",
            ])
            if !report.dropped.isEmpty {
                configuration.logger.warning("hourglass salvage dropped damaged log data", metadata: ["report": "\(report)"])
            }
            return _WALJournal(writer: writer, directory: directory)
        }
    } catch {
        failure = HourglassError(error)
    }
    directory.unlock()
    throw failure!
}

/// Applies one log record to the wheel. Every record is idempotent: replaying a record whose
/// effect is already there changes nothing.
@inline(__always)
func _replay(_ record: RecordView, into wheel: inout TimerWheel) throws(TimerWheel.CapacityError) {
    switch record.type {
    case .schedule:
        _ = try wheel.schedule(id: record.id, deadline: record.deadline, payload: record.payload, attempt: record.attempt)
    case .cancel, .ack:
        wheel.cancel(id: record.id)
    case .fire:
        guard let handle = wheel.lookup(id: record.id) else { return }
        wheel.detach(handle)
        wheel.setAttempt(record.attempt, of: handle)
        wheel.markInFlight(handle, redeliverAt: 0)
    case .retry:
        guard let handle = wheel.lookup(id: record.id) else { return }
        wheel.rearm(handle, deadline: record.deadline, attempt: record.attempt)
    }
}
