import Hourglass

/// Realistic order-service payloads: JSON with an order id, a user id, SKUs, an amount and a
/// currency, padded (or cut) to the requested size. Deterministic from the seed.
struct OrderPayloads {
    private var random: WorkloadRandom
    let size: Int

    init(seed: UInt64, size: Int) {
        random = WorkloadRandom(seed: seed ^ 0x5EED_0F_0DE5)
        self.size = size
    }

    mutating func next(order: Int) -> [UInt8] {
        let skus = ["SKU-1042-BLK-M", "SKU-2231-WHT-L", "SKU-7781-RED-S", "SKU-3310-GRN-XL", "SKU-9902-BLU-M", "SKU-5567-GRY-L"]
        let currencies = ["EUR", "USD", "GBP", "CNY", "JPY"]
        let user = random.next() % 5_000_000
        let cents = 199 + random.next() % 250_000
        let sku = skus[Int(random.next() % UInt64(skus.count))]
        let quantity = 1 + random.next() % 4
        let currency = currencies[Int(random.next() % UInt64(currencies.count))]
        var text = "{\"order\":\"ord-\(order)\",\"user\":\"u-\(user)\",\"sku\":\"\(sku)\",\"qty\":\(quantity),\"amount\":\(cents / 100).\(cents % 100 < 10 ? "0" : "")\(cents % 100),\"currency\":\"\(currency)\",\"status\":\"unpaid\""
        // Further fields, as an order service would carry, until the size is reached.
        let channels = ["web", "ios", "android", "pos", "partner-api"]
        let cities = ["Berlin", "Hangzhou", "Austin", "Lyon", "Osaka", "Toronto", "Madrid"]
        var extras = [
            ",\"channel\":\"\(channels[Int(random.next() % UInt64(channels.count))])\"",
            ",\"city\":\"\(cities[Int(random.next() % UInt64(cities.count))])\"",
            ",\"email\":\"user\(user)@example.com\"",
            ",\"coupon\":\"WINTER\(random.next() % 100)\"",
            ",\"warehouse\":\"wh-\(random.next() % 40)\"",
        ]
        while true {
            if extras.isEmpty { extras.append(",\"line\":\"SKU-\(random.next() % 10_000)-x\(random.next() % 9 + 1)\"") }
            guard text.utf8.count + extras[0].utf8.count + 1 <= size else { break }
            text += extras.removeFirst()
        }
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "}"))  // then spaces: still valid JSON
        if bytes.count > size { bytes.removeLast(bytes.count - size) }
        while bytes.count < size { bytes.append(UInt8(ascii: " ")) }
        return bytes
    }
}

/// The timers of a scenario, the same for every system measured: ids, deadlines and payloads,
/// generated from the seed.
struct Workload: Sendable {
    /// "order-0000000042": 16 bytes, as order ids are.
    let ids: [TimerID]
    /// Wall-clock milliseconds since the Unix epoch.
    let deadlines: [Int64]
    let payloads: [[UInt8]]

    var count: Int { ids.count }

    /// `deadline(i, random)` gives timer i's deadline.
    init(count: Int, payloadBytes: Int, seed: UInt64, prefix: String = "order-", deadline: (Int, inout WorkloadRandom) -> Int64) {
        var random = WorkloadRandom(seed: seed)
        var payloadMaker = OrderPayloads(seed: seed, size: payloadBytes)
        var ids: [TimerID] = []
        var deadlines: [Int64] = []
        var payloads: [[UInt8]] = []
        ids.reserveCapacity(count)
        deadlines.reserveCapacity(count)
        payloads.reserveCapacity(count)
        for i in 0 ..< count {
            ids.append(TimerID(bytes: orderID(prefix: prefix, i)))
            deadlines.append(deadline(i, &random))
            payloads.append(payloadMaker.next(order: i))
        }
        self.ids = ids
        self.deadlines = deadlines
        self.payloads = payloads
    }

    /// Order timeouts: 30 minutes after `now`, plus up to 30 minutes of jitter (orders created
    /// over the last half hour), at 1 ms resolution.
    static func orderTimeouts(count: Int, payloadBytes: Int, seed: UInt64, now: Int64) -> Workload {
        Workload(count: count, payloadBytes: payloadBytes, seed: seed) { _, random in
            now + 1_800_000 + Int64(random.next() % 1_800_000)
        }
    }

    func request(_ i: Int) -> TimerRequest {
        TimerRequest(id: ids[i], deadline: Deadline(millisecondsSinceEpoch: deadlines[i]), payload: payloads[i])
    }

    /// The bytes of ids and payloads: what every system must hold at the least.
    var userBytes: Int { ids.reduce(0) { $0 + $1.bytes.count } + payloads.reduce(0) { $0 + $1.count } }

    /// The size of a SCHEDULE record of timer `i` before compression (Docs/FORMAT.md).
    func recordBytes(_ i: Int) -> Int { 1 + 1 + ids[i].bytes.count + 6 + 1 + 2 + payloads[i].count }
}

/// `prefix` followed by `i` in ten digits.
func orderID(prefix: String, _ i: Int) -> [UInt8] {
    var bytes = Array(prefix.utf8)
    var digits = [UInt8](repeating: UInt8(ascii: "0"), count: 10)
    var value = i
    var k = 9
    while value > 0 && k >= 0 {
        digits[k] = UInt8(48 + value % 10)
        value /= 10
        k -= 1
    }
    bytes.append(contentsOf: digits)
    return bytes
}

/// A copy of `bytes` in a buffer of its own (an in-memory queue keeps its own copy of what a
/// caller hands it, as it would of a request it decoded).
@inline(__always)
func ownCopy(_ bytes: [UInt8]) -> [UInt8] {
    bytes.withUnsafeBufferPointer { [UInt8]($0) }
}
