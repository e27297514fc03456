//! The relation graph at one instant: entities on a circle (the focused
//! one, if any, in the middle), one edge per relation active then — solid
//! when certain, dashed when it only possibly held at that instant, an
//! arrow when directed — and a legend of the kinds.
//!
//! Every edge is one `<g class="edge">` with its ends, kind, since, event
//! and certainty (`data-*`), as the timeline's intervals are.

use super::scale::round;
use super::Palette;
use crate::proto;
use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::PI;
use svg::node::element::{Circle, Definitions, Group, Marker, Path, Text, Title};
use svg::Document;

const SIZE: f64 = 760.0;
const LEGEND: f64 = 200.0;

/// What a graph shows: ListRelations at `at`, and the entities' names.
#[derive(Clone, Debug, Default)]
pub struct GraphData {
    pub relations: Vec<proto::Relation>,
    /// Display names by entity id (ids stand for themselves when absent).
    pub names: BTreeMap<String, String>,
    /// The entity in the middle, when the graph is one entity's.
    pub focus: Option<String>,
    pub at: String,
    pub as_of_seq: u64,
    /// More relations were active than were drawn.
    pub truncated: bool,
}

/// The graph as a standalone SVG document.
pub fn graph(data: &GraphData) -> String {
    let palette = Palette;
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for relation in &data.relations {
        ids.insert(&relation.a);
        ids.insert(&relation.b);
    }
    if let Some(focus) = &data.focus {
        ids.insert(focus);
    }
    let center = (SIZE / 2.0, SIZE / 2.0 + 20.0);
    let ring: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| data.focus.as_deref() != Some(*id))
        .collect();
    let radius = SIZE / 2.0 - 90.0;
    let mut places: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (index, id) in ring.iter().enumerate() {
        let angle = 2.0 * PI * index as f64 / ring.len().max(1) as f64 - PI / 2.0;
        places.insert(
            id,
            (
                center.0 + radius * angle.cos(),
                center.1 + radius * angle.sin(),
            ),
        );
    }
    if let Some(focus) = &data.focus {
        places.insert(focus, center);
    }

    let when = if data.at.is_empty() { "now" } else { &data.at };
    let mut title = match data.as_of_seq {
        0 => format!("Relations at {when}"),
        seq => format!("Relations at {when}, as known at seq {seq}"),
    };
    if data.truncated {
        title.push_str(&format!(" (the first {} only)", data.relations.len()));
    }
    let mut document = Document::new()
        .set("viewBox", (0, 0, SIZE + LEGEND, SIZE + 40.0))
        .set("width", SIZE + LEGEND)
        .set("height", SIZE + 40.0)
        .set("font-family", "sans-serif")
        .set("class", "annals-graph")
        .set("data-at", data.at.as_str())
        .add(arrowheads(&palette, &data.relations))
        .add(
            svg::node::element::Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(
            Text::new(title)
                .set("x", 12)
                .set("y", 24)
                .set("font-size", 16)
                .set("font-weight", "bold"),
        );
    if data.relations.is_empty() {
        document = document.add(
            Text::new("no relations active")
                .set("x", center.0)
                .set("y", center.1 + 40.0)
                .set("text-anchor", "middle")
                .set("fill", "#777"),
        );
    }

    // Edges between the same two entities bend apart, one per kind.
    let mut between: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut edges = Group::new().set("class", "edges");
    for relation in &data.relations {
        let (Some(&from), Some(&to)) = (
            places.get(relation.a.as_str()),
            places.get(relation.b.as_str()),
        ) else {
            continue;
        };
        let pair = if relation.a <= relation.b {
            (relation.a.as_str(), relation.b.as_str())
        } else {
            (relation.b.as_str(), relation.a.as_str())
        };
        let nth = between.entry(pair).or_default();
        let bend = 18.0 * (*nth as f64) * if nth.is_multiple_of(2) { 1.0 } else { -1.0 };
        *nth += 1;
        let (mx, my) = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let length = (dx * dx + dy * dy).sqrt().max(1.0);
        let control = (mx - dy / length * bend, my + dx / length * bend);
        let color = palette.color(&relation.kind);
        let mut path = Path::new()
            .set(
                "d",
                format!(
                    "M {} {} Q {} {} {} {}",
                    round(from.0),
                    round(from.1),
                    round(control.0),
                    round(control.1),
                    round(to.0),
                    round(to.1)
                ),
            )
            .set("fill", "none")
            .set("stroke", color)
            .set("stroke-width", 2.5);
        if !relation.certain {
            path = path.set("stroke-dasharray", "7 5");
        }
        if relation.directed {
            path = path.set(
                "marker-end",
                format!("url(#arrow-{})", palette.index(&relation.kind)),
            );
        }
        let certainty = if relation.certain {
            "certain"
        } else {
            "possible"
        };
        let arrow = if relation.directed { "→" } else { "—" };
        edges = edges.add(
            Group::new()
                .set("class", "edge")
                .set("data-a", relation.a.as_str())
                .set("data-b", relation.b.as_str())
                .set("data-kind", relation.kind.as_str())
                .set("data-directed", relation.directed)
                .set("data-since", relation.since.as_str())
                .set("data-certain", relation.certain)
                .set("data-event", relation.event_id.as_str())
                .add(Title::new(format!(
                    "{} {arrow} {}: {} since {} ({certainty})\nevent {}",
                    relation.a, relation.b, relation.kind, relation.since, relation.event_id
                )))
                .add(path),
        );
    }
    document = document.add(edges);

    let mut nodes = Group::new().set("class", "nodes");
    for (id, (x, y)) in &places {
        let name = data.names.get(*id).map_or(*id, String::as_str);
        let focused = data.focus.as_deref() == Some(*id);
        nodes = nodes.add(
            Group::new()
                .set("class", "node")
                .set("data-id", *id)
                .add(Title::new(format!("{name} ({id})")))
                .add(
                    Circle::new()
                        .set("cx", round(*x))
                        .set("cy", round(*y))
                        .set("r", if focused { 11 } else { 8 })
                        .set("fill", if focused { "#1f4e99" } else { "#fff" })
                        .set("stroke", "#1f4e99")
                        .set("stroke-width", 2),
                )
                .add(
                    Text::new(name)
                        .set("x", round(*x))
                        .set("y", round(y + 24.0))
                        .set("text-anchor", "middle")
                        .set("font-size", 12),
                ),
        );
    }
    document = document.add(nodes);

    let kinds: BTreeSet<&str> = data
        .relations
        .iter()
        .map(|relation| relation.kind.as_str())
        .collect();
    let mut legend = Group::new().set("class", "legend");
    for (index, kind) in kinds.iter().enumerate() {
        let y = 60.0 + 22.0 * index as f64;
        legend = legend
            .add(
                Path::new()
                    .set("d", format!("M {} {y} h 28", SIZE + 10.0))
                    .set("stroke", palette.color(kind))
                    .set("stroke-width", 3),
            )
            .add(
                Text::new(*kind)
                    .set("x", SIZE + 46.0)
                    .set("y", y + 4.0)
                    .set("font-size", 12),
            );
    }
    let y = 60.0 + 22.0 * kinds.len() as f64 + 10.0;
    legend = legend
        .add(
            Path::new()
                .set("d", format!("M {} {y} h 28", SIZE + 10.0))
                .set("stroke", "#555")
                .set("stroke-width", 2.5)
                .set("stroke-dasharray", "7 5"),
        )
        .add(
            Text::new("possibly held then")
                .set("x", SIZE + 46.0)
                .set("y", y + 4.0)
                .set("font-size", 12),
        );
    document.add(legend).to_string()
}

/// One arrowhead per kind drawn directed, in the kind's colour.
fn arrowheads(palette: &Palette, relations: &[proto::Relation]) -> Definitions {
    let kinds: BTreeSet<&str> = relations
        .iter()
        .filter(|relation| relation.directed)
        .map(|relation| relation.kind.as_str())
        .collect();
    let mut definitions = Definitions::new();
    for kind in kinds {
        definitions = definitions.add(
            Marker::new()
                .set("id", format!("arrow-{}", palette.index(kind)))
                .set("viewBox", "0 0 10 10")
                .set("refX", 18)
                .set("refY", 5)
                .set("markerWidth", 7)
                .set("markerHeight", 7)
                .set("orient", "auto-start-reverse")
                .add(
                    Path::new()
                        .set("d", "M 0 0 L 10 5 L 0 10 z")
                        .set("fill", palette.color(kind)),
                ),
        );
    }
    definitions
}
