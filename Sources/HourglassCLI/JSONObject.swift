/// A strict parser for the flat JSON objects `hourglass run` reads: string, integer, boolean
/// and null values; nested objects, arrays and fractions are refused with a message saying so.
enum JSONValue: Equatable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null
}

struct JSONParseError: Error, CustomStringConvertible {
    var description: String
}

enum JSONObject {
    static func parse(_ text: String) throws(JSONParseError) -> [String: JSONValue] {
        var parser = Parser(bytes: Array(text.utf8))
        return try parser.object()
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        func fail(_ message: String) -> JSONParseError {
            JSONParseError(description: "\(message) at column \(i + 1)")
        }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(JSONParseError) {
            skipSpace()
            guard i < bytes.count, bytes[i] == byte else { throw fail("expected \(what)") }
            i += 1
        }

        mutating func object() throws(JSONParseError) -> [String: JSONValue] {
            try expect(UInt8(ascii: "{"), "a JSON object starting with '{'")
            var result: [String: JSONValue] = [:]
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                i += 1
            } else {
                while true {
                    skipSpace()
                    let key = try string()
                    try expect(UInt8(ascii: ":"), "':' after a key")
                    let value = try self.value()
                    if result[key] != nil { throw fail("duplicate key \"\(key)\"") }
                    result[key] = value
                    skipSpace()
                    guard i < bytes.count else { throw fail("unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; break }
                    throw fail("expected ',' or '}'")
                }
            }
            skipSpace()
            guard i == bytes.count else { throw fail("unexpected text after the object") }
            return result
        }

        mutating func value() throws(JSONParseError) -> JSONValue {
            skipSpace()
            guard i < bytes.count else { throw fail("missing value") }
            switch bytes[i] {
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return .integer(try integer())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "{"), UInt8(ascii: "["): throw fail("nested objects and arrays are not accepted")
            default: throw fail("unexpected character")
            }
        }

        mutating func literal(_ word: String) throws(JSONParseError) {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i ..< i + w.count]) == w else { throw fail("bad literal") }
            i += w.count
        }

        mutating func integer() throws(JSONParseError) -> Int64 {
            let start = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            let digitsStart = i
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            guard i > digitsStart else { throw fail("bad number") }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                throw fail("numbers must be integers")
            }
            if bytes[digitsStart] == UInt8(ascii: "0") && i - digitsStart > 1 { throw fail("leading zeros are not JSON") }
            guard let value = Int64(String(decoding: bytes[start ..< i], as: UTF8.self)) else { throw fail("number out of range") }
            return value
        }

        mutating func string() throws(JSONParseError) -> String {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string") }
            i += 1
            var scalars = String.UnicodeScalarView()
            var run: [UInt8] = []
            func flush() {
                if !run.isEmpty {
                    scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
                    run.removeAll()
                }
            }
            while true {
                guard i < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[i]
                i += 1
                if byte == UInt8(ascii: "\"") { break }
                if byte < 0x20 { throw fail("control character in a string") }
                if byte != UInt8(ascii: "\\") {
                    run.append(byte)
                    continue
                }
                flush()
                guard i < bytes.count else { throw fail("unterminated escape") }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800 ... 0xDBFF).contains(code) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00 ... 0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                    scalars.append(scalar)
                default:
                    throw fail("unknown escape")
                }
            }
            flush()
            return String(scalars)
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard i + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[i ..< i + 4], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            i += 4
            return value
        }
    }
}
