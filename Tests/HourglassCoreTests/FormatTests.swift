import CHourglass
import HourglassCore
import HourglassTestSupport
import Testing

// MARK: Helpers

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func randomBytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
    var result = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var word = random.next()
        for _ in 0 ..< 8 where i < count {
            result[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return result
}

/// The body `records` encode to.
private func encodeBody(_ records: [LogRecord]) -> [UInt8] {
    var encoder = RecordEncoder(capacity: 64)
    for record in records { encoder.append(record) }
    #expect(encoder.count == records.count)
    return Array(encoder.buffer.bytes)
}

private func decodeBody(_ body: [UInt8]) throws -> [LogRecord] {
    try body.withUnsafeBytes { try RecordDecoder.records(in: $0) }
}

/// The frame (header and stored body) built from `body`.
private func encodeFrame(_ body: [UInt8], firstSequence: UInt64, recordCount: Int, compress: Bool = true) -> (frame: [UInt8], header: FrameHeader) {
    var encoder = FrameEncoder()
    let header = body.withUnsafeBytes { encoder.encode(body: $0, firstSequence: firstSequence, recordCount: recordCount, compress: compress) }
    return (Array(encoder.frame.bytes), header)
}

/// Decodes `frame`; on success the header and a copy of the raw body.
private func decodeFrame(_ frame: [UInt8], decoder: inout FrameDecoder) -> Result<(FrameHeader, [UInt8]), FrameFailure> {
    frame.withUnsafeBytes { raw in
        decoder.decode(raw, context: .checkpoint).map { ($0.header, Array($0.body)) }
    }
}

private func decodeFrame(_ frame: [UInt8]) -> Result<(FrameHeader, [UInt8]), FrameFailure> {
    var decoder = FrameDecoder()
    return decodeFrame(frame, decoder: &decoder)
}

private func crc(_ bytes: [UInt8], continuing start: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { crc32c($0, continuing: start) }
}

/// A frame whose header says what `mutate` makes it say, with a checksum that holds.
private func resealed(_ frame: [UInt8], _ mutate: (inout [UInt8]) -> Void) -> [UInt8] {
    var copy = frame
    mutate(&copy)
    let checksum = copy.withUnsafeBytes { FrameEncoder.checksum(frame: $0) }
    withUnsafeBytes(of: checksum.littleEndian) { copy.replaceSubrange(36 ..< 40, with: $0) }
    return copy
}

private func isFailure<T>(_ result: Result<T, FrameFailure>) -> Bool {
    if case .failure = result { return true }
    return false
}

/// A mix of every record type, with JSON payloads that LZ4 shrinks well.
private func compressibleRecords(_ count: Int) -> [LogRecord] {
    (0 ..< count).map { i -> LogRecord in
        let id = bytes("order-\(i)")
        switch i % 5 {
        case 0: return .schedule(id: id, deadline: 1_763_791_200_000 + Int64(i) * 1000, attempt: 1,
                                 payload: bytes(#"{"customer":"c-42","action":"remind","channel":"email","attempts":3}"#))
        case 1: return .cancel(id: id)
        case 2: return .fire(id: id, attempt: UInt32(i))
        case 3: return .ack(id: id)
        default: return .retry(id: id, deadline: 1_763_791_200_000 + Int64(i) * 500, attempt: 2)
        }
    }
}

@Suite("Log format: constants, CRC-32C, record and frame codecs")
struct FormatTests {
    // MARK: Constants

    @Test("the format's constants are consistent with each other and with the wheel")
    func constantsAreConsistent() {
        LogFormat.checkConsistency()
        #expect(LogFormat.frameHeaderLength == 40)
        #expect(LogFormat.segmentHeaderLength == 64)
        #expect(LogFormat.maxIDLength == TimerWheel.maxIDLength)
        #expect(LogFormat.maxPayloadLength == TimerWheel.maxPayloadLength)
        #expect(LogFormat.maxRecordLength <= LogFormat.maxRawFrameLength)
        // The magics spell what FORMAT.md says, read as little-endian.
        withUnsafeBytes(of: LogFormat.frameMagic.littleEndian) { #expect(Array($0) == bytes("HGLF")) }
        withUnsafeBytes(of: LogFormat.segmentMagic.littleEndian) { #expect(Array($0) == bytes("HGWALSEG")) }
        #expect(LogFormat.RecordType.allCases.map(\.rawValue) == [1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(LogFormat.version == 3 && LogFormat.readableVersions == 1 ... 3)
        #expect(LogFormat.checkpointVersion == 2 && LogFormat.readableCheckpointVersions == 1 ... 2)
    }

    // MARK: CRC-32C

    @Test("CRC-32C check value: \"123456789\" -> 0xE3069283")
    func crcCheckValue() {
        #expect(crc(bytes("123456789")) == 0xE306_9283)
        #expect(bytes("123456789").withUnsafeBytes { hg_crc32c_portable(0, $0.baseAddress, $0.count) } == 0xE306_9283)
        #expect(crc([]) == 0)
        #expect(crc([], continuing: 0x1234_5678) == 0x1234_5678)
        // Other well-known vectors (RFC 3720, B.4): 32 bytes of zeros, of 0xFF, ascending.
        #expect(crc([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(crc([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(crc((0 ..< 32).map { UInt8($0) }) == 0x46DD_794E)
    }

    @Test("the hardware and portable CRC-32C agree at every length up to 100 000, unaligned, and chain")
    func crcImplementationsAgree() {
        #if arch(x86_64)
        // Otherwise this would compare the portable path with itself.
        #expect(hg_crc32c_is_hardware() == 1, "this x86-64 CPU has SSE4.2")
        #endif
        let seed = SeededRandom.testSeed()
        var random = SeededRandom(seed: seed)
        let data = randomBytes(100_000 + 16, &random)
        data.withUnsafeBytes { all in
            let base = all.baseAddress!
            func both(_ start: Int, _ length: Int, _ initial: UInt32 = 0) -> (UInt32, UInt32) {
                (hg_crc32c(initial, base + start, length), hg_crc32c_portable(initial, base + start, length))
            }
            var lengths = Array(0 ... 300)
            // Around the interleaved loop's 3 x 4096-byte rounds, and long inputs.
            for round in 1 ... 8 { for d in -9 ... 9 { lengths.append(round * 3 * 4096 + d) } }
            for _ in 0 ..< 200 { lengths.append(Int(random.next() % 100_001)) }
            lengths.append(100_000)
            for length in lengths {
                let start = Int(random.next() % 16)  // unaligned starts
                let (hardware, portable) = both(start, length)
                #expect(hardware == portable, "length \(length) at \(start), seed \(seed)")
                let (h2, p2) = both(start, length, 0xDEAD_BEEF)
                #expect(h2 == p2, "length \(length) at \(start) from a nonzero crc, seed \(seed)")
            }
            // Chaining: crc(a + b) == crc(b) continuing from crc(a), in both implementations.
            for _ in 0 ..< 300 {
                let start = Int(random.next() % 16)
                let total = Int(random.next() % 40_000)
                let split = total == 0 ? 0 : Int(random.next() % UInt64(total + 1))
                let whole = hg_crc32c(0, base + start, total)
                let chained = hg_crc32c(hg_crc32c(0, base + start, split), base + start + split, total - split)
                let chainedPortable = hg_crc32c_portable(hg_crc32c_portable(0, base + start, split), base + start + split, total - split)
                #expect(whole == chained, "split \(split) of \(total), seed \(seed)")
                #expect(whole == chainedPortable, "split \(split) of \(total), seed \(seed)")
                let viaSwift = crc32c(UnsafeRawBufferPointer(start: base + start + split, count: total - split),
                                      continuing: crc32c(UnsafeRawBufferPointer(start: base + start, count: split)))
                #expect(viaSwift == whole)
            }
        }
        // A single changed bit changes the checksum (every bit of a 64-byte buffer).
        var buffer = randomBytes(64, &random)
        let original = crc(buffer)
        for bit in 0 ..< 64 * 8 {
            buffer[bit / 8] ^= 1 << (bit % 8)
            #expect(crc(buffer) != original)
            buffer[bit / 8] ^= 1 << (bit % 8)
        }
    }

    // MARK: Records

    @Test("every record type round-trips, with edge values")
    func recordRoundTrip() throws {
        var random = SeededRandom(seed: 7)
        let shortID: [UInt8] = [0x41]
        let longID = randomBytes(LogFormat.maxIDLength, &random)
        let bigPayload = randomBytes(100 << 10, &random)
        let max = TimerWheel.maxDeadline
        let records: [LogRecord] = [
            .schedule(id: shortID, deadline: 0, attempt: 0, payload: []),
            .schedule(id: longID, deadline: max, attempt: UInt32.max, payload: bigPayload),
            .schedule(id: shortID, deadline: 0, attempt: 1, payload: [0]),          // delta -max
            .retry(id: longID, deadline: max, attempt: UInt32.max),                  // delta +max
            .retry(id: shortID, deadline: 0, attempt: 0),                            // delta -max
            .schedule(id: bytes("order-1"), deadline: 1_763_791_200_000, attempt: 1, payload: bytes(#"{"a":1}"#)),
            .schedule(id: bytes("order-2"), deadline: 1_763_791_199_999, attempt: 2, payload: []),  // delta -1
            .retry(id: bytes("order-2"), deadline: 1_000, attempt: 3),               // large negative delta
            .fire(id: shortID, attempt: 0),
            .fire(id: longID, attempt: UInt32.max),
            .cancel(id: shortID),
            .cancel(id: longID),
            .ack(id: shortID),
            .ack(id: longID),
            .schedule(id: longID, deadline: max - 1, attempt: 7, payload: bigPayload),
        ]
        let body = encodeBody(records)
        #expect(try decodeBody(body) == records)

        // Each alone (the first deadline of a body is relative to 0).
        for record in records {
            #expect(try decodeBody(encodeBody([record])) == [record])
        }
        // Reversed order: every deadline delta changes sign.
        #expect(try decodeBody(encodeBody(records.reversed())) == records.reversed())

        // The views carry what the values say, and nothing for fields a type lacks.
        var views: [(LogFormat.RecordType, Int64, UInt32, Int)] = []
        let count = try encodeBody([.cancel(id: shortID), .fire(id: shortID, attempt: 9), .ack(id: longID)]).withUnsafeBytes { raw in
            try RecordDecoder.forEach(in: raw) { views.append(($0.type, $0.deadline, $0.attempt, $0.payload.count)) }
        }
        #expect(count == 3)
        #expect(views.map(\.0) == [.cancel, .fire, .ack])
        #expect(views.map(\.1) == [0, 0, 0])
        #expect(views.map(\.2) == [0, 9, 0])
        #expect(views.map(\.3) == [0, 0, 0])

        // The encoding is what FORMAT.md says for the simple types.
        #expect(encodeBody([.cancel(id: [0x61])]) == [2, 1, 0x61])
        #expect(encodeBody([.fire(id: [0x61], attempt: 300)]) == [3, 1, 0x61, 0xAC, 0x02])
        #expect(encodeBody([.ack(id: [0x61])]) == [4, 1, 0x61])
        // RETRY at 1 then SCHEDULE at 0: deltas +1 (zigzag 2) and -1 (zigzag 1).
        #expect(encodeBody([.retry(id: [0x61], deadline: 1, attempt: 0), .schedule(id: [0x62], deadline: 0, attempt: 0, payload: [])])
                == [5, 1, 0x61, 2, 0, 1, 1, 0x62, 1, 0, 0])
        // An empty body holds no records.
        #expect(try decodeBody([]) == [])
    }

    @Test("the record decoder rejects malformed records with the offset of the bad record")
    func recordDecoderRejects() {
        func failure(_ body: [UInt8]) -> RecordDecoder.Failure? {
            do {
                _ = try decodeBody(body)
                return nil
            } catch let failure as RecordDecoder.Failure {
                return failure
            } catch {
                Issue.record("unexpected error \(error)")
                return nil
            }
        }
        let good = encodeBody([.cancel(id: [0x61])])  // 3 bytes
        #expect(failure(good + [0])?.offset == 3)                                      // type 0
        #expect(failure(good + [6, 1, 0x61])?.offset == 3)                             // type 6
        #expect(failure(good + [2, 0])?.offset == 3)                                   // id length 0
        #expect(failure(good + [2, 0x81, 0x08] + [UInt8](repeating: 0x61, count: 1025))?.offset == 3)  // id length 1025
        #expect(failure(good + [2, 5, 0x61])?.offset == 3)                             // id runs past the end
        #expect(failure(good + [3, 1, 0x61])?.offset == 3)                             // FIRE without attempt
        #expect(failure(good + [3, 1, 0x61, 0x80, 0x80, 0x80, 0x80, 0x10])?.offset == 3)  // attempt 2^32
        #expect(failure(good + [1, 1, 0x61, 1])?.offset == 3)                          // deadline -1
        // deadline maxDeadline + 1
        var over = ByteWriter()
        over.append(varint: UInt64(TimerWheel.maxDeadline + 1) << 1)
        #expect(failure(good + [5, 1, 0x61] + Array(over.bytes) + [0])?.offset == 3)
        #expect(failure(good + [1, 1, 0x61, 2, 0, 5, 1, 2])?.offset == 3)              // payload runs past the end
        #expect(failure(good + [1, 1, 0x61, 2, 0, 0x80, 0x80, 0x80, 0x08])?.offset == 3)  // payload length 2^24
        #expect(failure(good + [1, 1, 0x61, 2])?.offset == 3)                          // truncated after the deadline
    }

    @Test("the record decoder never crashes on random bytes: records or a failure at a record boundary")
    func recordDecoderFuzz() throws {
        let seed = SeededRandom.testSeed()
        var random = SeededRandom(seed: seed)
        let valid = encodeBody(compressibleRecords(40))
        var decodedCount = 0
        for round in 0 ..< 6000 {
            var input: [UInt8]
            switch round % 3 {
            case 0:  // pure noise
                input = randomBytes(Int(random.next() % 200), &random)
            case 1:  // noise over small type bytes, so that records get started
                input = randomBytes(Int(random.next() % 200), &random).map { $0 % 4 == 0 ? $0 % 6 : $0 }
            default:  // a valid body with a few bytes changed and cut somewhere
                input = Array(valid[0 ..< Int(random.next() % UInt64(valid.count + 1))])
                for _ in 0 ..< 1 + Int(random.next() % 4) where !input.isEmpty {
                    input[Int(random.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            do {
                let records = try decodeBody(input)
                decodedCount += 1
                // What decodes re-encodes to records that decode the same.
                #expect(try decodeBody(encodeBody(records)) == records, "seed \(seed), round \(round)")
            } catch let failure as RecordDecoder.Failure {
                #expect(failure.offset >= 0 && failure.offset < input.count, "seed \(seed), round \(round)")
                #expect(!failure.reason.isEmpty)
                // The failure is at the start of a record: everything before it decodes.
                #expect(throws: Never.self, "seed \(seed), round \(round)") { _ = try decodeBody(Array(input[0 ..< failure.offset])) }
            }
        }
        #expect(decodedCount > 0)
    }

    // MARK: Varints

    @Test("varints round-trip at every length; overlong, over-64-bit and truncated ones are nil")
    func varints() {
        func read(_ encoded: [UInt8]) -> (UInt64?, Int) {
            encoded.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                let value = reader.readVarint()
                return (value, reader.offset)
            }
        }
        var values: [UInt64] = [0, 1, 127, 128, 255, 300, 16383, 16384, UInt64(UInt32.max), UInt64(Int64.max), UInt64.max - 1, UInt64.max]
        for shift in 1 ..< 64 { values += [(1 << UInt64(shift)) - 1, 1 << UInt64(shift)] }
        for value in values {
            var writer = ByteWriter()
            writer.append(varint: value)
            let encoded = Array(writer.bytes)
            let bits = 64 - value.leadingZeroBitCount
            #expect(encoded.count == Swift.max(1, (bits + 6) / 7), "\(value)")
            #expect(encoded.count <= LogFormat.maxVarintLength)
            let (decoded, consumed) = read(encoded + [0xAA])  // trailing byte not consumed
            #expect(decoded == value)
            #expect(consumed == encoded.count)
            // Every truncation of it is nil.
            for cut in 0 ..< encoded.count {
                #expect(read(Array(encoded[0 ..< cut])).0 == nil, "\(value) cut at \(cut)")
            }
        }
        #expect(read([]).0 == nil)
        // The largest: nine 0xFF then 0x01.
        #expect(read([UInt8](repeating: 0xFF, count: 9) + [0x01]).0 == UInt64.max)
        // Ten bytes whose last carries more than bit 63: nil.
        for last in [0x02, 0x03, 0x7F] as [UInt8] {
            #expect(read([UInt8](repeating: 0xFF, count: 9) + [last]).0 == nil, "last byte \(last)")
            #expect(read([UInt8](repeating: 0x80, count: 9) + [last]).0 == nil, "last byte \(last)")
        }
        // More than ten bytes: nil, whatever follows.
        #expect(read([UInt8](repeating: 0x80, count: 10) + [0x00]).0 == nil)
        #expect(read([UInt8](repeating: 0xFF, count: 10) + [0x01]).0 == nil)
        #expect(read([UInt8](repeating: 0x80, count: 20)).0 == nil)
        #expect(read([UInt8](repeating: 0xFF, count: 10)).0 == nil)
        // Readers stay in bounds.
        ([1, 2, 3] as [UInt8]).withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            #expect(reader.readBytes(4) == nil)
            #expect(reader.readBytes(-1) == nil)
            #expect(reader.readBytes(3)?.count == 3)
            #expect(reader.readByte() == nil)
            #expect(reader.isAtEnd)
        }
    }

    // MARK: Frames

    /// The records of FORMAT.md's worked example, SCHEDULE order-1 then CANCEL order-2: the
    /// body, and how many records the encoder counted.
    func workedExampleBody() -> (body: [UInt8], records: Int) {
        var records = RecordEncoder()
        bytes("order-1").withUnsafeBytes { id in
            bytes(#"{"a":1}"#).withUnsafeBytes { payload in
                records.schedule(id: id, deadline: 1_763_791_200_000, attempt: 1, payload: payload)
            }
        }
        bytes("order-2").withUnsafeBytes { records.cancel(id: $0) }
        return (Array(records.buffer.bytes), records.count)
    }

    @Test("FORMAT.md's worked example, byte for byte: a compact version 2 frame")
    func workedExample() throws {
        let (body, _) = workedExampleBody()
        #expect(body.count == 33)
        let context = FrameContext(version: 2, baseSequence: 1, baseDurable: 1)
        var encoder = SegmentFrameEncoder()
        let header = body.withUnsafeBytes { encoder.encode(body: $0, firstSequence: 1, recordCount: 2, durableSequence: 1, context: context) }
        let frame = Array(encoder.frame.bytes)
        let documentedHeader: [UInt8] = [0x68, 0x00, 0x02, 0x21, 0x10, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00]
        #expect(frame.count == 15 + 33)
        #expect(Array(frame[0 ..< 11]) == documentedHeader)
        #expect(Array(frame[15...]) == body)
        let expectedChecksum = crc(body, continuing: crc(documentedHeader))
        #expect(expectedChecksum == 0x9E87_3DDF, "FORMAT.md prints it: df 3d 87 9e")
        #expect(Array(frame[11 ..< 15]) == [0xDF, 0x3D, 0x87, 0x9E])
        #expect(header == FrameHeader(version: 2, isCompact: true, flags: 0, storedLength: 33, rawLength: 33, firstSequence: 1,
                                      recordCount: 2, durableSequence: 1, checksum: expectedChecksum))
        var decoder = FrameDecoder()
        let decoded = try frame.withUnsafeBytes { raw in try decoder.decode(raw, context: context).map { ($0.header, Array($0.body)) }.get() }
        #expect(decoded.0 == header && decoded.1 == body)
        // The close mark that follows it in the worked example: an empty chained frame.
        let mark = encoder.encode(body: UnsafeRawBufferPointer(start: nil, count: 0), firstSequence: 3, recordCount: 0, durableSequence: 3, context: context)
        #expect(Array(encoder.frame.bytes[0 ..< 11]) == [0x68, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00])
        #expect(mark.isChained && mark.durableSequence == 3 && mark.frameLength == 15)
    }

    @Test("FORMAT.md's SERIES and NEXT example, byte for byte, and back")
    func seriesWorkedExample() throws {
        let rule: [UInt8] = [0x01, 0x00, 0xE0, 0xD4, 0x03]  // every, fireOnceNow, 60000 ms
        var series = RecordEncoder()
        series.append(.series(id: bytes("pay-7"), deadline: 1_763_791_260_000, attempt: 1, payload: [], rule: rule,
                              state: SeriesFields(occurrence: 1_763_791_260_000, coalesced: 1, remaining: 3)))
        let seriesBytes = Array(series.buffer.bytes)
        #expect(seriesBytes == [0x06, 0x05] + bytes("pay-7") + [0xC0, 0xA5, 0xB6, 0xA2, 0xD5, 0x66, 0x01, 0x00,
                                                                0x05, 0x01, 0x00, 0xE0, 0xD4, 0x03, 0x00, 0x01, 0x03])
        var next = RecordEncoder()
        next.append(.next(id: bytes("pay-7"), deadline: 1_763_791_320_000, state: SeriesFields(occurrence: 1_763_791_320_000, coalesced: 1, remaining: 2)))
        let nextBytes = Array(next.buffer.bytes)
        #expect(nextBytes == [0x07, 0x05] + bytes("pay-7") + [0x80, 0xCF, 0xBD, 0xA2, 0xD5, 0x66, 0x00, 0x01, 0x02])
        // Back, with an occurrence that differs from the deadline (a retried occurrence in a checkpoint).
        var both = RecordEncoder()
        let records: [LogRecord] = [
            .series(id: bytes("a"), deadline: 5_000, attempt: 3, payload: [1, 2, 3], rule: rule, state: SeriesFields(occurrence: 4_000, coalesced: 7, remaining: 0)),
            .next(id: bytes("a"), deadline: 9_000, state: SeriesFields(occurrence: 9_500, coalesced: 1, remaining: 4_000_000_000)),
        ]
        for record in records { both.append(record) }
        let decoded = try Array(both.buffer.bytes).withUnsafeBytes { try RecordDecoder.records(in: $0) }
        #expect(decoded == records)
    }

    @Test("ACK_OF and RETRY_OF: byte for byte, back in a fleet's frames, refused anywhere else")
    func fleetRecords() throws {
        var encoder = RecordEncoder()
        encoder.append(.ackOf(id: bytes("o-1"), generation: 300))
        encoder.append(.retryOf(id: bytes("o-1"), generation: 300, deadline: 1_000, attempt: 2))
        let body = Array(encoder.buffer.bytes)
        // ACK_OF: type 8, id, generation 300 as a varint; RETRY_OF: type 9, id, generation, the
        // deadline as a zigzag delta from 0 (2000 = 0xD0 0x0F), attempt 2.
        #expect(body == [0x08, 0x03] + bytes("o-1") + [0xAC, 0x02] + [0x09, 0x03] + bytes("o-1") + [0xAC, 0x02, 0xD0, 0x0F, 0x02])
        let decoded = try body.withUnsafeBytes { try RecordDecoder.records(in: $0, fleet: true) }
        #expect(decoded == [.ackOf(id: bytes("o-1"), generation: 300), .retryOf(id: bytes("o-1"), generation: 300, deadline: 1_000, attempt: 2)])
        #expect(throws: RecordDecoder.Failure(offset: 0, reason: "an ACK_OF record, which belongs only in a fleet's PostgreSQL frames")) {
            try body.withUnsafeBytes { try RecordDecoder.records(in: $0) }
        }
        #expect(throws: RecordDecoder.Failure(offset: 0, reason: "truncated generation")) {
            try [UInt8]([0x08, 0x01, 0x61]).withUnsafeBytes { try RecordDecoder.records(in: $0, fleet: true) }
        }
    }

    @Test("malformed SERIES and NEXT records are refused with the offset and the reason")
    func malformedSeries() {
        func failure(_ body: [UInt8]) -> RecordDecoder.Failure? {
            body.withUnsafeBytes { raw in
                do { _ = try RecordDecoder.records(in: raw); return nil } catch { return error as? RecordDecoder.Failure }
            }
        }
        let head: [UInt8] = [0x06, 0x01, 0x61, 0x02, 0x01, 0x00]  // SERIES "a" deadline 1 attempt 1, no payload
        #expect(failure(head + [0x00]) == .init(offset: 0, reason: "bad rule length"), "an empty rule")
        #expect(failure(head + [0x03, 0x01, 0x00]) == .init(offset: 0, reason: "bad rule length"), "a rule cut short")
        #expect(failure(head + [0x01, 0x01, 0x00, 0x00]) == .init(offset: 0, reason: "bad series counts"), "coalesced 0, remaining missing")
        #expect(failure(head + [0x01, 0x01, 0x08]) == .init(offset: 0, reason: "occurrence -3 out of range"))
        #expect(failure([0x04, 0x01, 0x62, 0x07, 0x01, 0x61, 0x02]) == .init(offset: 3, reason: "truncated occurrence"), "a NEXT after an ACK")
    }

    @Test("a version 1 long frame (checkpoint files, version 1 segments), byte for byte")
    func version1LongFrame() throws {
        let (body, recordCount) = workedExampleBody()
        let documentedBody: [UInt8] = [
            0x01,
            0x07, 0x6F, 0x72, 0x64, 0x65, 0x72, 0x2D, 0x31,
            0x80, 0xFC, 0xAE, 0xA2, 0xD5, 0x66,
            0x01,
            0x07, 0x7B, 0x22, 0x61, 0x22, 0x3A, 0x31, 0x7D,
            0x02,
            0x07, 0x6F, 0x72, 0x64, 0x65, 0x72, 0x2D, 0x32,
        ]
        #expect(documentedBody.count == 33)
        #expect(body == documentedBody)
        #expect(recordCount == 2)

        let (frame, header) = encodeFrame(body, firstSequence: 1, recordCount: 2)
        let documentedHeader: [UInt8] = [
            0x48, 0x47, 0x4C, 0x46, 0x01, 0x00, 0x28, 0x00, 0x21, 0x00, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // durable sequence: 1, nothing before
        ]
        #expect(frame.count == 40 + 33)
        #expect(Array(frame[0 ..< 36]) == documentedHeader)
        #expect(header.flags == 0, "LZ4 does not shrink 33 bytes: stored as is")
        #expect(Array(frame[40...]) == documentedBody)
        let expectedChecksum = crc(documentedBody, continuing: crc(documentedHeader))
        let stored = UInt32(frame[36]) | UInt32(frame[37]) << 8 | UInt32(frame[38]) << 16 | UInt32(frame[39]) << 24
        #expect(stored == expectedChecksum)
        #expect(header.checksum == expectedChecksum)
        #expect(header.flags == 0 && header.storedLength == 33 && header.rawLength == 33)
        #expect(header.firstSequence == 1 && header.recordCount == 2 && header.frameLength == 73 && header.durableSequence == 1)

        let decoded = try decodeFrame(frame).get()
        #expect(decoded.0 == header)
        #expect(try decodeBody(decoded.1) == [
            .schedule(id: bytes("order-1"), deadline: 1_763_791_200_000, attempt: 1, payload: bytes(#"{"a":1}"#)),
            .cancel(id: bytes("order-2")),
        ])
    }

    @Test("frames round-trip, compressed and not; compressible bodies are stored as one LZ4 block")
    func frameRoundTrip() throws {
        var random = SeededRandom(seed: 11)
        let compressible = compressibleRecords(500)
        let compressibleBody = encodeBody(compressible)
        let incompressible: [LogRecord] = (0 ..< 20).map { .schedule(id: bytes("r\($0)"), deadline: Int64($0), attempt: 0, payload: randomBytes(500, &random)) }
        let incompressibleBody = encodeBody(incompressible)

        var decoder = FrameDecoder()  // one decoder for all: it keeps its buffer between frames
        for (records, body) in [(compressible, compressibleBody), (incompressible, incompressibleBody)] {
            for compress in [true, false] {
                let (frame, header) = encodeFrame(body, firstSequence: 1000, recordCount: records.count, compress: compress)
                #expect(header.rawLength == body.count)
                #expect(header.firstSequence == 1000)
                #expect(header.recordCount == records.count)
                #expect(header.nextSequence == 1000 + UInt64(records.count))
                #expect(frame.count == header.frameLength)
                #expect(frame.count == LogFormat.frameHeaderLength + header.storedLength)
                let (decodedHeader, decodedBody) = try decodeFrame(frame, decoder: &decoder).get()
                #expect(decodedHeader == header)
                #expect(decodedBody == body)
                #expect(try decodeBody(decodedBody) == records)
                // A frame followed by other bytes decodes the same (the log runs on past a frame).
                let (_, followed) = try decodeFrame(frame + [0x48, 0x47, 0x4C, 0x46, 1, 2, 3], decoder: &decoder).get()
                #expect(followed == body)
            }
        }
        let compressed = encodeFrame(compressibleBody, firstSequence: 1, recordCount: compressible.count).header
        #expect(compressed.flags == LogFormat.flagCompressed)
        #expect(compressed.isCompressed)
        #expect(compressed.storedLength < compressed.rawLength / 2)
        let notCompressed = encodeFrame(compressibleBody, firstSequence: 1, recordCount: compressible.count, compress: false).header
        #expect(notCompressed.flags == 0)
        #expect(notCompressed.storedLength == compressibleBody.count)
        let random500 = encodeFrame(incompressibleBody, firstSequence: 1, recordCount: incompressible.count).header
        #expect(random500.flags == 0, "LZ4 does not shrink random bytes: stored as is")
        #expect(random500.storedLength == incompressibleBody.count)

        // An empty frame (no records) is valid.
        let (empty, emptyHeader) = encodeFrame([], firstSequence: 5, recordCount: 0)
        #expect(empty.count == LogFormat.frameHeaderLength)
        let (h, b) = try decodeFrame(empty).get()
        #expect(h == emptyHeader)
        #expect(b.isEmpty)
    }

    @Test("a flipped bit anywhere in a frame's header or body is rejected")
    func frameBitFlips() {
        var random = SeededRandom(seed: 3)
        let compressible = encodeBody(compressibleRecords(60))
        let plain = encodeBody((0 ..< 4).map { .schedule(id: bytes("t\($0)"), deadline: 1_000 * Int64($0), attempt: 1, payload: randomBytes(30, &random)) })
        let frames = [
            encodeFrame(compressible, firstSequence: 77, recordCount: 60).frame,
            encodeFrame(plain, firstSequence: 77, recordCount: 4).frame,
            encodeFrame(compressible, firstSequence: 77, recordCount: 60, compress: false).frame,
        ]
        #expect(frames[0][5] == 1 && frames[1][5] == 0 && frames[2][5] == 0)
        var decoder = FrameDecoder()
        for (which, frame) in frames.enumerated() {
            #expect(throws: Never.self) { try decodeFrame(frame, decoder: &decoder).get() }
            // Every bit of the header.
            for byte in 0 ..< LogFormat.frameHeaderLength {
                for bit in 0 ..< 8 {
                    var damaged = frame
                    damaged[byte] ^= 1 << UInt8(bit)
                    let result = decodeFrame(damaged, decoder: &decoder)
                    #expect(isFailure(result), "frame \(which): header byte \(byte) bit \(bit) accepted")
                    guard case let .failure(failure) = result else { continue }
                    switch byte {
                    case 0 ..< 4:
                        #expect(failure == .badMagic(LogFormat.frameMagic ^ (1 << UInt32(8 * byte + bit))))
                    case 4:
                        #expect(failure == .unsupportedVersion(1 ^ (1 << UInt8(bit))))
                    case 5 where bit > 0:
                        #expect(failure == .unknownFlags(frame[5] ^ (1 << UInt8(bit))))
                    case 6, 7:
                        if case .badLength = failure {} else { Issue.record("header length flip: \(failure)") }
                    case 16 ..< 40:  // sequence, count, durable sequence, checksum: only the checksum can tell
                        if case .checksumMismatch = failure {} else if case .badLength = failure, byte < 36 {} else {
                            Issue.record("frame \(which) byte \(byte) bit \(bit): \(failure)")
                        }
                    default:
                        break
                    }
                }
            }
            // Every byte of the stored body (one bit each), and all bits of a few.
            for byte in LogFormat.frameHeaderLength ..< frame.count {
                let bits = byte % 37 == 0 ? Array(0 ..< 8) : [Int(random.next() % 8)]
                for bit in bits {
                    var damaged = frame
                    damaged[byte] ^= 1 << UInt8(bit)
                    let result = decodeFrame(damaged, decoder: &decoder)
                    #expect(isFailure(result), "frame \(which): body byte \(byte) bit \(bit) accepted")
                    if case let .failure(failure) = result {
                        #expect(failure.description.contains("checksum"), "\(failure)")
                    }
                }
            }
        }
    }

    @Test("a frame cut at every length is rejected as truncated")
    func frameTruncation() {
        var random = SeededRandom(seed: 5)
        let body = encodeBody(compressibleRecords(30) + [.schedule(id: [1], deadline: 5, attempt: 0, payload: randomBytes(200, &random))])
        var decoder = FrameDecoder()
        for compress in [true, false] {
            let frame = encodeFrame(body, firstSequence: 1, recordCount: 31, compress: compress).frame
            for length in 0 ..< frame.count {
                let result = decodeFrame(Array(frame[0 ..< length]), decoder: &decoder)
                let expected: FrameFailure = length < LogFormat.frameHeaderLength
                    ? .truncated(needed: LogFormat.frameHeaderLength, available: length)
                    : .truncated(needed: frame.count, available: length)
                #expect(result.failed == expected, "cut at \(length) of \(frame.count)")
            }
            #expect(!isFailure(decodeFrame(frame, decoder: &decoder)))
        }
    }

    @Test("a frame whose checksum holds is still rejected when its header or body lies")
    func frameSemanticChecks() throws {
        let records = compressibleRecords(10)
        let body = encodeBody(records)
        let plain = encodeFrame(body, firstSequence: 9, recordCount: 10, compress: false).frame
        let packed = encodeFrame(body, firstSequence: 9, recordCount: 10).frame
        #expect(packed[5] == 1)

        // The record count must match the body.
        #expect(decodeFrame(encodeFrame(body, firstSequence: 9, recordCount: 9).frame).failed == .recordCountMismatch(header: 9, found: 10))
        #expect(decodeFrame(encodeFrame(body, firstSequence: 9, recordCount: 11).frame).failed == .recordCountMismatch(header: 11, found: 10))
        // Sequence numbers start at 1.
        if case .badLength = decodeFrame(encodeFrame(body, firstSequence: 0, recordCount: 10).frame).failed {} else {
            Issue.record("first sequence 0 accepted")
        }
        // Another version, unknown flags, another header length, each with a valid checksum.
        #expect(decodeFrame(resealed(plain) { $0[4] = 2 }).failed == .unsupportedVersion(2))
        #expect(decodeFrame(resealed(plain) { $0[5] = 0x80 }).failed == .unknownFlags(0x80))
        if case .badLength = decodeFrame(resealed(plain) { $0[6] = 33 }).failed {} else { Issue.record("header length 33 accepted") }
        // An uncompressed frame whose stored and raw lengths differ.
        if case .badLength = decodeFrame(resealed(plain) { $0[12] &+= 1 }).failed {} else { Issue.record("raw != stored accepted") }
        // A raw length over the limit.
        if case .badLength = decodeFrame(resealed(packed) { $0[12] = 0; $0[13] = 0; $0[14] = 0; $0[15] = 0x10 }).failed {} else {
            Issue.record("raw length 256 MiB accepted")
        }
        // A compressed frame whose raw length is off by one: decompression must not "succeed".
        for delta in [-1, 1] as [Int] {
            let lying = resealed(packed) { frame in
                let raw = Int(UInt32(frame[12]) | UInt32(frame[13]) << 8) + delta
                frame[12] = UInt8(raw & 0xFF)
                frame[13] = UInt8(raw >> 8)
            }
            let result = decodeFrame(lying)
            #expect(isFailure(result), "raw length off by \(delta) accepted")
        }
        // A compressed flag on a body that is not an LZ4 block.
        #expect(isFailure(decodeFrame(resealed(plain) { $0[5] = 1 })))
        // A checksum that holds over records that do not parse.
        var garbage = plain
        garbage[LogFormat.frameHeaderLength] = 9  // the first record's type
        if case .records(0, _) = decodeFrame(resealed(garbage) { _ in }).failed {} else { Issue.record("bad record type accepted") }
        // And the intact ones decode.
        #expect(try decodeBody(try decodeFrame(plain).get().1) == records)
        #expect(try decodeBody(try decodeFrame(packed).get().1) == records)
    }

    // MARK: Version 2: compact headers and chains

    @Test("chained frames round-trip in order over many frames, chain restarts and history wraps; out of order they fail as a broken chain")
    func chainRoundTrip() throws {
        var random = SeededRandom(seed: 17)
        let context = FrameContext(version: 2, baseSequence: 1000, baseDurable: 900)
        var encoder = SegmentFrameEncoder()
        var frames: [([UInt8], [UInt8], FrameHeader)] = []
        var sequence: UInt64 = 1000
        var n = 0
        // ~3 MiB raw: the encoder's and decoder's 1 MiB histories wrap, the chain restarts.
        while frames.reduce(0, { $0 + $1.1.count }) < 3 << 20 {
            let count = [1, 1, 1, 3, 40, 700][Int(random.next() % 6)]
            let records = compressibleRecords(count + n).suffix(count)
            n += count
            let body = encodeBody(Array(records))
            let header = body.withUnsafeBytes {
                encoder.encode(body: $0, firstSequence: sequence, recordCount: count, durableSequence: sequence - random.next() % 5, context: context)
            }
            frames.append((Array(encoder.frame.bytes), body, header))
            sequence += UInt64(count)
        }
        #expect(frames[0].2.isChained == false, "a new encoder starts a chain")
        #expect(frames.contains { $0.2.isChained && $0.2.isCompact } && frames.contains { !$0.2.isCompact })
        #expect(frames.dropFirst().contains { !$0.2.isChained && $0.1.count <= LogFormat.maxChainedRawLength }, "the chain restarted past 1 MiB")
        var decoder = FrameDecoder()
        for (index, (frame, body, header)) in frames.enumerated() {
            let decoded = try frame.withUnsafeBytes { raw in try decoder.decode(raw, context: context).map { ($0.header, Array($0.body)) }.get() }
            #expect(decoded.0 == header, "frame \(index)")
            #expect(decoded.1 == body, "frame \(index)")
        }
        // A chained frame without its predecessors: its checksum holds, it does not decode.
        let chained = try #require(frames.last { $0.2.isChained })
        var fresh = FrameDecoder()
        #expect(chained.0.withUnsafeBytes { FrameDecoder.check($0, context: context) } == .success(chained.2))
        #expect(chained.0.withUnsafeBytes { fresh.decode($0, context: context) }.failed == .brokenChain)
    }

    @Test("compact headers: the first sequence comes back from its low 24 bits and the segment's; a lag past 0xFFFF says the segment's durable sequence")
    func compactHeaderFields() throws {
        let base: UInt64 = (1 << 24) * 3 - 5  // the low bits wrap inside the segment
        let context = FrameContext(version: 2, baseSequence: base, baseDurable: base - 100)
        var encoder = SegmentFrameEncoder()
        let body = encodeBody(compressibleRecords(2))
        for (first, durable) in [(base, base), (base + 7, base + 2), (base + (1 << 24) - 1, base + (1 << 24) - 70_000), (base + 9, base - 50)] as [(UInt64, UInt64)] {
            let header = body.withUnsafeBytes { encoder.encode(body: $0, firstSequence: first, recordCount: 2, durableSequence: durable, context: context) }
            #expect(header.isCompact)
            let lag = first - durable
            #expect(header.durableSequence == (lag >= LogFormat.maxDurableLag ? base - 100 : durable), "never more than was durable")
            #expect(header.durableSequence <= durable)
            let checked = Array(encoder.frame.bytes).withUnsafeBytes { FrameDecoder.check($0, context: context) }
            #expect(checked == .success(header), "first \(first)")
        }
        // Past 2^24 records after the segment's first, or past 255 records: a long header.
        let far = body.withUnsafeBytes { encoder.encode(body: $0, firstSequence: base + (1 << 24), recordCount: 2, durableSequence: base, context: context) }
        #expect(!far.isCompact && far.firstSequence == base + (1 << 24))
        let many = encodeBody(compressibleRecords(300).filter { if case .cancel = $0 { true } else { false } })
        let manyHeader = many.withUnsafeBytes { encoder.encode(body: $0, firstSequence: base, recordCount: 60, durableSequence: base, context: context) }
        #expect(manyHeader.rawLength <= LogFormat.maxCompactLength && manyHeader.isCompact)
    }

    @Test("a flipped bit anywhere in a compact frame is rejected")
    func compactFrameBitFlips() {
        let context = FrameContext(version: 2, baseSequence: 1, baseDurable: 1)
        var encoder = SegmentFrameEncoder()
        let bodies = [encodeBody(compressibleRecords(1)), encodeBody(compressibleRecords(12))]
        for body in bodies {
            body.withUnsafeBytes { _ = encoder.encode(body: $0, firstSequence: 5, recordCount: body == bodies[0] ? 1 : 12, durableSequence: 3, context: context, mayChain: false) }
            let frame = Array(encoder.frame.bytes)
            #expect(frame[0] == LogFormat.compactFrameMagic)
            var decoder = FrameDecoder()
            #expect(!isFailure(frame.withUnsafeBytes { decoder.decode($0, context: context) }))
            for byte in 0 ..< frame.count {
                for bit in 0 ..< 8 {
                    var damaged = frame
                    damaged[byte] ^= 1 << UInt8(bit)
                    let result = damaged.withUnsafeBytes { decoder.decode($0, context: context) }
                    #expect(isFailure(result), "byte \(byte) bit \(bit) accepted")
                }
            }
            // Cut at every length: truncated.
            for length in 0 ..< frame.count {
                #expect(isFailure(Array(frame[0 ..< length]).withUnsafeBytes { decoder.decode($0, context: context) }))
            }
        }
        // Version 1 files know no compact frames, and no chained flag.
        let v1 = FrameContext.checkpoint
        #expect(isFailure(Array(encoder.frame.bytes).withUnsafeBytes { FrameDecoder.check($0, context: v1) }))
    }

    // MARK: Segment headers

    @Test("segment headers round-trip; blank and damaged ones are told apart")
    func segmentHeaders() {
        let header = SegmentHeader(segmentNumber: 3, firstSequence: 12_345, segmentLength: 1 << 20, createdMilliseconds: 1_763_791_200_000)
        var raw = [UInt8](repeating: 0xEE, count: 64)
        raw.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        #expect(Array(raw[0 ..< 8]) == bytes("HGWALSEG"))
        #expect(raw[8] == 3 && raw[9] == 0 && raw[10] == 64 && raw[11] == 0)
        #expect(raw[12 ..< 16].allSatisfy { $0 == 0 } && raw[56 ..< 60].allSatisfy { $0 == 0 })
        #expect(Array(raw[48 ..< 56]) == [0x39, 0x30, 0, 0, 0, 0, 0, 0], "durable sequence: the first sequence unless told otherwise")
        #expect(crc(Array(raw[0 ..< 60])) == UInt32(raw[60]) | UInt32(raw[61]) << 8 | UInt32(raw[62]) << 16 | UInt32(raw[63]) << 24)
        #expect(raw.withUnsafeBytes { SegmentHeader.parse($0) } == .valid(header))
        #expect((raw + [1, 2, 3]).withUnsafeBytes { SegmentHeader.parse($0) } == .valid(header))
        #expect([UInt8](repeating: 0, count: 64).withUnsafeBytes { SegmentHeader.parse($0) } == .blank)
        #expect(([UInt8](repeating: 0, count: 64) + [1]).withUnsafeBytes { SegmentHeader.parse($0) } == .blank)
        if case .invalid = Array(raw[0 ..< 63]).withUnsafeBytes({ SegmentHeader.parse($0) }) {} else { Issue.record("short header accepted") }
        for byte in 0 ..< 64 {
            for bit in 0 ..< 8 {
                var damaged = raw
                damaged[byte] ^= 1 << UInt8(bit)
                let parsed = damaged.withUnsafeBytes { SegmentHeader.parse($0) }
                if case .invalid = parsed {} else { Issue.record("segment header byte \(byte) bit \(bit): \(parsed)") }
            }
        }
    }
}

extension Result {
    fileprivate var failed: Failure? {
        if case let .failure(failure) = self { return failure }
        return nil
    }
}
