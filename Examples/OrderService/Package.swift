// swift-tools-version:6.1
import PackageDescription

// An order service built on Hourglass: a Hummingbird 2 HTTP server, orders in SQLite (GRDB),
// unpaid orders closed by durable timers, Prometheus metrics. A package of its own, depending
// on the Hourglass package two directories up, so that Hourglass's own build stays lean.
let package = Package(
    name: "OrderService",
    products: [
        .executable(name: "order-service", targets: ["OrderServiceMain"]),
    ],
    dependencies: [
        .package(name: "Hourglass", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // The service: store, timers, routes. A library, so that tests can build it in process.
        .target(
            name: "OrderService",
            dependencies: [
                .product(name: "Hourglass", package: "Hourglass"),
                .product(name: "HourglassServiceLifecycle", package: "Hourglass"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `order-service`: parses its options, bootstraps logging and metrics, runs.
        .executableTarget(
            name: "OrderServiceMain",
            dependencies: [
                "OrderService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "OrderServiceTests",
            dependencies: [
                "OrderService",
                .product(name: "Hourglass", package: "Hourglass"),
                .product(name: "HourglassTesting", package: "Hourglass"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
