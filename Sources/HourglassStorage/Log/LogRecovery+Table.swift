import HourglassCore

// The decision table of `Docs/RECOVERY.md` ("Decision table (the write-ahead log)"): what the
// walk can find, and the decision for each. Rows 16 and 20 are decided as the segments are
// opened and read (`LogRecovery+Segments.swift`); row 17 is the directory's lock, taken before
// recovery runs.

extension LogRecovery {
    /// Where the walk looks next.
    enum Step {
        /// The start of segment `index`: its number, then its header.
        case segment(Int)
        /// The header of segment `index`, its number checked.
        case header(Int)
        /// The reader's place: the next frame.
        case frame
    }

    /// What the walk found: the "case" column of the table.
    enum Finding {
        /// A sound segment header where the log needs it (rows 2, 20): its frames are read.
        case segmentHeader(index: Int)
        /// The next frame, in sequence (row 2, and every row's frames before its damage).
        case frame(FrameDecoder.Frame)
        /// Row 2: a segment's frames end here, and only zeros follow in it.
        case endOfFrames(Place)
        /// Row 9: a blank segment after the newest segment with a header, and no frames in it.
        case spares(from: Int)
        /// Row 12: segment numbers missing before segment `index`.
        case missingSegments(index: Int)
        /// Rows 3–8, 10, 11, 13–15, 18, 19: damage, decided by what the log after it proves.
        case damage(Damage)
    }

    /// Damage at a place of the log: what it is, and the sequence number the log needed there.
    struct Damage {
        enum Kind {
            /// Rows 3, 4, 6, 6', 18, 19: a frame that does not decode.
            case badFrame
            /// Row 7: a frame that decodes but is not the next in sequence.
            case outOfSequence
            /// Rows 5, 6, 8: non-zero bytes after a segment's last frame (in an older segment:
            /// an intact frame after zeros, a frame gone to zeros before it).
            case bytesAfterFrames
            /// Rows 10, 11, 20: a segment header that does not parse (or names a version this
            /// build does not read).
            case damagedHeader
            /// Rows 11, 15: an all-zero segment header with frames in its segment, or before
            /// segments with headers.
            case blankHeader
            /// Row 13: a sound header whose first sequence number is not where the log is.
            case sequenceGap
            /// Row 14: a sound header naming another segment number or size than its file.
            case headerMismatch
        }

        var kind: Kind
        var place: Place
        var reason: String
        var sequence: UInt64

        /// The bytes known to be bad, if the kind says: a segment header's, or none for a sound
        /// header that starts at the wrong sequence number. Nil for damage among frames: it
        /// reaches to the next intact frame.
        var bytes: Int? {
            switch kind {
            case .damagedHeader, .blankHeader, .headerMismatch: LogFormat.segmentHeaderLength
            case .sequenceGap: 0
            case .badFrame, .outOfSequence, .bytesAfterFrames: nil
            }
        }
    }

    /// What the table decides about damage, from what the log after it proves (`judge`).
    enum Decision {
        /// Rows 3, 4, 5, 6', 10, 19: nothing after the damage proves it durable: a torn tail.
        case tornTail
        /// Rows 6, 7, 11, 13–15, 18: proven durable, so corruption; salvage resumes at `resumeAt`
        /// (an intact unchained frame), dropping the intact chained frames from `orphans` on.
        case corruption(resumeAt: Position, orphans: Position?)
        /// Rows 8, 18: proven durable by `evidence`, and no unchained frame follows: corruption;
        /// salvage cuts the log there.
        case corruptionToTheEnd(evidence: String)
    }
}

extension LogRecovery.Walk {
    /// What the walk finds at `step`: nil when the segments run out.
    mutating func find(at step: LogRecovery.Step) -> LogRecovery.Finding? {
        switch step {
        case let .segment(index): findAtSegmentStart(index)
        case let .header(index): findInHeader(index)
        case .frame: findNextFrame()
        }
    }

    /// The decision for `finding`: where the walk goes on, or nil where the log ends.
    mutating func decide(_ finding: LogRecovery.Finding, apply: (RecordView, UInt64) -> Void) throws(StorageError) -> LogRecovery.Step? {
        switch finding {
        case let .segmentHeader(index): return startSegment(index)
        case let .frame(frame): return replay(frame, apply: apply)
        case let .endOfFrames(place): return continueAfterLastFrame(place)
        case .spares: return nil  // row 9: `tail` hands them to the writer
        case let .missingSegments(index): return try reportMissingSegments(index)
        case let .damage(damage):
            switch judge(damage) {
            case .tornTail: return cutTornTail(at: damage)
            case let .corruption(resume, orphans): return try refuseOrSkip(damage, resumingAt: resume, orphans: orphans)
            case let .corruptionToTheEnd(evidence): return try refuseOrCut(damage, evidence: evidence)
            }
        }
    }
}
