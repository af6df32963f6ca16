@testable import HourglassCLI
import Testing

@Suite("hourglass run: reading commands")
struct CommandParsingTests {
    @Test("a schedule with at, after_ms, payload and payload_b64 parses")
    func schedules() throws {
        guard case let .schedule(a) = try Command(parsing: #"{"op":"schedule","id":"order-1","at":1763791200000,"payload":"close"}"#, now: 5) else {
            Issue.record("not a schedule"); return
        }
        #expect(a.id == "order-1" && a.deadline.millisecondsSinceEpoch == 1_763_791_200_000 && a.payload == Array("close".utf8))
        guard case let .schedule(b) = try Command(parsing: #"{"op":"schedule","id":"x","after_ms":1800000,"payload_b64":"AAEC"}"#, now: 5) else {
            Issue.record("not a schedule"); return
        }
        #expect(b.deadline.millisecondsSinceEpoch == 1_800_005 && b.payload == [0, 1, 2])
    }

    @Test("malformed commands are refused with a message", arguments: [
        "garbage", "{", #"{"op":"schedule"}"#, #"{"op":"schedule","id":"x"}"#, #"{"op":"schedule","id":"","at":1}"#,
        #"{"op":"schedule","id":"x","at":1.5}"#, #"{"op":"schedule","id":"x","at":1,"after_ms":2}"#,
        #"{"op":"schedule","id":"x","at":1,"payload":5}"#, #"{"op":"schedule","id":"x","at":1,"payload_b64":"***"}"#,
        #"{"op":"launch","id":"x"}"#, #"{"op":"cancel","id":7}"#, #"{"op":"cancel","id":"x"} trailing"#,
        #"{"op":"schedule","id":"x","after_ms":-1}"#, #"{"op":"cancel","id":"x","id":"y"}"#,
    ])
    func malformed(text: String) {
        #expect(throws: CommandError.self) { try Command(parsing: text, now: 0) }
    }

    @Test("JSON strings decode escapes and surrogate pairs")
    func escapes() throws {
        let object = try JSONObject.parse(#"{"s":"a\"b\\c\nd\u00e9\ud83d\ude00"}"#)
        #expect(object["s"] == .string("a\"b\\c\nd\u{e9}\u{1F600}"))
        #expect(JSONLine.quote("a\"b\\c\n\u{01}") == #""a\"b\\c\n\u0001""#)
    }

    @Test("base64 round trips")
    func base64() {
        for length in 0 ..< 20 {
            let bytes = (0 ..< length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.decode("AAE=") == [0, 1])
        #expect(Base64.decode("A===") == nil)
    }
}
