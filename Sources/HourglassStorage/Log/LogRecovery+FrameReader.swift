import HourglassCore

extension LogRecovery {
    /// The frames of a segment from a place on, in order, each decoded once: the walk's only
    /// decoder. A chain is followed from frame to frame; moving the reader breaks it (every
    /// segment starts a chain of its own, and salvage resumes only at a frame that starts one).
    struct FrameReader: ~Copyable {
        /// What the reader found at its place.
        enum Item {
            /// A frame that decodes, which started at `offset`; the reader is past it.
            case frame(FrameDecoder.Frame, offset: Int)
            /// Bytes at `offset` that are not a frame that decodes (the reader stays there).
            case failure(offset: Int, reason: String)
            /// No frame starts at `offset`: the segment ends, or a frame header's worth of zeros.
            case end(offset: Int)
        }

        private var decoder = FrameDecoder()
        private var context = FrameContext(version: nil, baseSequence: 1)
        /// Where the next frame starts.
        private(set) var offset = 0

        init() {}

        /// Reads `segment` from `offset`, its compact frames' sequence numbers taken as from
        /// `sequence` if its header cannot say.
        mutating func move(to offset: Int, in segment: Segment, sequence: UInt64) {
            self.offset = offset
            context = segment.context(at: sequence)
            decoder.breakChain()
        }

        /// The frame at the reader's place in `segment` (the one it was moved to), decoded.
        mutating func next(in segment: Segment) -> Item {
            let offset = offset
            guard offset + LogFormat.minFrameHeaderLength <= segment.file.length else { return .end(offset: offset) }
            let context = context
            let result = segment.file.withBytes { bytes -> Result<FrameDecoder.Frame, FrameFailure>? in
                if bytes[offset ..< offset + LogFormat.minFrameHeaderLength].allSatisfy({ $0 == 0 }) { return nil }
                return decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[offset...]), context: context)
            }
            switch result {
            case nil:
                return .end(offset: offset)
            case let .success(frame)?:
                self.offset = offset + frame.header.frameLength
                return .frame(frame, offset: offset)
            case let .failure(failure)?:
                return .failure(offset: offset, reason: failure.description)
            }
        }
    }
}
