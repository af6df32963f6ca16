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
