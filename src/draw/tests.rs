use super::*;
use crate::proto;
use crate::time::ValidTime;

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|error| panic!("{error}\n{svg}"))
}

fn data() -> TimelineData {
    TimelineData {
        entity: proto::Entity {
            id: "north-korea".into(),
            name: "North Korea".into(),
            ..Default::default()
        },
        relations: vec![
            proto::RelationInterval {
                kind: "alliance".into(),
                from: "1961-07".into(),
                a: "china".into(),
                b: "north-korea".into(),
                begun_by: "treaty".into(),
                ..Default::default()
            },
            proto::RelationInterval {
                kind: "co_belligerent".into(),
                from: "1950-10-25".into(),
                to: "1953-07-27".into(),
                a: "china".into(),
                b: "north-korea".into(),
                begun_by: "entry".into(),
                ended_by: "armistice".into(),
                ..Default::default()
            },
        ],
        attributes: vec![proto::AttributeInterval {
            key: "leader".into(),
            value: "Kim Il Sung & <sons>".into(),
            from: "1948".into(),
            to: "1994-07-08".into(),
            set_by: "founding".into(),
            ended_by: "death".into(),
        }],
        as_of_seq: 0,
    }
}

fn instant(text: &str) -> i64 {
    crate::time::query_instant(text).unwrap()
}

#[test]
fn every_interval_is_one_element_with_its_dates_and_events() {
    let data = data();
    let svg = timeline(&data, instant("1945") - 1, instant("2025"));
    let document = parse(&svg);
    let intervals: Vec<_> = document
        .descendants()
        .filter(|node| node.attribute("class") == Some("interval"))
        .collect();
    assert_eq!(intervals.len(), 3);
    let war = intervals
        .iter()
        .find(|node| node.attribute("data-kind") == Some("co_belligerent"))
        .unwrap();
    assert_eq!(war.attribute("data-from"), Some("1950-10-25"));
    assert_eq!(war.attribute("data-to"), Some("1953-07-27"));
    assert_eq!(war.attribute("data-begun-by"), Some("entry"));
    assert_eq!(war.attribute("data-ended-by"), Some("armistice"));
    assert_eq!(war.attribute("data-counterpart"), Some("china"));
    // Text is escaped, not markup.
    assert!(svg.contains("Kim Il Sung &amp; &lt;sons&gt;"));
}

/// Hatched parts are exactly the spans of the dates' imprecision: a change
/// dated `1961-07` possibly happened on any day of July 1961.
#[test]
fn hatching_covers_the_imprecise_spans_only() {
    let data = data();
    let svg = timeline(&data, instant("1945") - 1, instant("2025"));
    let document = parse(&svg);
    let alliance = document
        .descendants()
        .find(|node| node.attribute("data-kind") == Some("alliance"))
        .unwrap();
    let parts: Vec<(&str, i64, i64)> = alliance
        .children()
        .filter(|node| node.tag_name().name() == "rect")
        .map(|node| {
            let time = |name| {
                ValidTime::parse(node.attribute(name).unwrap())
                    .unwrap()
                    .earliest()
            };
            (
                node.attribute("class").unwrap(),
                time("data-start"),
                time("data-end"),
            )
        })
        .collect();
    let july = ValidTime::parse("1961-07").unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0], ("possible", july.earliest(), july.latest()));
    assert_eq!(parts[1].0, "certain");
    assert_eq!(parts[1].1, july.latest());
    let possible = alliance
        .children()
        .find(|node| node.attribute("class") == Some("possible"))
        .unwrap();
    assert_eq!(possible.attribute("fill"), Some("url(#possible)"));
    // Still held: an open end, and no hatching on the right.
    assert!(alliance
        .children()
        .any(|node| node.attribute("class") == Some("ongoing")));
}

#[test]
fn the_window_clips_what_lies_outside() {
    let data = data();
    let svg = timeline(&data, instant("1952") - 1, instant("1952-12"));
    let document = parse(&svg);
    let war = document
        .descendants()
        .find(|node| node.attribute("data-kind") == Some("co_belligerent"))
        .unwrap();
    let rects: Vec<_> = war
        .children()
        .filter(|node| node.tag_name().name() == "rect")
        .collect();
    assert_eq!(rects.len(), 1, "only the certain middle lies in 1952");
    assert_eq!(rects[0].attribute("class"), Some("certain"));
    let alliance = document
        .descendants()
        .find(|node| node.attribute("data-kind") == Some("alliance"))
        .unwrap();
    assert!(alliance
        .children()
        .all(|node| node.tag_name().name() != "rect"));
}

#[test]
fn the_graph_has_one_edge_per_relation_and_dashes_the_uncertain() {
    let relation = |a: &str, b: &str, kind: &str, certain: bool| proto::Relation {
        a: a.into(),
        b: b.into(),
        kind: kind.into(),
        certain,
        since: "1950".into(),
        event_id: format!("{a}-{b}-{kind}"),
        ..Default::default()
    };
    let data = GraphData {
        relations: vec![
            relation("china", "north-korea", "alliance", true),
            relation("china", "north-korea", "co_belligerent", false),
            relation("south-korea", "united-states", "alliance", true),
        ],
        names: [("china".to_string(), "China".to_string())]
            .into_iter()
            .collect(),
        focus: None,
        at: "1951-06-01".into(),
        as_of_seq: 0,
        truncated: false,
    };
    let svg = graph(&data);
    let document = parse(&svg);
    let edges: Vec<_> = document
        .descendants()
        .filter(|node| node.attribute("class") == Some("edge"))
        .collect();
    assert_eq!(edges.len(), 3);
    for edge in &edges {
        let path = edge
            .children()
            .find(|node| node.tag_name().name() == "path")
            .unwrap();
        let dashed = path.attribute("stroke-dasharray").is_some();
        assert_eq!(dashed, edge.attribute("data-certain") == Some("false"));
    }
    let nodes = document
        .descendants()
        .filter(|node| node.attribute("class") == Some("node"))
        .count();
    assert_eq!(nodes, 4);
    assert!(svg.contains(">China<") || svg.contains("China\n"));
    assert_eq!(Palette.color("alliance"), Palette.color("alliance"));
}

#[test]
fn the_trend_draws_a_bar_per_bucket() {
    let bucket = |start: &str, count| proto::EventCount {
        start: start.into(),
        count,
        sum: count as f64,
        mean: 1.5,
        valued: count,
    };
    let data = TrendData {
        counts: proto::CountEventsResponse {
            buckets: vec![
                bucket("2018-01", 3),
                bucket("2018-02", 7),
                bucket("2018-05", 1),
            ],
            total: 11,
            as_of_seq: 40,
        },
        subject: "china and north-korea".into(),
        value_label: "goldstein".into(),
    };
    let svg = trend(&data).unwrap();
    let document = parse(&svg);
    let bars = document
        .descendants()
        .filter(|node| node.tag_name().name() == "rect" && node.attribute("fill") == Some(BAR_FILL))
        .count();
    assert_eq!(bars, 3, "{svg}");
    assert!(svg.contains("mean goldstein"));
}
