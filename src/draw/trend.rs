//! A dyad's trend: CountEvents per bucket as bars and, when a numeric label
//! is averaged (`value_label`, e.g. GDELT's `goldstein`), its mean per
//! bucket as a line beneath — a chart drawn with plotters.

use crate::proto;
use crate::time::{bucket_of, Bucket, Instant};
use plotters::prelude::*;

const BARS: RGBColor = RGBColor(31, 78, 153);
const MEAN: RGBColor = RGBColor(200, 80, 40);

/// What a trend shows: the CountEvents answer and what was asked.
#[derive(Clone, Debug, Default)]
pub struct TrendData {
    pub counts: proto::CountEventsResponse,
    /// "china and north-korea", "every event", ...
    pub subject: String,
    pub value_label: String,
}

/// The trend as a standalone SVG document; an error only if plotters
/// fails to draw.
pub fn trend(data: &TrendData) -> Result<String, String> {
    let buckets: Vec<(Instant, Instant, &proto::EventCount)> = data
        .counts
        .buckets
        .iter()
        .filter_map(|bucket| {
            let (first, last) = super::scale::span(&bucket.start)?;
            Some((first, last + 1, bucket))
        })
        .collect();
    let first = buckets.first().map_or(0, |(first, _, _)| *first);
    let end = buckets
        .last()
        .map_or(1, |(_, next, _)| *next)
        .max(first + 1);
    let most = buckets
        .iter()
        .map(|(_, _, bucket)| bucket.count)
        .max()
        .unwrap_or(0)
        .max(1);
    let valued = !data.value_label.is_empty();
    let label = |instant: &Instant| {
        let bucket = if end - first > 3 * 365 * 86_400_000_000 {
            Bucket::Year
        } else {
            Bucket::Month
        };
        bucket_of(*instant, bucket).map_or_else(String::new, |(_, _, text)| text)
    };

    let mut svg = String::new();
    {
        let height = if valued { 560 } else { 360 };
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        let fail = |error: DrawingAreaErrorKind<_>| error.to_string();
        root.fill(&WHITE).map_err(fail)?;
        let title = format!(
            "Events of {} per bucket: {} in all, as of seq {}",
            data.subject, data.counts.total, data.counts.as_of_seq
        );
        let root = root.titled(&title, ("sans-serif", 18)).map_err(fail)?;
        let (upper, lower) = if valued {
            let (upper, lower) = root.split_vertically(300);
            (upper, Some(lower))
        } else {
            (root.clone(), None)
        };
        let mut counts = ChartBuilder::on(&upper)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(first..end, 0u64..most + most / 10 + 1)
            .map_err(fail)?;
        counts
            .configure_mesh()
            .y_desc("events")
            .x_label_formatter(&label)
            .x_labels(8)
            .draw()
            .map_err(fail)?;
        counts
            .draw_series(buckets.iter().map(|(first, next, bucket)| {
                Rectangle::new([(*first, 0), (*next, bucket.count)], BARS.filled())
            }))
            .map_err(fail)?;
        if let Some(lower) = lower {
            let means: Vec<(Instant, f64)> = buckets
                .iter()
                .filter(|(_, _, bucket)| bucket.valued > 0)
                .map(|(first, next, bucket)| (first + (next - first) / 2, bucket.mean))
                .collect();
            let low = means.iter().map(|(_, mean)| *mean).fold(0f64, f64::min);
            let high = means.iter().map(|(_, mean)| *mean).fold(0f64, f64::max);
            let pad = ((high - low) / 10.0).max(0.5);
            let mut chart = ChartBuilder::on(&lower)
                .margin(12)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(first..end, low - pad..high + pad)
                .map_err(fail)?;
            chart
                .configure_mesh()
                .y_desc(format!("mean {}", data.value_label))
                .x_label_formatter(&label)
                .x_labels(8)
                .draw()
                .map_err(fail)?;
            chart
                .draw_series(LineSeries::new(means.iter().copied(), MEAN.stroke_width(2)))
                .map_err(fail)?;
            chart
                .draw_series(
                    means
                        .iter()
                        .map(|point| Circle::new(*point, 3, MEAN.filled())),
                )
                .map_err(fail)?;
        }
        root.present().map_err(fail)?;
    }
    Ok(svg)
}

/// The colour of the count bars, as plotters writes it (tests find the bars by it).
pub const BAR_FILL: &str = "#1F4E99";
