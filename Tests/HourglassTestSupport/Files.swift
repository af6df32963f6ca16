import HourglassStorage
import HourglassTesting
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Names of the files in the directory at `path`, sorted (none if it cannot be read).
public func fileNames(in path: String) -> [String] { listDirectory(path).sorted() }


/// Reads a whole file.
public func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { return [] }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes += buffer[0 ..< count]
    }
    return bytes
}

/// Overwrites `bytes` at `offset` of an existing file (to damage it in tests).
public func patchFile(_ path: String, at offset: Int, with bytes: [UInt8]) {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0, "cannot open \(path)")
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
    precondition(written == bytes.count)
}

/// The size of a file, or -1.
public func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : -1
}

/// Writes a whole file (replacing it).
public func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let file = fopen(path, "wb") else { preconditionFailure("cannot write \(path)") }
    defer { fclose(file) }
    if !bytes.isEmpty { precondition(fwrite(bytes, 1, bytes.count, file) == bytes.count) }
}

/// Deletes a file.
public func deleteFile(_ path: String) { unlink(path) }

extension TemporaryDirectory {
    /// Every file's bytes, to put back later (a crash "before deletion").
    public func snapshot() -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for name in self.files() where name != "LOCK" { files[name] = readFile(appending(name)) }
        return files
    }

    /// Writes back the files of a snapshot named in `names`.
    public func restore(_ snapshot: [String: [UInt8]], only names: (String) -> Bool) {
        for (name, bytes) in snapshot where names(name) { writeFile(appending(name), bytes) }
    }
}
