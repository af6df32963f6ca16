import HourglassCore

// The "decision" column of the table: one function per decision, named after it, each saying
// which rows it decides. Each returns where the walk goes on, or nil where the log ends.

extension LogRecovery.Walk {
    /// A sound header where the log needs it (rows 2, 20): its frames are read from the first,
    /// and the log's sequence starts at its first if nothing came before.
    mutating func startSegment(_ index: Int) -> LogRecovery.Step {
        if expected == nil { expected = segments[index].validHeader?.firstSequence }
        startReading(index, at: LogFormat.segmentHeaderLength)
        return .frame
    }

    /// Row 2 (and the frames before any damage): the next frame in sequence is replayed, its
    /// records applied from the checkpoint's start sequence on.
    mutating func replay(_ frame: FrameDecoder.Frame, apply: (RecordView, UInt64) -> Void) -> LogRecovery.Step {
        let startSequence = recovery.startSequence
        var sequence = frame.header.firstSequence
        var applied = 0
        do {
            // The decoder has walked these records once already: they are well-formed.
            _ = try RecordDecoder.forEach(in: frame.body) { record in
                if sequence >= startSequence {
                    apply(record, sequence)
                    applied += 1
                }
                sequence += 1
            }
        } catch {
            preconditionFailure("the records of a decoded frame fail to decode: \(error)")
        }
        report.applied += applied
        report.frames += 1
        report.logBytes += frame.header.frameLength
        report.logRawBytes += frame.header.rawLength
        report.records += frame.header.recordCount
        expected = frame.header.nextSequence
        noteProgress(at: reader.offset)
        return .frame
    }

    /// Row 2: the frames end and only zeros follow: the log continues here unless a later
    /// segment holds more.
    mutating func continueAfterLastFrame(_ place: LogRecovery.Place) -> LogRecovery.Step {
        end = place
        return .segment(place.index + 1)
    }

    /// Row 12: segment numbers are missing before segment `index`: corruption (salvage reports
    /// it and goes on to the segment's header, which tells the sequence numbers lost: row 13).
    mutating func reportMissingSegments(_ index: Int) throws(StorageError) -> LogRecovery.Step {
        let segment = segments[index]
        let missing = "segments \(segments[index - 1].number + 1) ..< \(segment.number) are missing"
        try reportCorruption(at: LogRecovery.Place(index: index, offset: 0), missing)
        return .header(index)
    }

    /// Rows 3, 4, 5, 6', 10, 19: nothing after the damage proves it was durable: a torn tail.
    /// The walk ends; `cutLog` cuts the log at the damage.
    mutating func cutTornTail(at damage: LogRecovery.Damage) -> LogRecovery.Step? {
        cut = (damage.place, damage.reason)
        return nil
    }

    /// Rows 6, 7, 11, 13, 14, 15, 18: an intact frame or segment header after the damage proves
    /// it was durable: corruption. Refused unless salvaging; salvage reports the damage (and, in
    /// an entry of their own, the intact chained frames it takes with it: row 18) and resumes at
    /// `resume`, the first intact unchained frame after it.
    mutating func refuseOrSkip(
        _ damage: LogRecovery.Damage, resumingAt resume: LogRecovery.Position, orphans: LogRecovery.Position?
    ) throws(StorageError) -> LogRecovery.Step {
        let place = damage.place
        let stop = orphans ?? resume
        let length = stop.index == place.index ? stop.offset - place.offset : segments[place.index].file.length - place.offset
        try reportCorruption(at: place, "\(damage.reason); a valid frame at \(name(resume)) follows that was written once sequence \(damage.sequence) was durable, so this is not a torn write",
                             lost: stop.firstSequence > damage.sequence ? damage.sequence ..< stop.firstSequence : nil, bytes: damage.bytes ?? length)
        if let orphans { dropOrphans(orphans, before: resume) }
        expected = resume.firstSequence
        if reading == resume.index {
            reader.move(to: resume.offset, in: segments[resume.index], sequence: needed)
        } else {
            startReading(resume.index, at: resume.offset)
        }
        return .frame
    }

    /// Row 18: the intact chained frames from `orphans` on cannot be decoded without the damaged
    /// frame their chain passes through; they are dropped up to `resume` (or to the last of them
    /// in their segment) and reported apart, so that every dropped record is accounted for.
    mutating func dropOrphans(_ orphans: LogRecovery.Position, before resume: LogRecovery.Position) {
        let holder = segments[orphans.index]
        let end = resume.index == orphans.index ? resume.offset : (lastIntactFrameEnd(holder, from: orphans) ?? holder.file.length)
        report.dropped.append(.init(
            file: holder.file.path, offset: Int64(orphans.offset), bytes: end - orphans.offset,
            // With the holder's header damaged, compact frames before the resume point were read
            // against a guessed base and may seem to come after it: then how many records they
            // held is not known (0), and recovery must not trap on the difference.
            firstSequence: orphans.firstSequence,
            records: resume.firstSequence >= orphans.firstSequence ? Int(resume.firstSequence - orphans.firstSequence) : 0,
            reason: "chained frames that cannot be decoded without the damaged frame before them (their chain restarts at \(name(resume)))"))
    }

    /// Rows 8 and 18 (no unchained frame after the damage): `evidence` proves the damage was
    /// durable, and there is nothing to resume at: corruption. Refused unless salvaging; salvage
    /// reports it and cuts the log there, as a torn tail is cut.
    mutating func refuseOrCut(_ damage: LogRecovery.Damage, evidence: String) throws(StorageError) -> LogRecovery.Step? {
        let place = damage.place
        try reportCorruption(at: place, "\(damage.reason); \(evidence) once sequence \(damage.sequence) was durable, so this is not a torn write; no unchained frame follows to resume at",
                             bytes: damage.bytes ?? (segments[place.index].file.length - place.offset))
        return cutTornTail(at: damage)
    }

    /// Damage that is not a torn tail: an error naming the file and offset, or in salvage mode
    /// an entry in the report (the sequence numbers `lost` are gone).
    mutating func reportCorruption(at place: LogRecovery.Place, _ reason: String, lost: Range<UInt64>? = nil, bytes: Int = 0) throws(StorageError) {
        let file = segments[place.index].file.path
        guard recovery.salvage else {
            throw StorageError.corruption(file: file, offset: Int64(place.offset), reason: reason + " (open with salvage to skip the damage and report what is lost)")
        }
        let lost = lost ?? 0 ..< 0
        report.dropped.append(.init(file: file, offset: Int64(place.offset), bytes: bytes,
                                    firstSequence: lost.lowerBound, records: lost.count, reason: reason))
    }
}
