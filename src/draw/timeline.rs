//! An entity's timeline: one row per relation (kind and counterpart) and
//! per attribute, each interval a bar on the time axis — solid where the
//! fact certainly held, hatched where it only possibly did (the span of an
//! imprecise date: a change dated `2023-09` is possible from September 1st
//! and certain from the 30th's end, exactly where a query's `certain` is
//! false).
//!
//! Every interval is one `<g class="interval">` carrying its dates and the
//! events that began and ended it (`data-*`), so the console links each to
//! its event and tests can read the drawing back.

use super::scale::{now, round, span, TimeScale};
use super::Palette;
use crate::proto;
use crate::time::Instant;
use std::collections::BTreeMap;
use svg::node::element::{Definitions, Group, Line, Path, Pattern, Rectangle, Text, Title};
use svg::Document;

const WIDTH: f64 = 1100.0;
const LABEL_WIDTH: f64 = 230.0;
const ROW: f64 = 24.0;
const BAR: f64 = 14.0;
const TOP: f64 = 56.0;

/// What a timeline shows: the API's answers for one entity.
#[derive(Clone, Debug, Default)]
pub struct TimelineData {
    pub entity: proto::Entity,
    pub relations: Vec<proto::RelationInterval>,
    pub attributes: Vec<proto::AttributeInterval>,
    /// The seq the answers are as of (0: everything recorded).
    pub as_of_seq: u64,
}

/// The window drawn: `from`/`to` when given, else from the first change
/// (to the year) to now.
pub fn window(
    data: &TimelineData,
    from: Option<Instant>,
    to: Option<Instant>,
) -> (Instant, Instant) {
    let starts = data
        .relations
        .iter()
        .map(|interval| interval.from.as_str())
        .chain(
            data.attributes
                .iter()
                .map(|interval| interval.from.as_str()),
        )
        .filter_map(span)
        .map(|(earliest, _)| earliest);
    let first = starts.min();
    let to = to.unwrap_or_else(now);
    let from = from.or(first.and_then(|first| {
        crate::time::bucket_of(first, crate::time::Bucket::Year).map(|(year, _, _)| year)
    }));
    let from = from.unwrap_or(to - 10 * 365 * 86_400_000_000);
    (from, to.max(from + 1))
}

/// One bar: where it begins and ends (each a span of possible instants),
/// and what the row and the tooltip say.
struct Bar<'a> {
    /// `(earliest, latest)` of the start's valid time.
    start: (Instant, Instant),
    /// Of the end's; `None` while it holds.
    end: Option<(Instant, Instant)>,
    from: &'a str,
    to: &'a str,
    begun_by: &'a str,
    ended_by: &'a str,
    /// Written inside the bar (an attribute's value).
    value: Option<&'a str>,
}

/// The timeline as a standalone SVG document.
pub fn timeline(data: &TimelineData, from: Instant, to: Instant) -> String {
    let mut rows: BTreeMap<(u8, String, String), Vec<(Bar, Group)>> = BTreeMap::new();
    let palette = Palette;
    for interval in &data.relations {
        let Some(start) = span(&interval.from) else {
            continue;
        };
        let counterpart = if interval.a == data.entity.id {
            &interval.b
        } else {
            &interval.a
        };
        let arrow = match (interval.directed, interval.a == data.entity.id) {
            (false, _) => "",
            (true, true) => "→ ",
            (true, false) => "← ",
        };
        let bar = Bar {
            start,
            end: span(&interval.to),
            from: &interval.from,
            to: &interval.to,
            begun_by: &interval.begun_by,
            ended_by: &interval.ended_by,
            value: None,
        };
        let group = Group::new()
            .set("data-row", "relation")
            .set("data-kind", interval.kind.as_str())
            .set("data-counterpart", counterpart.as_str())
            .set("fill", palette.color(&interval.kind));
        rows.entry((0, interval.kind.clone(), format!("{arrow}{counterpart}")))
            .or_default()
            .push((bar, group));
    }
    for interval in &data.attributes {
        let Some(start) = span(&interval.from) else {
            continue;
        };
        let bar = Bar {
            start,
            end: span(&interval.to),
            from: &interval.from,
            to: &interval.to,
            begun_by: &interval.set_by,
            ended_by: &interval.ended_by,
            value: Some(&interval.value),
        };
        let group = Group::new()
            .set("data-row", "attribute")
            .set("data-kind", interval.key.as_str())
            .set("data-value", interval.value.as_str())
            .set("fill", "#7a869a");
        rows.entry((1, interval.key.clone(), String::new()))
            .or_default()
            .push((bar, group));
    }

    let height = TOP + ROW * rows.len().max(1) as f64 + 28.0;
    let scale = TimeScale::new(from, to, LABEL_WIDTH, WIDTH - LABEL_WIDTH - 20.0);
    let title = match data.as_of_seq {
        0 => format!("{} ({})", data.entity.name, data.entity.id),
        seq => format!(
            "{} ({}) as known at seq {seq}",
            data.entity.name, data.entity.id
        ),
    };
    let mut document = Document::new()
        .set("viewBox", (0, 0, WIDTH, round(height)))
        .set("width", WIDTH)
        .set("height", round(height))
        .set("font-family", "sans-serif")
        .set("class", "annals-timeline")
        .set("data-entity", data.entity.id.as_str())
        .add(hatching())
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(
            Text::new(title)
                .set("x", 12)
                .set("y", 22)
                .set("font-size", 16)
                .set("font-weight", "bold"),
        )
        .add(scale.axis(TOP - 8.0, height - 20.0));
    if rows.is_empty() {
        document = document.add(
            Text::new("no relations or attributes recorded")
                .set("x", LABEL_WIDTH)
                .set("y", TOP + ROW * 0.7)
                .set("font-size", 12)
                .set("fill", "#777"),
        );
    }
    for (index, ((part, kind, counterpart), bars)) in rows.into_iter().enumerate() {
        let y = TOP + ROW * index as f64;
        let label = match part {
            0 => format!("{kind}  {counterpart}"),
            _ => kind,
        };
        let mut row = Group::new().set("class", "row").add(
            Text::new(label)
                .set("x", LABEL_WIDTH - 8.0)
                .set("y", round(y + BAR - 2.0))
                .set("text-anchor", "end")
                .set("font-size", 12),
        );
        for (bar, group) in bars {
            row = row.add(draw_bar(&scale, y + (ROW - BAR) / 2.0 - 2.0, &bar, group));
        }
        document = document.add(row);
    }
    document.to_string()
}

/// The diagonal hatching that marks what only possibly held.
fn hatching() -> Definitions {
    Definitions::new().add(
        Pattern::new()
            .set("id", "possible")
            .set("width", 6)
            .set("height", 6)
            .set("patternUnits", "userSpaceOnUse")
            .set("patternTransform", "rotate(45)")
            .add(
                Line::new()
                    .set("x1", 0)
                    .set("y1", 0)
                    .set("x2", 0)
                    .set("y2", 6)
                    .set("stroke", "#333")
                    .set("stroke-width", 2.5),
            ),
    )
}

/// A bar's parts, clipped to the window: the start's span hatched, the
/// certain middle solid, the end's span hatched (open on the right while
/// the fact still holds).
fn draw_bar(scale: &TimeScale, y: f64, bar: &Bar, group: Group) -> Group {
    let (start_earliest, start_latest) = bar.start;
    let (end_earliest, end_latest) = bar.end.unwrap_or((scale.to, scale.to));
    let mut parts = vec![(start_earliest, start_latest.min(end_earliest), false)];
    if start_latest < end_earliest {
        parts.push((start_latest, end_earliest, true));
    }
    if bar.end.is_some() {
        parts.push((end_earliest.max(start_latest), end_latest, false));
    }
    let mut tooltip = format!(
        "{} → {}",
        bar.from,
        if bar.to.is_empty() { "now" } else { bar.to }
    );
    if let Some(value) = bar.value {
        tooltip = format!("{value}: {tooltip}");
    }
    tooltip.push_str(&format!("\nbegun by {}", bar.begun_by));
    if !bar.ended_by.is_empty() {
        tooltip.push_str(&format!("\nended by {}", bar.ended_by));
    }
    let mut group = group
        .set("class", "interval")
        .set("data-from", bar.from)
        .set("data-to", bar.to)
        .set("data-begun-by", bar.begun_by)
        .set("data-ended-by", bar.ended_by)
        .add(Title::new(tooltip));
    for (first, last, certain) in parts {
        if last < scale.from || first > scale.to || last < first {
            continue;
        }
        let (x1, x2) = (scale.x(first), scale.x(last));
        let mut rect = Rectangle::new()
            .set("x", round(x1))
            .set("y", round(y))
            .set("width", round((x2 - x1).max(1.0)))
            .set("height", BAR)
            .set(
                "data-start",
                crate::time::format_instant(first.max(scale.from)),
            )
            .set("data-end", crate::time::format_instant(last.min(scale.to)));
        rect = if certain {
            rect.set("class", "certain")
        } else {
            rect.set("class", "possible")
                .set("fill", "url(#possible)")
                .set("stroke", "#333")
                .set("stroke-width", 0.5)
        };
        group = group.add(rect);
    }
    if let Some(value) = bar.value {
        let x = scale.x(start_latest.max(scale.from)) + 4.0;
        group = group.add(
            Text::new(value)
                .set("x", round(x))
                .set("y", round(y + BAR - 3.0))
                .set("font-size", 10)
                .set("fill", "white"),
        );
    }
    if bar.end.is_none() && scale.contains(start_earliest.max(scale.from)) {
        let x = scale.x(scale.to);
        group = group.add(
            Path::new()
                .set(
                    "d",
                    format!(
                        "M {} {} l 6 {} l -6 {} z",
                        round(x),
                        round(y),
                        BAR / 2.0,
                        BAR / 2.0
                    ),
                )
                .set("class", "ongoing"),
        );
    }
    group
}
