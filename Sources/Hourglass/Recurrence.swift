import HourglassCore

/// How a recurring timer repeats: every fixed period, or at the times a cron expression names
/// in a time zone; optionally a given number of times.
///
/// ```swift
/// // The payment pattern: ask the provider every minute, three times.
/// try await engine.schedule(id: "payment-7", repeating: .every(.seconds(60), count: 3))
/// // A nightly sweep at 02:30 Berlin time.
/// try await engine.schedule(id: "coupon-sweep", repeating: .cron("30 2 * * *", timeZone: "Europe/Berlin"))
/// ```
///
/// One occurrence is in flight at a time: the next is armed when the current one is
/// acknowledged, taken (at most once), or out of attempts — in the same logged step, so a
/// crash neither loses the series nor repeats an acknowledged occurrence. See
/// `Docs/RECURRING.md`.
public struct Recurrence: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case every(milliseconds: Int64)
        case cron(expression: String, timeZone: String)
    }

    let kind: Kind
    /// How many occurrences in all (nil: without end). At least 1.
    public var count: Int?
    /// What happens to occurrences that fell due while the process was down or the consumer
    /// was behind.
    public var misfire: MisfirePolicy

    /// Every `period` (a whole number of milliseconds, rounded up; at least 1 ms). The first
    /// occurrence is one period from now unless `schedule(id:repeating:startingAt:)` names it;
    /// each next one is one period after the one before (not after its acknowledgement).
    public static func every(_ period: Duration, count: Int? = nil, misfire: MisfirePolicy = .fireOnceNow) -> Recurrence {
        Recurrence(kind: .every(milliseconds: period.wholeMillisecondsRoundedUp), count: count, misfire: misfire)
    }

    /// At the times a cron expression names, as wall time in `timeZone` (an IANA name such as
    /// "Europe/Berlin"; UTC by default). Five fields (minute hour day-of-month month
    /// day-of-week) or six with seconds first (Spring, Quartz); see `Docs/CRON.md`.
    public static func cron(_ expression: String, timeZone: String = "UTC", count: Int? = nil,
                            misfire: MisfirePolicy = .fireOnceNow) -> Recurrence {
        Recurrence(kind: .cron(expression: expression, timeZone: timeZone), count: count, misfire: misfire)
    }

    /// "every 60000 ms", "cron '30 2 * * *' in Europe/Berlin", with the count and policy.
    public var description: String {
        var text: String
        switch kind {
        case let .every(ms): text = "every \(ms) ms"
        case let .cron(expression, zone): text = "cron '\(expression)' in \(zone)"
        }
        if let count { text += ", \(count) times" }
        if misfire != .fireOnceNow { text += ", misfire \(misfire)" }
        return text
    }
}

/// What a recurring timer does with occurrences that fell due more than
/// `Configuration.misfireThreshold` ago (while the process was down, or while the consumer was
/// behind). Occurrences late by less than the threshold simply fire late, one at a time. Quartz's
/// misfire instructions are the model; see `Docs/RECURRING.md`.
public enum MisfirePolicy: Sendable, Hashable, CustomStringConvertible {
    /// Fire once now for all the occurrences due, then continue from the next future one. The
    /// delivery names the latest of them (`Delivery.occurrence`) and how many it stands for
    /// (`Delivery.coalesced`). The default.
    case fireOnceNow
    /// Fire every missed occurrence, one after the other (each as its own delivery, the next
    /// once the one before is acknowledged).
    case fireAll
    /// Skip the missed occurrences: fire the latest due one if it is within the threshold, else
    /// wait for the next future one. The delivery's `coalesced` counts the skipped ones too.
    case skip

    /// The policy's name: "fireOnceNow", "fireAll", "skip".
    public var description: String {
        switch self {
        case .fireOnceNow: return "fireOnceNow"
        case .fireAll: return "fireAll"
        case .skip: return "skip"
        }
    }
}
