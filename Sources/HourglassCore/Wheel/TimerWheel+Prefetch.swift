import CHourglass

/// Prefetching: the stages of the software pipeline a caller runs over a batch, so that the
/// cache misses of many operations overlap. Prefetching never changes the wheel.
extension TimerWheel {
    /// Starts loading the index slot of `id` into the cache: the first stage of a software
    /// pipeline over a batch of operations. A caller about to schedule or cancel many ids calls
    /// this some operations ahead (then `prefetchEntry` and `prefetchBytes` closer to the
    /// operation), so that the cache misses of many operations overlap instead of following one
    /// another. Prefetching never changes the wheel.
    @inline(__always)
    package func prefetchIndex(id: UnsafeRawBufferPointer) {
        guard id.count > 0 else { return }
        index.prefetch(tag: IDIndex.tag(hashID(id, seed: index.seed)))
    }

    /// The second stage: probes the index (loaded by `prefetchIndex`) and starts loading the
    /// entry of the timer with this id, if one is held.
    @inline(__always)
    package func prefetchEntry(id: UnsafeRawBufferPointer) {
        if let entry = probeForPrefetch(id) { hg_prefetch(entry) }
    }

    /// The third stage: reads the entry (loaded by `prefetchEntry`) and starts loading the timer's
    /// id bytes and its place in its slot, which cancelling touches.
    @inline(__always)
    package func prefetchBytes(id: UnsafeRawBufferPointer) {
        guard let entry = probeForPrefetch(id) else { return }
        hg_prefetch(arena.pointer(entry.pointee.arenaOffset))
        let list = Int(entry.pointee.list)
        if list < ListID.count { slots[list].prefetch(at: entry.pointee.position) }
    }

    @inline(__always)
    func probeForPrefetch(_ id: UnsafeRawBufferPointer) -> UnsafeMutablePointer<Entry>? {
        guard id.count > 0 else { return nil }
        var probe = index.probe(tag: IDIndex.tag(hashID(id, seed: index.seed)))
        return probe.nextCandidate().map { slab.ptr($0) }
    }

    /// Starts loading a timer's entry into the cache (for a caller about to read many timers in
    /// a known order). Harmless for a free handle.
    @inline(__always)
    package func prefetch(_ handle: TimerHandle) {
        slab.prefetch(handle.rawValue)
    }

    /// The second stage of `prefetch`: reads the entry (loaded by then) and starts loading the
    /// timer's id and payload bytes, up to 256 of them. Harmless for a free handle.
    @inline(__always)
    package func prefetchBytes(_ handle: TimerHandle) {
        guard handle.rawValue < slab.highWater else { return }
        let entry = slab.ptr(handle.rawValue)
        guard entry.pointee.list != ListID.free else { return }
        let start = arena.pointer(entry.pointee.arenaOffset)
        let length = min(256, Int(entry.pointee.idLength) + Int(entry.pointee.payloadLength))
        var offset = 0
        repeat {
            hg_prefetch(start + offset)
            offset += 64
        } while offset < length
    }
}
