import HourglassCore

/// Where the writer continues after recovery.
package struct LogTail {
    /// The newest segment with a valid header, opened for writing, and the end of its frames.
    /// Its header is nil when it is damaged (salvage read past it): the writer starts a new segment.
    package var segment: (number: UInt64, file: any StorageFile, writeOffset: Int, header: SegmentHeader?)?
    /// Spare segments (prepared, never written) after it, by number.
    package var spares: [UInt64]
    package var nextSequence: UInt64
    /// Every segment with a valid header and the sequence number its records start at.
    package var segments: [(number: UInt64, firstSequence: UInt64)]
    /// The highest segment number in the directory: a new segment gets a higher one.
    package var highestSegment: UInt64
}
