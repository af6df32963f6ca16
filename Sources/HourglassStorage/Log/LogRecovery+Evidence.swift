import HourglassCore

// What the log after damage proves: RECOVERY.md's rule that decides everything ("damage is
// corruption only if the log proves that the damaged bytes were durable"), and the scan for
// intact frames it rests on.

extension LogRecovery.Walk {
    /// The decision about `damage`: if an intact frame after it (any frame: a chained one's header
    /// and checksum can be checked without its chain) or a later segment's header was written once
    /// `damage.sequence` was durable, the damage destroyed durable data: corruption, and salvage
    /// resumes at the first intact unchained frame, which decodes alone. Otherwise only data
    /// never synced follows, which a crash may lose or tear: a torn tail.
    func judge(_ damage: LogRecovery.Damage) -> LogRecovery.Decision {
        let expected = damage.sequence
        let place = damage.place
        var firstIntact: LogRecovery.Position? = nil
        var resumable: LogRecovery.Position? = nil
        var evidence: String? = nil
        var next = nextIntactFrame(place.index, max(place.offset + 1, LogFormat.segmentHeaderLength), after: expected)
        while let frame = next {
            if firstIntact == nil { firstIntact = frame }
            if resumable == nil && !frame.header.isChained { resumable = frame }
            if evidence == nil && frame.header.durableSequence > expected {
                evidence = "a valid \(frame.header.isChained ? "chained " : "")frame at \(name(frame)) was written"
            }
            if evidence != nil && resumable != nil { break }
            next = nextIntactFrame(frame.index, frame.offset + frame.header.frameLength, after: expected)
        }
        // A later segment started once `expected` was durable is evidence too.
        if evidence == nil {
            for later in segments[(place.index + 1)...] {
                if case let .valid(header) = later.header, header.durableSequence > expected {
                    evidence = "\(later.name) was started"
                    break
                }
            }
        }
        guard let evidence else { return .tornTail }
        guard let resumable else { return .corruptionToTheEnd(evidence: evidence) }
        let orphans = firstIntact.flatMap { $0.place == resumable.place ? nil : $0 }
        return .corruption(resumeAt: resumable, orphans: orphans)
    }

    /// The first intact frame at or after (`index`, `offset`) whose records come after sequence
    /// `after` (in this segment from `offset`, in later ones from their first frame).
    func nextIntactFrame(_ index: Int, _ offset: Int, after: UInt64) -> LogRecovery.Position? {
        var decoder = FrameDecoder()
        // Spares are read too (a segment whose header was destroyed looks like one), but the
        // file system tells that a true spare holds no data, so that costs one call.
        for i in index ..< segments.count {
            let file = segments[i].file
            let start = i == index ? max(offset, LogFormat.segmentHeaderLength) : LogFormat.segmentHeaderLength
            let context = segments[i].context(at: after)
            let found = file.withBytes { bytes -> (Int, FrameHeader)? in
                var position = start
                let end = bytes.count - LogFormat.minFrameHeaderLength
                while position <= end {
                    // Skip never-written stretches of the file (holes of the preallocated
                    // segment) by asking the file system where data is, before touching a block
                    // (reading a hole through the mapping would fill the page cache with zeros),
                    // and zeros a word at a time.
                    if position & (LogRecovery.block - 1) == 0 {
                        guard let data = file.nextData(from: position) else { return nil }
                        if data > position {
                            position = data & ~(LogRecovery.block - 1)
                            continue
                        }
                    }
                    // Whole words only when aligned, so no read crosses into the next block.
                    if position & 7 == 0 && position + 8 <= bytes.count && bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self) == 0 {
                        position += 8
                        continue
                    }
                    if bytes[position] == LogFormat.compactFrameMagic
                        || (position + 4 <= bytes.count && bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self) == LogFormat.frameMagic.littleEndian),
                       let header = Self.intactFrame(UnsafeRawBufferPointer(rebasing: bytes[position...]), context: context, decoder: &decoder),
                       header.firstSequence >= after {
                        return (position, header)
                    }
                    position += 1
                }
                return nil
            }
            if let (position, header) = found { return LogRecovery.Position(index: i, offset: position, header: header) }
        }
        return nil
    }

    /// The header of the intact frame at the start of `bytes`, if there is one: an unchained
    /// frame must decode; a chained one (whose chain may be lost) must pass its checksum.
    static func intactFrame(_ bytes: UnsafeRawBufferPointer, context: FrameContext, decoder: inout FrameDecoder) -> FrameHeader? {
        guard case let .success(header) = FrameDecoder.check(bytes, context: context) else { return nil }
        if header.isChained { return header }
        guard case .success = decoder.decode(bytes, context: context) else { return nil }
        return header
    }

    /// The end of the last intact frame of `segment` from `start` on (the chained frames that
    /// run to its end).
    func lastIntactFrameEnd(_ segment: LogRecovery.Segment, from start: LogRecovery.Position) -> Int? {
        var end: Int? = nil
        segment.file.withBytes { bytes in
            var offset = start.offset
            let context = segment.context(at: start.firstSequence)
            while offset < bytes.count, case let .success(header) = FrameDecoder.check(UnsafeRawBufferPointer(rebasing: bytes[offset...]), context: context) {
                offset += header.frameLength
                end = offset
            }
        }
        return end
    }
}
