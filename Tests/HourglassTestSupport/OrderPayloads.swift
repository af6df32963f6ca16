/// The benchmark's order payloads (`Benchmarks/HourglassBench/Workload.swift`, `OrderPayloads`),
/// byte for byte from the same seed, so that tests can hold the log's size per timer to what
/// the benchmark measures. Keep the two in step.
public struct BenchOrderPayloads {
    private var state: UInt64
    public let size: Int

    public init(seed: UInt64, size: Int = 128) {
        state = seed ^ 0x5EED_0F_0DE5
        self.size = size
    }

    private mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next(order: Int) -> [UInt8] {
        let skus = ["SKU-1042-BLK-M", "SKU-2231-WHT-L", "SKU-7781-RED-S", "SKU-3310-GRN-XL", "SKU-9902-BLU-M", "SKU-5567-GRY-L"]
        let currencies = ["EUR", "USD", "GBP", "CNY", "JPY"]
        let user = next() % 5_000_000
        let cents = 199 + next() % 250_000
        let sku = skus[Int(next() % UInt64(skus.count))]
        let quantity = 1 + next() % 4
        let currency = currencies[Int(next() % UInt64(currencies.count))]
        var text = "{\"order\":\"ord-\(order)\",\"user\":\"u-\(user)\",\"sku\":\"\(sku)\",\"qty\":\(quantity),\"amount\":\(cents / 100).\(cents % 100 < 10 ? "0" : "")\(cents % 100),\"currency\":\"\(currency)\",\"status\":\"unpaid\""
        let channels = ["web", "ios", "android", "pos", "partner-api"]
        let cities = ["Berlin", "Hangzhou", "Austin", "Lyon", "Osaka", "Toronto", "Madrid"]
        var extras = [
            ",\"channel\":\"\(channels[Int(next() % UInt64(channels.count))])\"",
            ",\"city\":\"\(cities[Int(next() % UInt64(cities.count))])\"",
            ",\"email\":\"user\(user)@example.com\"",
            ",\"coupon\":\"WINTER\(next() % 100)\"",
            ",\"warehouse\":\"wh-\(next() % 40)\"",
        ]
        while true {
            if extras.isEmpty { extras.append(",\"line\":\"SKU-\(next() % 10_000)-x\(next() % 9 + 1)\"") }
            guard text.utf8.count + extras[0].utf8.count + 1 <= size else { break }
            text += extras.removeFirst()
        }
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "}"))
        if bytes.count > size { bytes.removeLast(bytes.count - size) }
        while bytes.count < size { bytes.append(UInt8(ascii: " ")) }
        return bytes
    }
}

/// The benchmark's fixed-width ids: "order-" and ten digits (16 bytes).
public func benchOrderID(_ i: Int) -> [UInt8] {
    let digits = String(i)
    return Array(("order-" + String(repeating: "0", count: max(0, 10 - digits.count)) + digits).utf8)
}
