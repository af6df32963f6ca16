#if canImport(Glibc)
import Glibc
#endif

/// `--plot DIR`: the results as SVG charts, written by hand (plain text, no library):
///
/// - `throughput.svg`: throughput per scenario and system (log scale);
/// - `lateness.svg`: the lateness scenario's p50, p99 and max per system (log scale);
/// - `lateness-sweep.svg`: with `--sweep`, p99 lateness against the due rate, per system, with
///   the 10 ms bound.
///
/// A chart whose rows did not run is not written. Returns the files written.
func writeCharts(_ rows: [Measurement], to directory: String, title: String) throws -> [String] {
    if mkdir(directory, 0o755) != 0 && errno != EEXIST {
        throw PlotError("cannot create \(directory) (errno \(errno))")
    }
    var written: [String] = []
    let ran = rows.filter { $0.unavailable == nil }
    let charts: [(String, String?)] = [
        ("throughput.svg", throughputChart(ran, title: title)),
        ("lateness.svg", latenessChart(ran, title: title)),
        ("lateness-sweep.svg", sweepChart(ran, title: title)),
    ]
    for (name, svg) in charts {
        guard let svg else { continue }
        let path = directory + "/" + name
        guard let file = fopen(path, "w") else { throw PlotError("cannot write \(path) (errno \(errno))") }
        let bytes = Array(svg.utf8)
        let count = fwrite(bytes, 1, bytes.count, file)
        fclose(file)
        guard count == bytes.count else { throw PlotError("cannot write \(path): short write") }
        written.append(path)
    }
    return written
}

struct PlotError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: The charts

/// Throughput of every scenario but the lateness ones (which have their own charts).
func throughputChart(_ rows: [Measurement], title: String) -> String? {
    let chosen = rows.filter { !$0.scenario.hasPrefix("lateness") && $0.throughput > 0 }
    guard !chosen.isEmpty else { return nil }
    var groups: [BarGroup] = []
    for row in chosen {
        let bar = Bar(series: row.system, value: row.throughput, label: formatRate(row.throughput))
        if let index = groups.firstIndex(where: { $0.label == row.scenario }) {
            groups[index].bars.append(bar)
        } else {
            groups.append(BarGroup(label: row.scenario, bars: [bar]))
        }
    }
    return barChart(title: "Throughput per scenario and system", subtitle: title, axis: "operations per second (log scale)",
                    groups: groups, format: compactCount)
}

/// The lateness scenario's percentiles per system.
func latenessChart(_ rows: [Measurement], title: String) -> String? {
    let chosen = rows.filter { $0.scenario == "lateness" && $0.p50 != nil }
    guard !chosen.isEmpty else { return nil }
    let groups = chosen.map { row in
        BarGroup(label: row.system, bars: [("p50", row.p50), ("p99", row.p99), ("max", row.max)].compactMap { name, value in
            value.map { Bar(series: name, value: max($0, 0.001), label: "\(name) \(formatMilliseconds($0)) ms") }
        })
    }
    return barChart(title: "Lateness: fired-at minus deadline", subtitle: title, axis: "milliseconds (log scale)",
                    groups: groups, format: { formatMilliseconds($0) })
}

/// p99 against the due rate, one line per system, from the sweep's steps.
func sweepChart(_ rows: [Measurement], title: String) -> String? {
    var lines: [(series: String, points: [(x: Double, y: Double)])] = []
    for row in rows where row.scenario.hasPrefix("lateness sweep: ") && row.scenario != SweepPlan.summaryScenario {
        guard let rate = row.extra.first(where: { $0.0 == "due_per_second" })?.1, let p99 = row.p99 else { continue }
        let point = (x: rate, y: max(p99, 0.001))
        if let index = lines.firstIndex(where: { $0.series == row.system }) {
            lines[index].points.append(point)
        } else {
            lines.append((row.system, [point]))
        }
    }
    guard !lines.isEmpty else { return nil }
    return lineChart(title: "Lateness sweep: p99 against the due rate", subtitle: title, xAxis: "timers due per second (log scale)",
                     yAxis: "p99 lateness, ms (log scale)", lines: lines, bound: SweepPlan.boundMs)
}

// MARK: Drawing

struct Bar {
    var series: String
    var value: Double
    var label: String
}

struct BarGroup {
    var label: String
    var bars: [Bar]
}

/// The colour of a series: a system, or a percentile.
func color(_ series: String) -> String {
    switch series {
    case "hourglass": return "#2364c8"
    case "heap": return "#e3872d"
    case "sqlite": return "#3f9b3a"
    case "wheel": return "#7a4cc2"
    case "p50": return "#7fb2e5"
    case "p99": return "#2364c8"
    case "max": return "#12315f"
    default: return "#888888"
    }
}

/// A power of ten for an axis: 1, 10, 100, 1k, 10k, 100k, 1M, ...
func compactCount(_ value: Double) -> String {
    if value >= 1e9 { return "\(Int64((value / 1e9).rounded()))G" }
    if value >= 1e6 { return "\(Int64((value / 1e6).rounded()))M" }
    if value >= 1e3 { return "\(Int64((value / 1e3).rounded()))k" }
    if value >= 1 { return "\(Int64(value.rounded()))" }
    return formatMilliseconds(value)
}

/// Escapes text for SVG.
func xml(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}

/// A number for an SVG attribute (one decimal).
func n(_ value: Double) -> String {
    let tenths = (value * 10).rounded()
    return tenths == tenths.rounded(.towardZero) && Int64(tenths) % 10 == 0 ? "\(Int64(tenths) / 10)" : "\(tenths / 10)"
}

/// Powers of ten covering `low ... high`, as exponents.
func decades(_ low: Double, _ high: Double) -> ClosedRange<Int> {
    let from = Int((log10(max(low, 1e-9))).rounded(.down))
    let to = max(from + 1, Int((log10(max(high, 1e-9))).rounded(.up)))
    return from ... to
}

/// Horizontal bars, grouped, on a log scale.
func barChart(title: String, subtitle: String, axis: String, groups: [BarGroup], format: (Double) -> String) -> String {
    let series = groups.flatMap { $0.bars.map(\.series) }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    let values = groups.flatMap { $0.bars.map(\.value) }
    let range = decades(values.min() ?? 1, values.max() ?? 10)
    let labelWidth = 300.0, plotWidth = 560.0, valueWidth = 110.0, barHeight = 16.0, barGap = 3.0, groupGap = 14.0
    let top = 78.0
    let plotHeight = groups.reduce(0.0) { $0 + Double($1.bars.count) * (barHeight + barGap) + groupGap }
    let width = labelWidth + plotWidth + valueWidth + 20
    let height = top + plotHeight + 50
    func x(_ value: Double) -> Double {
        let position = (log10(max(value, 1e-9)) - Double(range.lowerBound)) / Double(range.upperBound - range.lowerBound)
        return labelWidth + max(0, min(1, position)) * plotWidth
    }
    var svg = header(width: width, height: height, title: title, subtitle: subtitle)
    // The legend.
    var legendX = labelWidth
    for name in series {
        svg += "<rect x=\"\(n(legendX))\" y=\"52\" width=\"12\" height=\"12\" fill=\"\(color(name))\"/>"
        svg += "<text x=\"\(n(legendX + 16))\" y=\"62\" font-size=\"12\">\(xml(name))</text>\n"
        legendX += 24 + Double(name.count) * 7.5
    }
    // The grid, one line per decade.
    for exponent in range {
        let value = pow(10, Double(exponent))
        let gx = x(value)
        svg += "<line x1=\"\(n(gx))\" y1=\"\(n(top - 4))\" x2=\"\(n(gx))\" y2=\"\(n(top + plotHeight))\" stroke=\"#dddddd\"/>"
        svg += "<text x=\"\(n(gx))\" y=\"\(n(top + plotHeight + 16))\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555555\">\(xml(format(value)))</text>\n"
    }
    svg += "<text x=\"\(n(labelWidth + plotWidth / 2))\" y=\"\(n(top + plotHeight + 36))\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333333\">\(xml(axis))</text>\n"
    var y = top
    for group in groups {
        let groupHeight = Double(group.bars.count) * (barHeight + barGap)
        svg += "<text x=\"\(n(labelWidth - 8))\" y=\"\(n(y + groupHeight / 2 + 4))\" font-size=\"12\" text-anchor=\"end\">\(xml(group.label))</text>\n"
        for bar in group.bars {
            let end = x(bar.value)
            svg += "<rect x=\"\(n(labelWidth))\" y=\"\(n(y))\" width=\"\(n(max(1, end - labelWidth)))\" height=\"\(n(barHeight))\" fill=\"\(color(bar.series))\"><title>\(xml(group.label)), \(xml(bar.series)): \(xml(bar.label))</title></rect>"
            svg += "<text x=\"\(n(end + 4))\" y=\"\(n(y + barHeight - 4))\" font-size=\"11\" fill=\"#333333\">\(xml(bar.label))</text>\n"
            y += barHeight + barGap
        }
        y += groupGap
    }
    return svg + "</svg>\n"
}

/// Lines on log-log axes, with a horizontal dashed bound.
func lineChart(title: String, subtitle: String, xAxis: String, yAxis: String, lines: [(series: String, points: [(x: Double, y: Double)])], bound: Double) -> String {
    let xs = lines.flatMap { $0.points.map(\.x) }
    let ys = lines.flatMap { $0.points.map(\.y) } + [bound]
    let xRange = decades(xs.min() ?? 1, xs.max() ?? 10)
    let yRange = decades(ys.min() ?? 1, ys.max() ?? 10)
    let left = 80.0, top = 78.0, plotWidth = 640.0, plotHeight = 360.0
    let width = left + plotWidth + 40, height = top + plotHeight + 60
    func px(_ value: Double) -> Double {
        left + (log10(value) - Double(xRange.lowerBound)) / Double(xRange.upperBound - xRange.lowerBound) * plotWidth
    }
    func py(_ value: Double) -> Double {
        top + plotHeight - (log10(value) - Double(yRange.lowerBound)) / Double(yRange.upperBound - yRange.lowerBound) * plotHeight
    }
    var svg = header(width: width, height: height, title: title, subtitle: subtitle)
    var legendX = left
    for line in lines {
        svg += "<rect x=\"\(n(legendX))\" y=\"52\" width=\"12\" height=\"12\" fill=\"\(color(line.series))\"/>"
        svg += "<text x=\"\(n(legendX + 16))\" y=\"62\" font-size=\"12\">\(xml(line.series))</text>\n"
        legendX += 24 + Double(line.series.count) * 7.5
    }
    for exponent in xRange {
        let gx = px(pow(10, Double(exponent)))
        svg += "<line x1=\"\(n(gx))\" y1=\"\(n(top))\" x2=\"\(n(gx))\" y2=\"\(n(top + plotHeight))\" stroke=\"#dddddd\"/>"
        svg += "<text x=\"\(n(gx))\" y=\"\(n(top + plotHeight + 16))\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555555\">\(xml(compactCount(pow(10, Double(exponent)))))</text>\n"
    }
    for exponent in yRange {
        let gy = py(pow(10, Double(exponent)))
        svg += "<line x1=\"\(n(left))\" y1=\"\(n(gy))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(gy))\" stroke=\"#dddddd\"/>"
        svg += "<text x=\"\(n(left - 6))\" y=\"\(n(gy + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#555555\">\(xml(formatMilliseconds(pow(10, Double(exponent)))))</text>\n"
    }
    let by = py(bound)
    svg += "<line x1=\"\(n(left))\" y1=\"\(n(by))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(by))\" stroke=\"#c0392b\" stroke-dasharray=\"6 4\"/>"
    svg += "<text x=\"\(n(left + plotWidth - 4))\" y=\"\(n(by - 5))\" font-size=\"11\" text-anchor=\"end\" fill=\"#c0392b\">bound: p99 ≤ \(xml(formatMilliseconds(bound))) ms</text>\n"
    for line in lines {
        let points = line.points.sorted { $0.x < $1.x }
        let path = points.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " ")
        svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color(line.series))\" stroke-width=\"2\"/>\n"
        for point in points {
            svg += "<circle cx=\"\(n(px(point.x)))\" cy=\"\(n(py(point.y)))\" r=\"3.5\" fill=\"\(color(line.series))\"><title>\(xml(line.series)): \(xml(formatRate(point.x))) due, p99 \(xml(formatMilliseconds(point.y))) ms</title></circle>\n"
        }
    }
    svg += "<text x=\"\(n(left + plotWidth / 2))\" y=\"\(n(top + plotHeight + 40))\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333333\">\(xml(xAxis))</text>\n"
    svg += "<text x=\"18\" y=\"\(n(top + plotHeight / 2))\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333333\" transform=\"rotate(-90 18 \(n(top + plotHeight / 2)))\">\(xml(yAxis))</text>\n"
    return svg + "</svg>\n"
}

private func header(width: Double, height: Double, title: String, subtitle: String) -> String {
    """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(n(width))" height="\(n(height))" viewBox="0 0 \(n(width)) \(n(height))" font-family="Helvetica, Arial, sans-serif">
    <rect width="100%" height="100%" fill="#ffffff"/>
    <text x="16" y="24" font-size="16" font-weight="bold">\(xml(title))</text>
    <text x="16" y="42" font-size="12" fill="#555555">\(xml(subtitle))</text>

    """
}
