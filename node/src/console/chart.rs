//! The console's charts: series drawn from samples, rendered as SVG by
//! `plotters` on the node, so the page needs no chart library.

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::history::HISTORY_SPAN;
use super::sample::{ERROR_KINDS, OPS, Sample};

/// The charts the console shows, in page order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    Requests,
    Latency,
    Errors,
    Hints,
    ReadRepairs,
}

impl Chart {
    pub const ALL: [Chart; 5] = [
        Chart::Requests,
        Chart::Latency,
        Chart::Errors,
        Chart::Hints,
        Chart::ReadRepairs,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Chart::Requests => "requests",
            Chart::Latency => "latency",
            Chart::Errors => "errors",
            Chart::Hints => "hints",
            Chart::ReadRepairs => "read-repairs",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Chart::Requests => "Requests/s by operation",
            Chart::Latency => "Latency p50 / p99 by operation (ms)",
            Chart::Errors => "Errors/s by kind",
            Chart::Hints => "Hints pending by target (bytes)",
            Chart::ReadRepairs => "Read repairs/s",
        }
    }
}

/// One line of a chart: (seconds before now, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Points above zero.
    pub fn nonzero(&self) -> usize {
        self.points.iter().filter(|(_, v)| *v > 0.0).count()
    }
}

/// The lines of `chart` over `samples`, as of `now_ms`.
pub fn series(chart: Chart, samples: &[Sample], now_ms: i64) -> Vec<Series> {
    let ago = |s: &Sample| (s.at_ms - now_ms) as f64 / 1000.0;
    let line = |name: String, value: &dyn Fn(&Sample) -> f64| Series {
        name,
        points: samples.iter().map(|s| (ago(s), value(s))).collect(),
    };
    let op_value = |op: &'static str, pick: fn(&super::sample::OpSample) -> f64| {
        move |s: &Sample| s.op(op).map_or(0.0, pick)
    };
    match chart {
        Chart::Requests => OPS
            .iter()
            .map(|op| line((*op).into(), &op_value(op, |o| o.per_second)))
            .collect(),
        Chart::Latency => OPS
            .iter()
            .flat_map(|op| {
                [
                    line(format!("{op} p50"), &op_value(op, |o| o.p50_ms)),
                    line(format!("{op} p99"), &op_value(op, |o| o.p99_ms)),
                ]
            })
            .collect(),
        Chart::Errors => ERROR_KINDS
            .iter()
            .map(|kind| {
                line((*kind).into(), &|s: &Sample| {
                    s.errors.get(*kind).copied().unwrap_or(0.0)
                })
            })
            .collect(),
        Chart::Hints => {
            let targets: std::collections::BTreeSet<&String> = samples
                .iter()
                .flat_map(|s| s.hints_pending.keys())
                .collect();
            targets
                .into_iter()
                .map(|target| {
                    line(target.clone(), &|s: &Sample| {
                        s.hints_pending.get(target).copied().unwrap_or(0.0)
                    })
                })
                .collect()
        }
        Chart::ReadRepairs => vec![line("read repairs".into(), &|s: &Sample| {
            s.read_repairs_per_second
        })],
    }
}

/// The cluster's samples from each node's: rates and hints summed, latency
/// the worst node's, by sampling period.
pub fn cluster(nodes: &[Vec<Sample>]) -> Vec<Sample> {
    let period = super::sample::SAMPLE_INTERVAL.as_millis() as i64;
    // Each node's samples by the period they are nearest to, one per
    // period (the later wins): a node whose ticks sit near a period's edge
    // is counted once, not twice in one period and not at all in the next.
    let slot_of = |at_ms: i64| (at_ms + period / 2).div_euclid(period) * period;
    let per_node: Vec<BTreeMap<i64, &Sample>> = nodes
        .iter()
        .map(|samples| samples.iter().map(|s| (slot_of(s.at_ms), s)).collect())
        .collect();
    let mut by_period: BTreeMap<i64, Sample> = BTreeMap::new();
    for (slot, sample) in per_node.iter().flatten() {
        let slot = *slot;
        let merged = by_period.entry(slot).or_insert_with(|| Sample {
            at_ms: slot,
            ops: OPS
                .iter()
                .map(|op| super::sample::OpSample {
                    op: (*op).into(),
                    ..Default::default()
                })
                .collect(),
            ..Sample::default()
        });
        for op in &sample.ops {
            if let Some(into) = merged.ops.iter_mut().find(|o| o.op == op.op) {
                into.per_second += op.per_second;
                into.p50_ms = into.p50_ms.max(op.p50_ms);
                into.p99_ms = into.p99_ms.max(op.p99_ms);
            }
        }
        for (kind, rate) in &sample.errors {
            *merged.errors.entry(kind.clone()).or_default() += rate;
        }
        merged.read_repairs_per_second += sample.read_repairs_per_second;
        for (target, bytes) in &sample.hints_pending {
            *merged.hints_pending.entry(target.clone()).or_default() += bytes;
        }
    }
    by_period.into_values().collect()
}

/// `chart` with `lines`, as an SVG document.
pub fn svg(chart: Chart, lines: &[Series]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (560, 220)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|(_, v)| *v))
            .fold(0.0f64, f64::max);
        // Minutes before now: the last 15 of the history's 16.
        let span = (HISTORY_SPAN.as_secs_f64() - 60.0) / 60.0;
        let mut plot = ChartBuilder::on(&root)
            .caption(chart.title(), ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(52)
            .build_cartesian_2d(-span..0.0, 0.0..(top * 1.15).max(1.0))
            .map_err(|e| e.to_string())?;
        plot.configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|x| format!("{x:.0}m"))
            .y_label_formatter(&|y| human(*y))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, line) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = line
                .points
                .iter()
                .map(|(seconds, value)| (seconds / 60.0, *value))
                .filter(|(minutes, _)| *minutes >= -span);
            plot.draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(line.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color));
        }
        if !lines.is_empty() {
            plot.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.2))
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// `y` with a k/M/G suffix.
fn human(y: f64) -> String {
    match y.abs() {
        v if v >= 1e9 => format!("{:.1}G", y / 1e9),
        v if v >= 1e6 => format!("{:.1}M", y / 1e6),
        v if v >= 1e4 => format!("{:.0}k", y / 1e3),
        v if v >= 10.0 || v == 0.0 => format!("{y:.0}"),
        _ => format!("{y:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::sample::OpSample;

    fn sample(at_ms: i64, gets: f64, p99: f64) -> Sample {
        Sample {
            at_ms,
            ops: vec![OpSample {
                op: "get".into(),
                per_second: gets,
                p50_ms: p99 / 2.0,
                p99_ms: p99,
            }],
            hints_pending: [("n3".to_owned(), 100.0)].into(),
            ..Sample::default()
        }
    }

    #[test]
    fn the_cluster_sums_rates_and_takes_the_worst_latency() {
        let merged = cluster(&[
            vec![sample(2_000, 10.0, 5.0), sample(4_100, 1.0, 1.0)],
            vec![sample(2_500, 30.0, 9.0)],
        ]);
        assert_eq!(merged.len(), 2);
        let get = merged[0].op("get").expect("get");
        assert_eq!((get.per_second, get.p99_ms), (40.0, 9.0));
        assert_eq!(merged[0].hints_pending["n3"], 200.0);
        assert_eq!(merged[1].op("get").map(|g| g.per_second), Some(1.0));
        // A node ticking near a period's edge: 3.99 s and 4.01 s are both
        // nearest 4 s (the later counts, once), 5.99 s is nearest 6 s.
        let edge = cluster(&[vec![
            sample(3_990, 10.0, 1.0),
            sample(4_010, 20.0, 1.0),
            sample(5_990, 30.0, 1.0),
        ]]);
        let rates: Vec<f64> = edge
            .iter()
            .filter_map(|s| s.op("get").map(|g| g.per_second))
            .collect();
        assert_eq!(
            rates,
            vec![20.0, 30.0],
            "one sample per period, never summed"
        );
    }

    #[test]
    fn series_place_samples_before_now_and_count_nonzero_points() {
        let samples = [sample(0, 0.0, 0.0), sample(2_000, 5.0, 3.0)];
        let lines = series(Chart::Requests, &samples, 4_000);
        assert_eq!(lines.len(), OPS.len());
        assert_eq!(lines[0].points, vec![(-4.0, 0.0), (-2.0, 5.0)]);
        assert_eq!(lines[0].nonzero(), 1);
        assert_eq!(series(Chart::Hints, &samples, 4_000)[0].name, "n3");
        assert_eq!(series(Chart::Latency, &samples, 4_000).len(), 2 * OPS.len());
    }

    #[test]
    fn a_chart_renders_as_svg_with_its_title_and_lines() {
        let samples = [sample(0, 1.0, 2.0), sample(2_000, 5.0, 3.0)];
        for chart in Chart::ALL {
            let drawn = svg(chart, &series(chart, &samples, 2_000)).expect("svg");
            assert!(drawn.starts_with("<svg"), "{drawn}");
            assert!(drawn.contains(chart.title()), "{drawn}");
        }
        let drawn = svg(Chart::Requests, &series(Chart::Requests, &samples, 2_000)).expect("svg");
        // The get line rises from 1/s to 5/s (SVG y grows downwards);
        // legend swatches are flat.
        let rising = drawn.split("<polyline").skip(1).any(|line| {
            let ys: Vec<f64> = line
                .split("points=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|pair| pair.split(',').nth(1)?.parse().ok())
                .collect();
            ys.len() == 2 && ys[0] > ys[1] + 10.0
        });
        assert!(rising, "no rising line:\n{drawn}");
        assert!(
            drawn.contains(">\nget\n<") || drawn.contains(">get<"),
            "a legend"
        );
    }
}
