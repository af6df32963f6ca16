// swift-tools-version:6.1
import PackageDescription

/// Checks such as `_checkInvariants()` run after every mutation in debug builds (the tests);
/// release builds compile them out.
let internalChecks: [SwiftSetting] = [
    .define("HOURGLASS_INTERNAL_CHECKS", .when(configuration: .debug)),
]

// Linux (glibc) only: the storage layer calls fallocate, fdatasync and SEEK_DATA through
// Glibc, so no `platforms:` entry claims anything else (see README.md, Sharp edges).
let package = Package(
    name: "Hourglass",
    products: [
        .library(name: "Hourglass", targets: ["Hourglass"]),
        // For users' own tests: ManualClock, temporary directories, an engine under test.
        .library(name: "HourglassTesting", targets: ["HourglassTesting"]),
        // HourglassService, a swift-service-lifecycle Service (its own product, so that the
        // Hourglass library does not depend on swift-service-lifecycle).
        .library(name: "HourglassServiceLifecycle", targets: ["HourglassServiceLifecycle"]),
        // A fleet of nodes on PostgreSQL (postgres-nio): its own product, so that the Hourglass
        // library does not depend on postgres-nio, SwiftNIO or their TLS stack.
        .library(name: "HourglassFleet", targets: ["HourglassFleet"]),
        .executable(name: "hourglass", targets: ["HourglassCLI"]),
        .executable(name: "hourglass-bench", targets: ["HourglassBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // liblz4 from the system (Debian: liblz4-dev).
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // CRC-32C (SSE4.2 with a portable fallback) and the few libc calls Swift cannot see.
        .target(name: "CHourglass"),
        // Layer 1: the timing wheel, the record and frame codecs. No system calls.
        .target(
            name: "HourglassCore",
            dependencies: ["CHourglass", "CLZ4"],
            swiftSettings: internalChecks
        ),
        // Layer 2: files, mmap'd segments, the write-ahead log, checkpoints.
        .target(
            name: "HourglassStorage",
            dependencies: [
                "HourglassCore", "CHourglass",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: internalChecks
        ),
        // Layer 3: the engine and the public API.
        .target(
            name: "Hourglass",
            dependencies: [
                "HourglassCore", "HourglassStorage", "CHourglass",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: internalChecks
        ),
        // The test kit users' tests import (as swift-metrics ships MetricsTestKit); the
        // project's own suites use it too.
        .target(
            name: "HourglassTesting",
            dependencies: ["Hourglass", "HourglassStorage"]
        ),
        // The engine's consumer as a swift-service-lifecycle Service.
        .target(
            name: "HourglassServiceLifecycle",
            dependencies: [
                "Hourglass",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The fleet: partition logs in PostgreSQL, leases with epochs, one fenced owner per
        // partition holding its wheel (Docs/REPLICATION.md).
        .target(
            name: "HourglassFleet",
            dependencies: [
                "Hourglass", "HourglassCore", "HourglassStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: internalChecks
        ),
        // Layer 4: the `hourglass` command.
        .executableTarget(
            name: "HourglassCLI",
            dependencies: [
                "Hourglass", "HourglassCore", "HourglassStorage", "HourglassFleet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The benchmark executable, `hourglass-bench`, and its allocation counter (an
        // interposed malloc: linked into the benchmark only).
        .target(name: "CBenchSupport", path: "Benchmarks/CBenchSupport"),
        .executableTarget(
            name: "HourglassBench",
            dependencies: [
                "Hourglass", "HourglassCore", "HourglassStorage", "HourglassTesting", "HourglassFleet", "CBenchSupport",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/HourglassBench"
        ),

        // The project's white-box test helpers, below the engine: seeded random numbers, the
        // reference wheel, the simulated and faulty file systems, file patching. Temporary
        // directories come from HourglassTesting (public), which the engine's suites also use for
        // ManualClock and engines under test.
        .target(
            name: "HourglassTestSupport",
            dependencies: [
                "HourglassCore", "HourglassStorage", "HourglassTesting",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Tests/HourglassTestSupport"
        ),
        .testTarget(
            name: "HourglassCoreTests",
            dependencies: ["HourglassCore", "HourglassTestSupport"],
            swiftSettings: internalChecks
        ),
        .testTarget(
            name: "HourglassStorageTests",
            dependencies: ["HourglassStorage", "HourglassCore", "HourglassTestSupport", "HourglassTesting"],
            swiftSettings: internalChecks
        ),
        .testTarget(
            name: "HourglassCLITests",
            dependencies: ["HourglassCLI", "Hourglass", "HourglassTestSupport", "HourglassTesting"]
        ),
        .testTarget(
            name: "HourglassServiceLifecycleTests",
            dependencies: [
                "Hourglass", "HourglassServiceLifecycle", "HourglassTesting", "HourglassTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "HourglassFleetTests",
            dependencies: [
                "Hourglass", "HourglassFleet", "HourglassCore", "HourglassTesting", "HourglassTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "HourglassTestingTests",
            dependencies: ["Hourglass", "HourglassTesting"]
        ),
        .testTarget(
            name: "HourglassTests",
            dependencies: [
                "Hourglass", "HourglassCore", "HourglassTestSupport", "HourglassTesting",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: internalChecks
        ),
    ]
)

// The documentation plugin only when building the documentation (`scripts/docs` sets
// HOURGLASS_DOCS=1), so that it is no part of the library's dependency graph: neither CI's build
// nor a user's resolves or fetches it.
if Context.environment["HOURGLASS_DOCS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"))
}
