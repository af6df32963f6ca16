/// A description of what is wrong with bytes that should be a header or trailer.
package struct FormatProblem: Error, Equatable, Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
    package var description: String
    package init(stringLiteral value: String) { description = value }
    package init(stringInterpolation: DefaultStringInterpolation) { description = String(stringInterpolation: stringInterpolation) }
}
