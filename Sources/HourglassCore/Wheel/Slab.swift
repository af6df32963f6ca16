import CHourglass

/// Contiguous storage of `Entry`, addressed by 32-bit handles, with a free list.
///
/// The only door to the entries is `ptr(_:)`, which checks bounds in debug builds. Memory is an
/// anonymous mapping with huge pages requested; it grows with `mremap` (no copy) and never shrinks.
struct Slab: ~Copyable {
    private var base: UnsafeMutablePointer<Entry>
    private(set) var capacity: Int
    /// Handles `0 ..< highWater` have been handed out at least once.
    var highWater: UInt32
    var freeHead: UInt32

    /// Handles above this are never produced (`nilHandle` is reserved).
    static let maxHandles = Int(UInt32.max - 1)


    init(capacity: Int) {
        let initial = max(capacity, 64)
        guard let memory = hg_table_allocate(initial * MemoryLayout<Entry>.stride) else {
            fatalError("Hourglass: out of memory allocating \(initial) timer entries")
        }
        base = memory.bindMemory(to: Entry.self, capacity: initial)
        self.capacity = initial
        highWater = 0
        freeHead = nilHandle
    }

    deinit { hg_table_free(base, capacity * MemoryLayout<Entry>.stride) }

    @inline(__always)
    func ptr(_ handle: UInt32) -> UnsafeMutablePointer<Entry> { view.ptr(handle) }

    /// A copyable window on the entries, for the callbacks of a structure that holds handles
    /// (a slot array being compacted). Valid until the slab next grows.
    struct View {
        fileprivate let base: UnsafeMutablePointer<Entry>
        let highWater: UInt32

        @inline(__always)
        func ptr(_ handle: UInt32) -> UnsafeMutablePointer<Entry> {
            assert(handle < highWater, "handle \(handle) out of bounds (\(highWater))")
            return base + Int(handle)
        }

        @inline(__always)
        func prefetch(_ handle: UInt32) {
            if handle < highWater { hg_prefetch(base + Int(handle)) }
        }
    }

    var view: View { View(base: base, highWater: highWater) }

    /// Starts loading an entry into the cache (a walk some handles ahead of its work). Ignores
    /// tombstones and handles never handed out.
    @inline(__always)
    func prefetch(_ handle: UInt32) { view.prefetch(handle) }

    /// A fresh entry (its `list` says free until the caller links it). Returns nil when
    /// 2^32 - 1 entries are live.
    mutating func allocate() -> UInt32? {
        if freeHead != nilHandle {
            let handle = freeHead
            freeHead = base[Int(handle)].position
            return handle
        }
        if Int(highWater) == capacity {
            guard capacity < Slab.maxHandles else { return nil }
            grow()
        }
        let handle = highWater
        highWater += 1
        (base + Int(handle)).initialize(to: Entry())
        return handle
    }


    mutating func release(_ handle: UInt32) {
        let entry = ptr(handle)
        entry.pointee.list = ListID.free
        entry.pointee.generation &+= 1
        entry.pointee.position = freeHead
        freeHead = handle
    }


    mutating func grow() {
        let newCapacity = min(max(capacity * 2, 64), Slab.maxHandles)
        reserve(newCapacity)
    }


    mutating func reserve(_ newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let stride = MemoryLayout<Entry>.stride
        guard let memory = hg_table_reallocate(base, capacity * stride, newCapacity * stride) else {
            fatalError("Hourglass: out of memory growing the timer slab to \(newCapacity) entries")
        }
        base = memory.bindMemory(to: Entry.self, capacity: newCapacity)
        capacity = newCapacity
    }

    /// Bytes allocated for entries.
    var allocatedBytes: Int { capacity * MemoryLayout<Entry>.stride }
}
