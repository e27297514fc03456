//! How client commands print: aligned tables, and proto3 JSON with `--json`.

use super::Outcome;
use crate::json::{to_json, Named};
use crate::proto;

pub fn print_json<M: Named>(message: &M) -> Outcome {
    let text =
        serde_json::to_string_pretty(&to_json(message)).map_err(|error| error.to_string())?;
    out!("{text}");
    Ok(())
}

pub fn parse_entity_type(text: &str) -> Result<proto::EntityType, String> {
    if text.is_empty() {
        return Ok(proto::EntityType::Unspecified);
    }
    let name = format!("ENTITY_TYPE_{}", text.to_uppercase());
    proto::EntityType::from_str_name(&name).ok_or_else(|| {
        format!("{text:?} is not an entity type: COUNTRY, PERSON, ORGANIZATION, PLACE or OTHER")
    })
}

pub fn type_name(value: i32) -> String {
    proto::EntityType::try_from(value)
        .map(|entity_type| {
            entity_type
                .as_str_name()
                .trim_start_matches("ENTITY_TYPE_")
                .to_string()
        })
        .unwrap_or_else(|_| value.to_string())
}

pub fn between(a: &str, b: &str, directed: bool) -> String {
    if directed {
        format!("{a} -> {b}")
    } else {
        format!("{a} -- {b}")
    }
}

pub fn certainty(certain: bool) -> String {
    if certain { "yes" } else { "possible" }.to_string()
}

pub fn print_entity(response: &proto::GetEntityResponse) {
    if let Some(entity) = &response.entity {
        out!(
            "{}  {}  ({})",
            entity.id,
            entity.name,
            type_name(entity.r#type)
        );
        if !entity.aliases.is_empty() {
            out!("aliases: {}", entity.aliases.join(", "));
        }
        out!("declared by: {}", entity.declared_by);
    }
    out!();
    let rows = response
        .attributes
        .iter()
        .map(|attribute| {
            vec![
                attribute.key.clone(),
                attribute.value.clone(),
                attribute.since.clone(),
                certainty(attribute.certain),
                attribute.event_id.clone(),
            ]
        })
        .collect();
    print_table(&["ATTRIBUTE", "VALUE", "SINCE", "CERTAIN", "EVENT"], rows);
    out!();
    print_relations(&response.relations);
}

pub fn print_relations(relations: &[proto::Relation]) {
    let rows = relations
        .iter()
        .map(|relation| {
            vec![
                relation.kind.clone(),
                between(&relation.a, &relation.b, relation.directed),
                relation.since.clone(),
                certainty(relation.certain),
                relation.event_id.clone(),
            ]
        })
        .collect();
    print_table(&["RELATION", "BETWEEN", "SINCE", "CERTAIN", "EVENT"], rows);
}

pub fn when(event: &proto::Event) -> String {
    match &event.occurred {
        Some(span) if span.end.is_empty() => span.start.clone(),
        Some(span) => format!("{}/{}", span.start, span.end),
        None => String::new(),
    }
}

pub fn entry_row(entry: &proto::LogEntry) -> Vec<String> {
    let event = entry.event.clone().unwrap_or_default();
    let mut summary = event.summary.clone();
    if !entry.superseded_by.is_empty() {
        summary = format!("[superseded by {}] {summary}", entry.superseded_by);
    }
    vec![
        entry.seq.to_string(),
        when(&event),
        event.kind.clone(),
        event.id.clone(),
        summary,
    ]
}

pub fn print_entries(entries: &[proto::LogEntry]) {
    let rows = entries.iter().map(entry_row).collect();
    print_table(&["SEQ", "WHEN", "KIND", "ID", "SUMMARY"], rows);
}

pub fn print_diff(changes: &[proto::StateChange]) {
    let rows = changes
        .iter()
        .map(|change| {
            let kind = proto::ChangeKind::try_from(change.kind).unwrap_or_default();
            let (label, what) = match (kind, &change.relation) {
                (proto::ChangeKind::RelationBegun, Some(relation)) => (
                    "relation begun",
                    format!(
                        "{} {}",
                        relation.kind,
                        between(&relation.a, &relation.b, relation.directed)
                    ),
                ),
                (proto::ChangeKind::RelationEnded, Some(relation)) => (
                    "relation ended",
                    format!(
                        "{} {}",
                        relation.kind,
                        between(&relation.a, &relation.b, relation.directed)
                    ),
                ),
                (proto::ChangeKind::AttributeUnset, _) => (
                    "attribute unset",
                    format!(
                        "{}.{} (was {:?})",
                        change.entity, change.key, change.previous_value
                    ),
                ),
                _ => (
                    "attribute set",
                    if change.previous_value.is_empty() {
                        format!("{}.{} = {}", change.entity, change.key, change.value)
                    } else {
                        format!(
                            "{}.{} = {} (was {})",
                            change.entity, change.key, change.value, change.previous_value
                        )
                    },
                ),
            };
            vec![
                label.to_string(),
                what,
                change.at.clone(),
                certainty(change.certain),
                change.event_id.clone(),
            ]
        })
        .collect();
    print_table(&["CHANGE", "WHAT", "AT", "CERTAIN", "EVENT"], rows);
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        out!("(none)");
        return;
    }
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
