import ArgumentParser

@main
struct HourglassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hourglass",
        abstract: "Durable timers: schedule by id, cancel cheaply, fire at the exact millisecond.",
        subcommands: [DemoCommand.self])
}
