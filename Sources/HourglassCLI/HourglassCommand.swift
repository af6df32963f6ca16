import ArgumentParser

@main
struct HourglassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hourglass",
        abstract: "Durable timers: schedule by id, cancel cheaply, fire at the exact millisecond.",
        discussion: "Every subcommand that takes --dir opens the directory exclusively: while an engine runs on it, they say so and exit 2.",
        subcommands: [RunCommand.self, DumpCommand.self, InspectCommand.self, VerifyCommand.self, CheckpointCommand.self, DemoCommand.self])
}
