//! Hand-written SVG bar charts for the book's appendix "How fast is it?".
//!
//! Why by hand and not with a plotting crate: a chart here is a few dozen rectangles, lines and
//! words; the book commits the SVG next to the table the same run printed, so it must be the same
//! bytes for the same numbers; and a reader can follow every pixel of it in this one file. The
//! output is plain SVG with no scripts, styles, fonts or images from elsewhere, so mdBook, a
//! browser and an image viewer all draw the same picture.
//!
//! Why a log scale: start times span orders of magnitude (the `unshare` floor under a millisecond,
//! runtimes in tens of milliseconds, a VM in seconds). On a linear axis everything but the VM would
//! be a sliver; on a log axis equal *ratios* get equal lengths, and ratios ("3x faster") are what
//! the appendix compares.

use std::fmt::Write as _;

/// One bar: a measured median and its spread (e.g. the 25th and 75th percentile).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub highlight: bool,
}

/// One horizontal bar chart with a log10 value axis.
pub struct Panel {
    pub title: String,
    pub unit: Unit,
    pub bars: Vec<Bar>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Milliseconds,
    Mebibytes,
}

// Layout in SVG user units (pixels at 100 % zoom).
const PAD: f64 = 16.0;
const MIN_WIDTH: f64 = 720.0;
const MIN_PLOT: f64 = 360.0;
/// Room right of the plot for the value written after the longest bar ("1023 GiB").
const RIGHT: f64 = 72.0;
/// Average advance of a 12 px sans-serif glyph. Without a font rasteriser text cannot be measured,
/// so the label column is sized from the character count; 7 px is generous for common faces.
const CHAR_W: f64 = 7.0;
const ROW: f64 = 22.0;
const BAR_H: f64 = 14.0;
/// An axis shows at most this many decades; anything smaller sits at its left edge. One stray
/// 1e-300 must not turn the chart into three hundred gridlines.
const MAX_DECADES: i32 = 7;

const HIGHLIGHT: &str = "#d9480f";
const NEUTRAL: &str = "#4c6ef5";
const INK: &str = "#212529";
const MUTED: &str = "#868e96";
const GRID: &str = "#ced4da";
const GRID_MINOR: &str = "#f1f3f5";

/// A whole SVG document: `title` on top, the panels stacked vertically, `caption` (the machine, the
/// command) at the bottom in small type, one line per `\n`.
///
/// All panels share one label column, so their plot areas line up and the eye can move straight
/// down from one chart to the next.
pub fn svg(title: &str, panels: &[Panel], caption: &str) -> String {
    let longest = panels.iter().flat_map(|p| &p.bars).map(|b| b.label.chars().count()).max().unwrap_or(0);
    let left = PAD + longest as f64 * CHAR_W + 10.0;
    let width = (left + MIN_PLOT + RIGHT).max(MIN_WIDTH);
    let mut body = String::new();
    text(&mut body, PAD, 28.0, "font-size=\"16\" font-weight=\"bold\"", title);
    let mut y = 36.0;
    for p in panels {
        y = panel(&mut body, p, left, width - left - RIGHT, y) + 8.0;
    }
    for line in caption.lines() {
        y += 13.0;
        text(&mut body, PAD, y, &format!("font-size=\"10\" fill=\"{MUTED}\""), line);
    }
    let (w, h) = (num(width), num(y + 12.0));
    // The white rectangle comes first: the book has dark themes, and a transparent chart would put
    // dark text on a dark page. `xmlns` is a name, not a download.
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\" fill=\"{INK}\">\n\
         <title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n{body}</svg>\n",
        escape(title)
    )
}

/// How a value reads in this unit: 0.52 ms -> "0.52 ms", 7.7 -> "7.7 ms", 143 -> "143 ms", 12400 -> "12.4 s";
/// MiB: 0.75 -> "768 KiB", 3.2 -> "3.2 MiB", 2048 -> "2.0 GiB". Not finite -> "n/a".
///
/// The unit is the largest one the value reaches, so the number stays between 1 and 1000 (below
/// 0.1 ms, microseconds). Three significant digits at most: run-to-run noise is larger than that.
pub fn format_value(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    if value < 0.0 {
        return format!("-{}", format_value(-value, unit));
    }
    // (from this value on, divide by, name)
    let scales: &[(f64, f64, &str)] = match unit {
        Unit::Milliseconds => &[(0.0, 0.001, "µs"), (0.1, 1.0, "ms"), (1000.0, 1000.0, "s")],
        Unit::Mebibytes => &[(0.0, 1.0 / 1048576.0, "B"), (1.0 / 1024.0, 1.0 / 1024.0, "KiB"), (1.0, 1.0, "MiB"), (1024.0, 1024.0, "GiB"), (1048576.0, 1048576.0, "TiB")],
    };
    if value == 0.0 {
        return format!("0 {}", scales[1].2);
    }
    // 0.05 % slack, so that 999.7 ms reads "1.0 s" rather than "1000 ms" after rounding.
    let (_, divisor, name) = scales.iter().rev().find(|(from, _, _)| value >= from * 0.9995).unwrap_or(&scales[0]);
    let n = value / divisor;
    let decimals = if n < 0.995 {
        2
    } else if n < 99.95 {
        1
    } else {
        0
    };
    format!("{n:.decimals$} {name}")
}

/// The value axis of one panel: the whole decades `10^lo ..= 10^hi`, drawn from `x0` over `width`.
/// Whole decades because a reader can count gridlines ("two decades slower") but not guess where
/// an axis that starts at 3.7 ms puts 10 ms.
struct Axis {
    lo: i32,
    hi: i32,
    x0: f64,
    width: f64,
}

impl Axis {
    fn new(bars: &[Bar], x0: f64, width: f64) -> Axis {
        let usable = bars.iter().flat_map(|b| [b.value, b.low, b.high]).filter(|v| v.is_finite() && *v > 0.0);
        let (min, max) = usable.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, mut hi) = if min.is_finite() { (min.log10().floor() as i32, max.log10().ceil() as i32) } else { (0, 1) };
        if hi <= lo {
            hi = lo + 1; // all values one power of ten: still show one decade
        }
        Axis { lo: lo.max(hi - MAX_DECADES), hi, x0, width }
    }

    /// Where a value goes. A log scale has no place for zero, negatives or NaN: they sit at the
    /// left edge (a bar of no length) rather than poisoning the coordinates.
    fn x(&self, value: f64) -> f64 {
        self.x_log(if value.is_finite() && value > 0.0 { value.log10() } else { f64::from(self.lo) })
    }

    fn x_log(&self, log: f64) -> f64 {
        self.x0 + ((log - f64::from(self.lo)) / f64::from(self.hi - self.lo)).clamp(0.0, 1.0) * self.width
    }
}

/// Draws one panel from `y` down; returns where it ends.
fn panel(out: &mut String, p: &Panel, left: f64, plot_width: f64, mut y: f64) -> f64 {
    y += 20.0;
    text(out, PAD, y, "font-size=\"13\" font-weight=\"bold\"", &p.title);
    y += 8.0;
    if p.bars.is_empty() {
        text(out, left, y + 15.0, &format!("fill=\"{MUTED}\" font-style=\"italic\""), "no measurements");
        return y + ROW;
    }
    let axis = Axis::new(&p.bars, left, plot_width);
    let bottom = y + ROW * p.bars.len() as f64;
    // Gridlines first, so the bars paint over them. The 2 and 5 lines let a reader place a bar
    // within its decade; they are lighter so the decades stay the landmarks.
    for e in axis.lo..axis.hi {
        for m in [2.0_f64, 5.0] {
            let x = axis.x_log(f64::from(e) + m.log10());
            line(out, x, y, x, bottom, GRID_MINOR);
        }
    }
    for e in axis.lo..=axis.hi {
        let x = axis.x_log(f64::from(e));
        line(out, x, y, x, bottom, GRID);
        text(out, x, bottom + 14.0, &format!("text-anchor=\"middle\" font-size=\"11\" fill=\"{MUTED}\""), &tick_label(e, p.unit));
    }
    for (i, bar) in p.bars.iter().enumerate() {
        draw_bar(out, bar, &axis, p.unit, y + ROW * (i as f64 + 0.5));
    }
    bottom + 20.0
}

/// One row centred on `cy`: label, bar, whisker, value. Text baselines sit 4 px below the centre,
/// about half a 12 px capital, which centres the words without `dominant-baseline` (not every
/// renderer honours it).
fn draw_bar(out: &mut String, bar: &Bar, axis: &Axis, unit: Unit, cy: f64) {
    // carton's own bars are bold as well as orange, for readers (and printers) who cannot tell colours apart.
    let (colour, weight) = if bar.highlight { (HIGHLIGHT, " font-weight=\"bold\"") } else { (NEUTRAL, "") };
    text(out, axis.x0 - 10.0, cy + 4.0, &format!("text-anchor=\"end\"{weight}"), &bar.label);
    let mut end = axis.x0;
    if bar.value.is_finite() {
        end = axis.x(bar.value);
        let (x, y, w, h) = (num(axis.x0), num(cy - BAR_H / 2.0), num(end - axis.x0), num(BAR_H));
        let _ = writeln!(out, "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{colour}\"/>");
    }
    // The whisker shows how much the runs disagreed; a bar without one would look more certain than
    // it is. Swapped bounds are drawn min..max; a missing bound, or a spread entirely at or below
    // zero (nowhere on a log axis), means no whisker rather than a made-up one.
    if bar.low.is_finite() && bar.high.is_finite() && bar.low.max(bar.high) > 0.0 {
        let (a, b) = (axis.x(bar.low.min(bar.high)), axis.x(bar.low.max(bar.high)));
        line(out, a, cy, b, cy, INK);
        line(out, a, cy - 4.0, a, cy + 4.0, INK);
        line(out, b, cy - 4.0, b, cy + 4.0, INK);
        end = end.max(b); // the value goes after the whisker too, not across it
    }
    text(out, end + 6.0, cy + 4.0, &format!("font-size=\"11\"{weight}"), &format_value(bar.value, unit));
}

/// The label of the gridline at 10^e. Written from the exponent rather than by formatting a float,
/// so it reads "0.1", never "0.09999999999999999". Milliseconds switch to seconds (and microseconds)
/// at exact decades; mebibytes stay mebibytes, because 1000 MiB is not 1 GiB (it is 0.98 GiB).
fn tick_label(e: i32, unit: Unit) -> String {
    match unit {
        Unit::Milliseconds if e >= 3 => format!("{} s", decade(e - 3)),
        Unit::Milliseconds if e <= -2 => format!("{} µs", decade(e + 3)),
        Unit::Milliseconds => format!("{} ms", decade(e)),
        Unit::Mebibytes => format!("{} MiB", decade(e)),
    }
}

/// 10^e written out: 2 -> "100", -2 -> "0.01".
fn decade(e: i32) -> String {
    let zeros = "0".repeat((e.unsigned_abs() as usize).saturating_sub(usize::from(e < 0)));
    if e >= 0 {
        format!("1{zeros}")
    } else {
        format!("0.{zeros}1")
    }
}

fn line(out: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) {
    let _ = writeln!(out, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\"/>", num(x1), num(y1), num(x2), num(y2));
}

fn text(out: &mut String, x: f64, y: f64, attributes: &str, content: &str) {
    let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" {attributes}>{}</text>", num(x), num(y), escape(content));
}

/// A coordinate with at most two decimals and no trailing zeros: a hundredth of a pixel is
/// invisible, and shorter numbers keep the file small and its diffs readable. Never "NaN".
fn num(v: f64) -> String {
    let v = if v.is_finite() { (v * 100.0).round() / 100.0 } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0" } else { s }.to_string()
}

/// Text as XML character data or an attribute value. A label is data from outside (an image name,
/// a runtime's version string), so `<` or `&` in it must not end up as markup. XML 1.0 forbids
/// most control characters even as references; they become spaces.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64, low: f64, high: f64) -> Bar {
        Bar { label: label.to_string(), value, low, high, highlight: false }
    }

    fn one(unit: Unit, bars: Vec<Bar>) -> String {
        svg("t", &[Panel { title: "p".to_string(), unit, bars }], "c")
    }

    #[test]
    fn escapes_text() {
        let out = svg("a \"b\" 'c'", &[Panel { title: "x".into(), unit: Unit::Milliseconds, bars: vec![bar("<&>", 1.0, 1.0, 1.0)] }], "1\u{1}2");
        assert!(out.contains(">&lt;&amp;&gt;</text>"));
        assert!(!out.contains("<&>"));
        assert!(out.contains("a &quot;b&quot; &apos;c&apos;"));
        assert!(out.contains(">1 2</text>"));
    }

    #[test]
    fn decade_ticks_cover_the_data() {
        let bars = vec![bar("a", 4.1, 3.9, 4.4), bar("b", 143.0, 120.0, 170.0)];
        let axis = Axis::new(&bars, 0.0, 100.0);
        assert_eq!((axis.lo, axis.hi), (0, 3));
        let out = one(Unit::Milliseconds, bars);
        for tick in [">1 ms<", ">10 ms<", ">100 ms<", ">1 s<"] {
            assert!(out.contains(tick), "{tick}");
        }
        assert!(!out.contains(">0.1 ms<") && !out.contains(">10 s<"));
        let out = one(Unit::Mebibytes, vec![bar("a", 3.2, 3.0, 3.5), bar("b", 512.0, 500.0, 530.0)]);
        for tick in [">1 MiB<", ">10 MiB<", ">100 MiB<", ">1000 MiB<"] {
            assert!(out.contains(tick), "{tick}");
        }
        assert_eq!(Axis::new(&[bar("a", 10.0, 10.0, 10.0)], 0.0, 1.0).hi, 2);
        assert_eq!((decade(-1), decade(0), decade(4)), ("0.1".to_string(), "1".to_string(), "10000".to_string()));
    }

    #[test]
    fn formats_values() {
        let ms = |v| format_value(v, Unit::Milliseconds);
        let mib = |v| format_value(v, Unit::Mebibytes);
        assert_eq!([ms(0.52), ms(7.7), ms(143.0), ms(12400.0)], ["0.52 ms", "7.7 ms", "143 ms", "12.4 s"]);
        assert_eq!([mib(0.75), mib(3.2), mib(2048.0)], ["768 KiB", "3.2 MiB", "2.0 GiB"]);
        assert_eq!([ms(999.7), ms(0.05), ms(0.0), ms(f64::NAN), mib(-3.2)], ["1.0 s", "50.0 µs", "0 ms", "n/a", "-3.2 MiB"]);
    }

    #[test]
    fn bad_numbers_do_not_leak() {
        let bars = vec![bar("nan", f64::NAN, f64::NAN, 2.0), bar("zero", 0.0, -1.0, f64::INFINITY), bar("neg", -5.0, 3.0, 1.0), bar("inf", f64::INFINITY, 1.0, 2.0)];
        let out = one(Unit::Milliseconds, bars);
        assert!(!out.contains("NaN") && !out.contains("inf\""), "{out}");
        // Every number in an attribute has at most two decimals.
        for value in out.split('"').skip(1).step_by(2).filter(|v| v.parse::<f64>().is_ok()) {
            assert!(value.split('.').nth(1).is_none_or(|d| d.len() <= 2), "{value}");
        }
        // low > high draws the same whisker as low < high.
        assert_eq!(one(Unit::Milliseconds, vec![bar("a", 4.0, 5.0, 3.0)]), one(Unit::Milliseconds, vec![bar("a", 4.0, 3.0, 5.0)]));
    }

    #[test]
    fn empty_panel() {
        let out = svg("t", &[Panel { title: "Nothing yet".into(), unit: Unit::Mebibytes, bars: vec![] }], "");
        assert!(out.contains(">Nothing yet</text>") && out.contains(">no measurements</text>"));
        assert!(!out.contains("MiB"));
    }

    #[test]
    fn document_shape() {
        let make = || one(Unit::Milliseconds, vec![bar("carton", 4.1, 3.9, 4.4), bar("a much longer label than the others", 143.0, 120.0, 170.0)]);
        let out = make();
        assert!(out.starts_with("<svg ") && out.ends_with("</svg>\n"));
        assert!(out.contains("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>") && !out.contains("<script") && !out.contains("href"));
        assert_eq!(out, make());
    }
}
