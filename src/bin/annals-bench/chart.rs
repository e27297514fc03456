//! The growth chart: p50 latency at one client against the log's size N,
//! for Q1–Q4, annals beside PostgreSQL, on log–log axes, as SVG (plotters).

use crate::report;
use crate::Res;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// One line of a panel: who, and (N, p50 µs) per size measured.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
}

const QUESTIONS: [(&str, &str); 4] = [
    ("q1", "Q1 relations of X at T"),
    ("q2", "Q2 state of X at T"),
    ("q3", "Q3 Q1 as known at seq S"),
    ("q4", "Q4 events of X in a window"),
];

/// (N, p50 at one client) of `question` in each size of a result file.
fn points(sizes: &[Value], question: &str) -> Vec<(f64, f64)> {
    sizes
        .iter()
        .filter_map(|size| {
            let n = size["n"].as_f64()?;
            let p50 = report::metric(&size["queries"], "question", question, 1, "p50_us")?;
            Some((n, p50))
        })
        .collect()
}

/// Draws the chart of `annals` (an annals-bench result) and `postgres` (a
/// pg-report result, every index variant) to `path`.
pub fn growth(path: &Path, annals: &Value, postgres: &Value) -> Res<()> {
    let empty = Vec::new();
    let ours = annals["sizes"].as_array().unwrap_or(&empty);
    let variants: Vec<(String, Vec<Value>)> = postgres["variant_order"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|variant| {
            let name = variant.as_str()?.to_string();
            let sizes = postgres["variants"][&name].as_array()?.clone();
            Some((name, sizes))
        })
        .collect();
    let palette = [RGBColor(200, 80, 40), RGBColor(120, 120, 120)];

    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "p50 latency at 1 client against log size (tl-synth-v1, same machine)",
        ("sans-serif", 22),
    )?;
    for (area, (question, title)) in root.split_evenly((2, 2)).iter().zip(QUESTIONS) {
        let mut lines = vec![Line {
            label: "annals".into(),
            points: points(ours, question),
            color: RGBColor(30, 90, 200),
        }];
        for ((variant, sizes), color) in variants.iter().zip(palette.iter().cycle()) {
            lines.push(Line {
                label: format!("PostgreSQL, {variant} indexes"),
                points: points(sizes, question),
                color: *color,
            });
        }
        let all = lines.iter().flat_map(|line| line.points.iter());
        let (mut n_low, mut n_high, mut us_low, mut us_high) = (f64::MAX, 0f64, f64::MAX, 0f64);
        for (n, us) in all {
            n_low = n_low.min(*n);
            n_high = n_high.max(*n);
            us_low = us_low.min(*us);
            us_high = us_high.max(*us);
        }
        if n_high == 0.0 {
            continue;
        }
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (n_low / 1.5..n_high * 1.5).log_scale(),
                (us_low / 2.0..us_high * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("events in the log (N)")
            .y_desc("p50, µs")
            .x_label_formatter(&|n| report::size_label(*n as u64))
            .y_label_formatter(&|us| report::latency(*us))
            .draw()?;
        for line in &lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(&line.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                line.points
                    .iter()
                    .map(|point| Circle::new(*point, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
