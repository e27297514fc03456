//! `annals watch ENTITY --at T`: a standing query. Prints the answer, then
//! each change as it arrives (relations begun or ended, attributes set or
//! gone) with the seq and event that made it, until Ctrl-C.

use super::print::{between, print_entity, print_json, print_relations};
use super::{status_text, Outcome};
use crate::client::Client;
use crate::proto;
use clap::Args;
use std::collections::BTreeMap;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Entity id or alias.
    entity: String,
    /// The valid time watched (empty: now).
    #[arg(long, default_value = "")]
    at: String,
    /// Watch the entity's relations only (ListRelations), not the entity.
    #[arg(long)]
    relations: bool,
    /// Only relations with this counterpart (implies --relations).
    #[arg(long = "with", default_value = "")]
    counterpart: String,
    /// Only relations of this kind (implies --relations).
    #[arg(long, default_value = "")]
    kind: String,
    /// Resume: the answer as of this seq, then every change after it.
    #[arg(long, default_value_t = 0)]
    from_seq: u64,
}

pub async fn run(client: &mut Client, args: WatchArgs, json: bool) -> Outcome {
    if args.relations || !args.counterpart.is_empty() || !args.kind.is_empty() {
        let mut stream = client
            .watch_relations(
                &args.entity,
                &args.counterpart,
                &args.kind,
                &args.at,
                args.from_seq,
            )
            .await
            .map_err(status_text)?;
        let mut before: Option<Vec<proto::Relation>> = None;
        while let Some(message) = stream.message().await.map_err(status_text)? {
            if json {
                print_json(&message)?;
                continue;
            }
            match &before {
                None => {
                    out!("as of seq {}:", message.seq);
                    print_relations(&message.relations);
                }
                Some(before) => {
                    out!("seq {} (event {}):", message.seq, message.event_id);
                    print_changes(&relation_lines(before), &relation_lines(&message.relations));
                }
            }
            before = Some(message.relations);
        }
        return Ok(());
    }
    let mut stream = client
        .watch_entity(&args.entity, &args.at, args.from_seq)
        .await
        .map_err(status_text)?;
    let mut before: Option<proto::GetEntityResponse> = None;
    while let Some(message) = stream.message().await.map_err(status_text)? {
        if json {
            print_json(&message)?;
            continue;
        }
        let answer = message.answer.unwrap_or_default();
        match &before {
            None => {
                out!("as of seq {}:", message.seq);
                print_entity(&answer);
            }
            Some(before) => {
                out!("seq {} (event {}):", message.seq, message.event_id);
                print_changes(&entity_lines(before), &entity_lines(&answer));
            }
        }
        before = Some(answer);
    }
    Ok(())
}

/// An answer as (what, its value) lines, for a diff.
fn entity_lines(answer: &proto::GetEntityResponse) -> BTreeMap<String, String> {
    let mut lines = relation_lines(&answer.relations);
    for attribute in &answer.attributes {
        lines.insert(
            format!("attribute {}", attribute.key),
            format!(
                "= {} (since {}, event {})",
                attribute.value, attribute.since, attribute.event_id
            ),
        );
    }
    if let Some(entity) = &answer.entity {
        lines.insert(
            "name".into(),
            format!("{} (declared by {})", entity.name, entity.declared_by),
        );
    }
    lines
}

fn relation_lines(relations: &[proto::Relation]) -> BTreeMap<String, String> {
    relations
        .iter()
        .map(|relation| {
            (
                format!(
                    "relation {} {}",
                    relation.kind,
                    between(&relation.a, &relation.b, relation.directed)
                ),
                format!("since {} (event {})", relation.since, relation.event_id),
            )
        })
        .collect()
}

fn print_changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    for (what, value) in after {
        match before.get(what) {
            None if what.starts_with("relation") => out!("  begun  {what} {value}"),
            None => out!("  set    {what} {value}"),
            Some(old) if old != value => out!("  now    {what} {value} (was {old})"),
            Some(_) => {}
        }
    }
    for (what, value) in before {
        if !after.contains_key(what) {
            let word = if what.starts_with("relation") {
                "ended"
            } else {
                "gone"
            };
            out!("  {word:6} {what} (was {value})");
        }
    }
}
