//! What a log entry can change, worked out once for every watch it reaches:
//! which parts of the state its effects touch, and from when.

use crate::proto;
use crate::time::{Instant, ValidTime};

/// One part of the state an effect changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Touch {
    /// An entity's declaration (its name, type and aliases).
    Declared(String),
    /// One attribute of an entity.
    Attribute { entity: String, key: String },
    /// The relations of one kind between two entities (either way round).
    Relation { kind: String, a: String, b: String },
}

impl Touch {
    /// The entities whose answers it can change.
    pub(crate) fn entities(&self) -> impl Iterator<Item = &str> {
        let (first, second) = match self {
            Touch::Declared(id) => (id.as_str(), None),
            Touch::Attribute { entity, .. } => (entity.as_str(), None),
            Touch::Relation { a, b, .. } => (a.as_str(), Some(b.as_str())),
        };
        std::iter::once(first).chain(second)
    }
}

/// A log entry as the watches see it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub seq: u64,
    pub event_id: String,
    /// A correction withdraws another event's effects, whatever they
    /// touched: every answer is worked out again.
    pub corrects: bool,
    /// What its effects change, each with the earliest valid time it
    /// changes it from (a change dated after a watch's `at` cannot change
    /// its answer). An event without effects changes nothing.
    pub touches: Vec<(Touch, Instant)>,
}

impl Entry {
    /// The entry of a logged event; `None` for an entry without one.
    /// Read from the wire form as stored: a logged event is valid and names
    /// entities by id, so nothing needs resolving.
    pub(crate) fn of(entry: &proto::LogEntry) -> Option<Entry> {
        use proto::effect::Change;
        let event = entry.event.as_ref()?;
        let occurred = event.occurred.clone().unwrap_or_default();
        let touches = event
            .effects
            .iter()
            .filter_map(|effect| {
                let touch = match effect.change.as_ref()? {
                    Change::Declare(declare) => Touch::Declared(declare.id.clone()),
                    Change::Set(set) => Touch::Attribute {
                        entity: set.entity.clone(),
                        key: set.key.clone(),
                    },
                    Change::Begin(relation) => Touch::Relation {
                        kind: relation.kind.clone(),
                        a: relation.a.clone(),
                        b: relation.b.clone(),
                    },
                    Change::End(relation) => Touch::Relation {
                        kind: relation.kind.clone(),
                        a: relation.a.clone(),
                        b: relation.b.clone(),
                    },
                };
                let text = if !effect.at.is_empty() {
                    &effect.at
                } else if matches!(effect.change, Some(Change::End(_))) && !occurred.end.is_empty()
                {
                    &occurred.end
                } else {
                    &occurred.start
                };
                // A logged event's times parse; were one not to, it counts
                // from the beginning of time.
                let from = ValidTime::parse(text).map_or(Instant::MIN, |time| time.earliest());
                Some((touch, from))
            })
            .collect();
        Some(Entry {
            seq: entry.seq,
            event_id: event.id.clone(),
            corrects: !event.corrects.is_empty(),
            touches,
        })
    }

    /// The entities whose answers it can change, perhaps more than once.
    pub(crate) fn entities(&self) -> impl Iterator<Item = &str> {
        self.touches.iter().flat_map(|(touch, _)| touch.entities())
    }

    /// Whether it can change some answer: a correction, or an event with
    /// effects.
    pub(crate) fn changes_anything(&self) -> bool {
        self.corrects || !self.touches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_what_its_effects_touch_and_from_when() {
        use proto::effect::Change;
        let event = proto::Event {
            id: "e".into(),
            kind: "meeting".into(),
            occurred: Some(proto::TimeSpan {
                start: "1950-06".into(),
                end: "1953-07-27".into(),
            }),
            participants: vec![proto::Participant {
                entity: "bystander".into(),
                ..Default::default()
            }],
            effects: vec![
                proto::Effect {
                    at: String::new(),
                    change: Some(Change::Begin(proto::BeginRelation {
                        a: "x".into(),
                        b: "y".into(),
                        kind: "ally".into(),
                        directed: false,
                    })),
                },
                proto::Effect {
                    at: String::new(),
                    change: Some(Change::End(proto::EndRelation {
                        a: "x".into(),
                        b: "z".into(),
                        kind: "rival".into(),
                        directed: false,
                    })),
                },
                proto::Effect {
                    at: "1949".into(),
                    change: Some(Change::Set(proto::SetAttribute {
                        entity: "y".into(),
                        key: "leader".into(),
                        value: "v".into(),
                    })),
                },
            ],
            ..Default::default()
        };
        let entry = Entry::of(&proto::LogEntry {
            seq: 7,
            event: Some(event),
            ..Default::default()
        })
        .unwrap();
        let day = |text| ValidTime::parse(text).unwrap().earliest();
        assert_eq!(entry.seq, 7);
        assert!(!entry.corrects);
        assert_eq!(
            entry.touches,
            vec![
                (
                    Touch::Relation {
                        kind: "ally".into(),
                        a: "x".into(),
                        b: "y".into()
                    },
                    day("1950-06")
                ),
                (
                    Touch::Relation {
                        kind: "rival".into(),
                        a: "x".into(),
                        b: "z".into()
                    },
                    day("1953-07-27")
                ),
                (
                    Touch::Attribute {
                        entity: "y".into(),
                        key: "leader".into()
                    },
                    day("1949")
                ),
            ]
        );
        // A participant is named, but its answers do not change.
        let entities: Vec<&str> = entry.entities().collect();
        assert_eq!(entities, ["x", "y", "x", "z", "y"]);
    }
}
