/// A trivially correct model of a timer wheel: one array kept sorted by (deadline, schedule
/// order). Tests drive it side by side with the real thing and compare what fires.
public struct ReferenceWheel {
    public struct Timer: Equatable, CustomStringConvertible {
        public var id: [UInt8]
        public var deadline: Int64
        public var payload: [UInt8]
        public var sequence: UInt64
        public var description: String { "\(String(decoding: id, as: UTF8.self))@\(deadline)" }

        public init(id: [UInt8], deadline: Int64, payload: [UInt8], sequence: UInt64) {
            self.id = id
            self.deadline = deadline
            self.payload = payload
            self.sequence = sequence
        }
    }

    public private(set) var timers: [Timer] = []
    private var nextSequence: UInt64 = 0
    public let tickMilliseconds: Int64

    public init(tickMilliseconds: Int64 = 1) { self.tickMilliseconds = tickMilliseconds }

    public var count: Int { timers.count }

    /// Schedules or replaces; returns whether a timer with this id was replaced.
    @discardableResult
    public mutating func schedule(id: [UInt8], deadline: Int64, payload: [UInt8] = []) -> Bool {
        let replaced = remove(id: id)
        let timer = Timer(id: id, deadline: deadline, payload: payload, sequence: nextSequence)
        nextSequence += 1
        // Insert after every timer with a deadline <= this one (schedule order breaks ties).
        var low = 0
        var high = timers.count
        while low < high {
            let mid = (low + high) / 2
            if timers[mid].deadline <= deadline { low = mid + 1 } else { high = mid }
        }
        timers.insert(timer, at: low)
        return replaced
    }

    @discardableResult
    public mutating func remove(id: [UInt8]) -> Bool {
        guard let index = timers.firstIndex(where: { $0.id == id }) else { return false }
        timers.remove(at: index)
        return true
    }

    public func contains(id: [UInt8]) -> Bool { timers.contains { $0.id == id } }

    /// The tick at which a deadline is due: the first tick at or after it.
    public func tick(for deadline: Int64) -> Int64 { (deadline + tickMilliseconds - 1) / tickMilliseconds }

    /// Removes and returns, in order, every timer due at `now`, at most `limit`.
    public mutating func advance(to now: Int64, limit: Int = .max) -> [Timer] {
        let target = now / tickMilliseconds
        var due: [Timer] = []
        var index = 0
        // Timers are sorted by deadline, and ticks are monotonic in deadlines.
        while index < timers.count && due.count < limit && tick(for: timers[index].deadline) <= target {
            due.append(timers[index])
            index += 1
        }
        timers.removeFirst(index)
        return due
    }

    public var nextDeadline: Int64? { timers.first?.deadline }
}
