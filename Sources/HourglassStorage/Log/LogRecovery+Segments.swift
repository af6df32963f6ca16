import HourglassCore

extension LogRecovery {
    /// A segment file, opened, and what its header says.
    struct Segment {
        var number: UInt64
        var name: String
        var file: any StorageFile
        var header: SegmentHeader.ParseResult
        var hasHeader: Bool { if case .blank = header { return false } else { return true } }
        var validHeader: SegmentHeader? { if case let .valid(header) = header { return header } else { return nil } }

        /// How to read its frames: as its header says (row 20: a version 1 segment holds version 1
        /// frames); with a damaged header, any version, and compact frames' sequence numbers taken
        /// relative to `sequence` (the log's position).
        func context(at sequence: UInt64) -> FrameContext {
            validHeader.map { FrameContext.segment($0) } ?? FrameContext(version: nil, baseSequence: sequence)
        }
    }

    /// Opens the directory's segments into `segments`, by number (the caller closes them, also
    /// when this throws). Row 16: a `wal-*.log.tmp` is a segment whose preparation was
    /// interrupted, and is deleted.
    func openSegments(into segments: inout [Segment]) throws(StorageError) {
        var numbered: [(UInt64, String)] = []
        for name in try directory.list() {
            if name.hasPrefix(SegmentName.prefix) && name.hasSuffix(".tmp") {
                if !readOnly { try directory.remove(name) }
            } else if let number = SegmentName.number(name) {
                numbered.append((number, name))
            }
        }
        numbered.sort { $0.0 < $1.0 }
        for (number, name) in numbered {
            let file = try directory.openFile(name, writable: !readOnly)
            segments.append(Segment(number: number, name: name, file: file, header: file.withBytes { SegmentHeader.parse($0) }))
        }
    }

    /// Before the table applies: with a checkpoint at `startSequence`, the segments that end
    /// before it are covered: drops (and deletes) them. The segment holding `startSequence` must
    /// exist if any segment does.
    func dropCoveredSegments(_ segments: inout [Segment], report: inout RecoveryReport) throws(StorageError) {
        guard !segments.isEmpty else { return }
        var holding = segments.lastIndex { segment in
            if case let .valid(header) = segment.header { return header.firstSequence <= startSequence }
            return false
        }
        if holding == nil {
            let firstWithHeader = segments.firstIndex { $0.hasHeader }
            guard let first = firstWithHeader else { return }  // only spares
            switch segments[first].header {
            case .valid where first > 0:
                // Blank headers before it: the oldest of them lost its header (a power loss
                // before it was synced). Recovery decides about it there.
                holding = 0
            case let .valid(header):
                throw StorageError.corruption(
                    file: segments[first].file.path, offset: 0,
                    reason: "the log must start at sequence \(startSequence)\(startSequence > 1 ? " (the checkpoint's start)" : ""), but the oldest segment starts at \(header.firstSequence): a segment is missing")
            case .invalid:
                // The segment that should hold the start has a damaged header: recovery decides
                // about it there (a torn start of a segment, or corruption naming it).
                holding = first
            case .blank:
                return
            }
        }
        guard let holding, holding > 0 else { return }
        for segment in segments[..<holding] {
            segment.file.close()
            if !readOnly { try directory.remove(segment.name) }
            report.obsoleteSegments += 1
        }
        segments.removeFirst(holding)
    }
}
