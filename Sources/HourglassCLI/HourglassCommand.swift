import ArgumentParser

@main
struct HourglassCommand: AsyncParsableCommand {
    /// Usage errors exit 2 (Docs/COMMAND.md), not the argument parser's 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure || code.rawValue == 64 {
                printError(fullMessage(for: error))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "hourglass",
        abstract: "Durable timers: schedule by id, cancel cheaply, fire at the exact millisecond.",
        discussion: "Every subcommand that takes --dir opens the directory exclusively: while an engine runs on it, they say so and exit 2.",
        subcommands: [RunCommand.self, DumpCommand.self, InspectCommand.self, VerifyCommand.self, CheckpointCommand.self, DemoCommand.self])
}
