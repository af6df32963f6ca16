import HourglassCore

// What the walk finds, place by place: the "case" column of the table. These only read (the
// reader moves past a frame it decodes); the decisions are in `LogRecovery+Decisions.swift`.

extension LogRecovery.Walk {
    /// At the start of segment `index`: a gap in the segment numbers (row 12), else what its
    /// header says.
    func findAtSegmentStart(_ index: Int) -> LogRecovery.Finding? {
        guard index < segments.count else { return nil }
        if index > 0 && segments[index].number != segments[index - 1].number + 1 { return .missingSegments(index: index) }
        return findInHeader(index)
    }

    /// What segment `index`'s header says: a sound header where the log needs it, spares
    /// (row 9), or damage: a header that does not parse (rows 10, 11, 20), a blank one with data
    /// after it (rows 11, 15), one naming another file (row 14) or another sequence (row 13).
    func findInHeader(_ index: Int) -> LogRecovery.Finding {
        let segment = segments[index]
        let start = LogRecovery.Place(index: index, offset: 0)
        switch segment.header {
        case .blank where index > lastWithHeader:
            // A spare, unless frames follow its missing header.
            guard let next = nextIntactFrame(index, LogFormat.segmentHeaderLength, after: needed), next.index == index else {
                return .spares(from: index)
            }
            return damage(.blankHeader, at: start, "the segment header is all zeros but frames follow")
        case .blank:
            return damage(.blankHeader, at: start, "the segment header is all zeros but newer segments follow")
        case let .invalid(reason):
            return damage(.damagedHeader, at: start, reason.description)
        case let .valid(header):
            let length = segment.file.length
            if header.segmentNumber != segment.number || header.segmentLength != UInt64(length) {
                return damage(.headerMismatch, at: start, "the header says segment \(header.segmentNumber) of \(header.segmentLength) bytes, the file is \(segment.name) of \(length) bytes")
            }
            if let expected, header.firstSequence != expected {
                return damage(.sequenceGap, at: start, "the segment starts at sequence \(header.firstSequence), expected \(expected)")
            }
            return .segmentHeader(index: index)
        }
    }

    /// The next frame of the segment being read: in sequence (replayed), out of sequence
    /// (row 7), one that does not decode (rows 3, 4, 6, 6', 18, 19), or the end of its frames.
    mutating func findNextFrame() -> LogRecovery.Finding {
        guard let index = reading else { preconditionFailure("a frame is read only in a segment being read") }
        let place = { (offset: Int) in LogRecovery.Place(index: index, offset: offset) }
        switch reader.next(in: segments[index]) {
        case let .frame(frame, offset):
            if let expected, frame.header.firstSequence != expected {
                return damage(.outOfSequence, at: place(offset), "the frame starts at sequence \(frame.header.firstSequence), expected \(expected)")
            }
            return .frame(frame)
        case let .failure(offset, reason):
            return damage(.badFrame, at: place(offset), reason)
        case let .end(offset):
            return findAfterFrames(place(offset))
        }
    }

    /// Where a segment's frames stop: only zeros may follow (row 2). In the newest segment
    /// anything else is a torn write (row 5) or damage (row 6); in an older one, an intact frame
    /// after zeros means a frame went to zeros before it (rows 6, 8).
    func findAfterFrames(_ place: LogRecovery.Place) -> LogRecovery.Finding {
        let segment = segments[place.index]
        let reason: String
        if place.index >= lastWithHeader {
            guard LogRecovery.lastNonZero(in: segment.file, from: place.offset) != nil else { return .endOfFrames(place) }
            reason = "an incomplete frame after the last complete one"
        } else {
            guard let next = nextIntactFrame(place.index, place.offset + 1, after: needed), next.index == place.index else {
                return .endOfFrames(place)
            }
            reason = "a valid frame hidden after zeroed bytes"
        }
        return damage(.bytesAfterFrames, at: place, reason)
    }

    /// Damage of `kind` at `place`, where the log needs `needed`.
    func damage(_ kind: LogRecovery.Damage.Kind, at place: LogRecovery.Place, _ reason: String) -> LogRecovery.Finding {
        .damage(LogRecovery.Damage(kind: kind, place: place, reason: reason, sequence: needed))
    }
}
