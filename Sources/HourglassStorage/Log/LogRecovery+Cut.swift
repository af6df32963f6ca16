import HourglassCore

// After the table: the cut that rows 3, 4, 5, 6', 10 and 19 decide (and rows 8 and 18 in
// salvage, with nothing to resume at). The log ends at the damage: everything after it was
// never durable, or is reported lost.

extension LogRecovery.Walk {
    /// Cuts the log where the walk decided (if it did): zeros the rest of that segment, deletes
    /// every later segment (row 10: a cut at a segment's start deletes that segment too) and
    /// reports the torn tail with the bytes it held.
    mutating func cutLog() throws(StorageError) {
        guard let (place, reason) = cut else { return }
        var cutBytes = 0
        let first = segments[place.index]
        if place.offset > 0 {
            cutBytes += try recovery.zero(first.file, from: place.offset)
            end = place
        }
        // Every segment after the cut goes (the writer prepares new ones), spares included,
        // so that segment numbers stay contiguous.
        let removeFrom = place.index + (place.offset > 0 ? 1 : 0)
        for segment in segments[removeFrom...] {
            cutBytes += LogRecovery.lastNonZero(in: segment.file, from: 0).map { $0 + 1 } ?? 0
            if !recovery.readOnly {
                segment.file.close()
                try recovery.directory.remove(segment.name)
            }
        }
        highest = removeFrom > 0 ? segments[removeFrom - 1].number : (segments.first.map { $0.number - 1 } ?? 0)
        if place.offset == 0 { known.removeAll { $0.number >= first.number } }
        if cutBytes > 0 || place.offset == 0 {
            report.tornTail = .init(file: first.file.path, offset: Int64(place.offset), bytes: cutBytes,
                                    reason: "\(reason) (only data never synced follows: a crash cut it short; the log ends here)")
        }
    }
}

extension LogRecovery {
    /// The last non-zero byte at or after `offset`, reading only where the file holds data.
    static func lastNonZero(in file: any StorageFile, from offset: Int) -> Int? {
        file.withBytes { bytes -> Int? in
            var last: Int? = nil
            var position = offset
            while position < bytes.count {
                guard let data = file.nextData(from: position) else { break }
                position = max(position, data)
                // Read on to the end of this stretch of data: the first block of zeros.
                var blockEnd = min(bytes.count, (position / block + 1) * block)
                while position < bytes.count {
                    var zeros = true
                    var p = position
                    while p + 8 <= blockEnd {
                        if bytes.loadUnaligned(fromByteOffset: p, as: UInt64.self) != 0 { zeros = false; break }
                        p += 8
                    }
                    if zeros {
                        for q in p ..< blockEnd where bytes[q] != 0 { zeros = false; break }
                    }
                    if !zeros, let found = bytes[position ..< blockEnd].lastIndex(where: { $0 != 0 }) { last = found }
                    position = blockEnd
                    blockEnd = min(bytes.count, blockEnd + block)
                    if zeros { break }
                }
            }
            return last
        }
    }

    /// Zeros every non-zero byte from `offset` to the end of the file; returns how far the
    /// non-zero bytes reached (the size of what was cut).
    @discardableResult
    func zero(_ file: any StorageFile, from offset: Int) throws(StorageError) -> Int {
        guard let lastNonZero = Self.lastNonZero(in: file, from: offset) else { return 0 }
        let count = lastNonZero + 1 - offset
        if readOnly { return count }
        let zeros = [UInt8](repeating: 0, count: count)
        let result = zeros.withUnsafeBytes { raw in Result { () throws(StorageError) in try file.write(raw, at: offset) } }
        try result.get()
        try file.sync(offset: offset, length: count)
        return count
    }
}
