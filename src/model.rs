//! The domain: events and their effects as validated plain Rust.
//!
//! Requests are parsed into these types once, at the edge
//! (`Event::from_proto`); everything below works only with validated values.
//! The checks here need no context; those that need the log (is the entity
//! declared? does the corrected event exist?) are made by `engine`.

use crate::error::{Error, Result};
use crate::proto;
use crate::time::ValidTime;

pub const MAX_ID_LEN: usize = 128;
pub const MAX_KIND_LEN: usize = 64;
pub const MAX_TEXT_LEN: usize = 4096;
pub const MAX_EFFECTS: usize = 1000;
pub const MAX_PARTICIPANTS: usize = 1000;

/// A validated event: what happened, when, and what it changed.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub start: ValidTime,
    pub end: Option<ValidTime>,
    pub participants: Vec<String>,
    pub location: Option<String>,
    pub effects: Vec<Effect>,
    pub corrects: Option<String>,
}

/// One state change, with the valid time at which it takes effect.
#[derive(Clone, Debug)]
pub struct Effect {
    pub time: ValidTime,
    pub change: Change,
}

#[derive(Clone, Debug)]
pub enum Change {
    Declare(Declaration),
    Set {
        entity: String,
        key: String,
        value: String,
    },
    Begin(RelationKey),
    End(RelationKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    pub id: String,
    pub name: String,
    pub entity_type: proto::EntityType,
    pub aliases: Vec<String>,
}

/// Identifies a relation. Symmetric relations keep `a < b`, so that
/// `begin(china, north-korea)` and `end(north-korea, china)` name the same one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationKey {
    pub kind: String,
    pub a: String,
    pub b: String,
    pub directed: bool,
}

impl RelationKey {
    pub fn new(a: &str, b: &str, kind: &str, directed: bool) -> RelationKey {
        let (a, b) = if directed || a <= b { (a, b) } else { (b, a) };
        RelationKey {
            kind: kind.to_string(),
            a: a.to_string(),
            b: b.to_string(),
            directed,
        }
    }

    pub fn involves(&self, entity: &str) -> bool {
        self.a == entity || self.b == entity
    }
}

impl Event {
    /// Validates a wire event. `id` may be empty here; the engine assigns one.
    pub fn from_proto(event: &proto::Event) -> Result<Event> {
        if !event.id.is_empty() {
            check_event_id("id", &event.id)?;
        }
        check_kind("kind", &event.kind)?;
        let occurred = event
            .occurred
            .as_ref()
            .ok_or_else(|| Error::invalid("occurred", "is required: when did it happen?"))?;
        let start = parse_time("occurred.start", &occurred.start)?;
        let end = if occurred.end.is_empty() {
            None
        } else {
            let end = parse_time("occurred.end", &occurred.end)?;
            if end.earliest() < start.earliest() || end.latest() < start.latest() {
                return Err(Error::invalid(
                    "occurred.end",
                    format!("{end} is before the start {start}"),
                ));
            }
            Some(end)
        };
        check_text("summary", &event.summary)?;
        if event.participants.len() > MAX_PARTICIPANTS {
            return Err(Error::invalid(
                "participants",
                format!("at most {MAX_PARTICIPANTS} participants"),
            ));
        }
        let mut participants = Vec::with_capacity(event.participants.len());
        for (i, participant) in event.participants.iter().enumerate() {
            check_entity_id(&format!("participants[{i}].entity"), &participant.entity)?;
            if !participant.role.is_empty() {
                check_kind(&format!("participants[{i}].role"), &participant.role)?;
            }
            participants.push(participant.entity.clone());
        }
        let location = if event.location.is_empty() {
            None
        } else {
            check_entity_id("location", &event.location)?;
            Some(event.location.clone())
        };
        if event.effects.len() > MAX_EFFECTS {
            return Err(Error::invalid(
                "effects",
                format!("at most {MAX_EFFECTS} effects per event"),
            ));
        }
        let effects = event
            .effects
            .iter()
            .enumerate()
            .map(|(i, effect)| {
                Effect::from_proto(effect, &start, end.as_ref())
                    .map_err(|error| error.within(&format!("effects[{i}]")))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(source) = &event.source {
            check_text("source.document", &source.document)?;
            check_text("source.quote", &source.quote)?;
            check_text("source.url", &source.url)?;
            if !source.published.is_empty() {
                parse_time("source.published", &source.published)?;
            }
            if !(0.0..=1.0).contains(&source.confidence) {
                return Err(Error::invalid(
                    "source.confidence",
                    format!("{} is outside 0..1", source.confidence),
                ));
            }
        }
        for (key, value) in &event.labels {
            if key.is_empty() || key.len() > MAX_KIND_LEN {
                return Err(Error::invalid(
                    "labels",
                    format!("label keys are 1 to {MAX_KIND_LEN} bytes"),
                ));
            }
            check_text(&format!("labels[{key}]"), value)?;
        }
        let corrects = if event.corrects.is_empty() {
            None
        } else {
            check_event_id("corrects", &event.corrects)?;
            if event.corrects == event.id {
                return Err(Error::invalid("corrects", "an event cannot correct itself"));
            }
            Some(event.corrects.clone())
        };
        Ok(Event {
            id: event.id.clone(),
            kind: event.kind.clone(),
            start,
            end,
            participants,
            location,
            effects,
            corrects,
        })
    }

    /// Every entity the event names: participants, location, and the
    /// entities its effects touch, each once, in first-mention order.
    pub fn entities(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for participant in &self.participants {
            push_unique(&mut names, participant);
        }
        if let Some(location) = &self.location {
            push_unique(&mut names, location);
        }
        for effect in &self.effects {
            match &effect.change {
                Change::Declare(declaration) => push_unique(&mut names, &declaration.id),
                Change::Set { entity, .. } => push_unique(&mut names, entity),
                Change::Begin(key) | Change::End(key) => {
                    push_unique(&mut names, &key.a);
                    push_unique(&mut names, &key.b);
                }
            }
        }
        names
    }

    /// The event's valid-time span: the start's earliest to the end's latest.
    pub fn earliest(&self) -> i64 {
        self.start.earliest()
    }

    pub fn latest(&self) -> i64 {
        self.end.as_ref().unwrap_or(&self.start).latest()
    }
}

fn push_unique<'a>(names: &mut Vec<&'a str>, name: &'a str) {
    if !names.contains(&name) {
        names.push(name);
    }
}

impl Effect {
    fn from_proto(
        effect: &proto::Effect,
        start: &ValidTime,
        end: Option<&ValidTime>,
    ) -> Result<Effect> {
        use proto::effect::Change as Wire;
        let explicit = if effect.at.is_empty() {
            None
        } else {
            Some(parse_time("at", &effect.at)?)
        };
        let change = effect.change.as_ref().ok_or_else(|| {
            Error::invalid("change", "one of declare, set, begin or end is required")
        })?;
        let (change, default_time) = match change {
            Wire::Declare(declare) => (Change::Declare(Declaration::from_proto(declare)?), start),
            Wire::Set(set) => {
                check_entity_id("set.entity", &set.entity)?;
                check_kind("set.key", &set.key)?;
                check_text("set.value", &set.value)?;
                let change = Change::Set {
                    entity: set.entity.clone(),
                    key: set.key.clone(),
                    value: set.value.clone(),
                };
                (change, start)
            }
            Wire::Begin(begin) => {
                let key = relation_key("begin", &begin.a, &begin.b, &begin.kind, begin.directed)?;
                (Change::Begin(key), start)
            }
            Wire::End(finish) => {
                let key = relation_key("end", &finish.a, &finish.b, &finish.kind, finish.directed)?;
                (Change::End(key), end.unwrap_or(start))
            }
        };
        Ok(Effect {
            time: explicit.unwrap_or_else(|| default_time.clone()),
            change,
        })
    }
}

impl Declaration {
    fn from_proto(declare: &proto::Declare) -> Result<Declaration> {
        check_entity_id("declare.id", &declare.id)?;
        if declare.name.trim().is_empty() {
            return Err(Error::invalid("declare.name", "is required"));
        }
        check_text("declare.name", &declare.name)?;
        let entity_type = proto::EntityType::try_from(declare.r#type)
            .ok()
            .filter(|entity_type| *entity_type != proto::EntityType::Unspecified)
            .ok_or_else(|| {
                Error::invalid(
                    "declare.type",
                    format!(
                        "{} is not an entity type: COUNTRY, PERSON, ORGANIZATION, PLACE or OTHER",
                        declare.r#type
                    ),
                )
            })?;
        for (i, alias) in declare.aliases.iter().enumerate() {
            if alias.trim().is_empty() || alias.len() > MAX_ID_LEN {
                return Err(Error::invalid(
                    format!("declare.aliases[{i}]"),
                    format!("aliases are 1 to {MAX_ID_LEN} bytes, not blank"),
                ));
            }
        }
        Ok(Declaration {
            id: declare.id.clone(),
            name: declare.name.clone(),
            entity_type,
            aliases: declare.aliases.clone(),
        })
    }

    /// Every text a lookup may use for this entity, lowercased: its name and
    /// aliases (the id resolves on its own).
    pub fn lookup_names(&self) -> Vec<String> {
        let mut names = vec![self.name.to_lowercase()];
        for alias in &self.aliases {
            let alias = alias.to_lowercase();
            if !names.contains(&alias) {
                names.push(alias);
            }
        }
        names.retain(|name| name != &self.id);
        names
    }
}

fn relation_key(field: &str, a: &str, b: &str, kind: &str, directed: bool) -> Result<RelationKey> {
    check_entity_id(&format!("{field}.a"), a)?;
    check_entity_id(&format!("{field}.b"), b)?;
    check_kind(&format!("{field}.kind"), kind)?;
    if a == b {
        return Err(Error::invalid(
            format!("{field}.b"),
            format!("a relation needs two entities; both are {a:?}"),
        ));
    }
    Ok(RelationKey::new(a, b, kind, directed))
}

pub fn parse_time(field: &str, text: &str) -> Result<ValidTime> {
    ValidTime::parse(text).map_err(|error| Error::invalid(field, error.to_string()))
}

/// Entity ids are lowercase kebab-case: `north-korea`, `kim-jong-un`.
pub fn check_entity_id(field: &str, id: &str) -> Result<()> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        });
    if well_formed {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{id:?} is not an entity id: lowercase kebab-case like \"north-korea\", at most {MAX_ID_LEN} bytes"),
        ))
    }
}

/// Kinds, roles and attribute keys are lower_snake_case: `state_visit`.
pub fn check_kind(field: &str, kind: &str) -> Result<()> {
    let well_formed = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind.as_bytes()[0].is_ascii_lowercase()
        && kind.split('_').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        });
    if well_formed {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{kind:?} is not lower_snake_case like \"state_visit\" (at most {MAX_KIND_LEN} bytes)"),
        ))
    }
}

/// Event ids are client-chosen: 1 to 128 bytes of letters, digits and `-_.:`.
pub fn check_event_id(field: &str, id: &str) -> Result<()> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte));
    if well_formed {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{id:?} is not an event id: 1 to {MAX_ID_LEN} letters, digits, '-', '_', '.' or ':'"),
        ))
    }
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes; at most {MAX_TEXT_LEN}", text.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json_effects: Vec<proto::Effect>) -> proto::Event {
        proto::Event {
            id: "e-1".into(),
            kind: "meeting".into(),
            occurred: Some(proto::TimeSpan {
                start: "1950-06-25".into(),
                end: "1953-07-27".into(),
            }),
            effects: json_effects,
            ..Default::default()
        }
    }

    fn end_effect(a: &str, b: &str) -> proto::Effect {
        proto::Effect {
            at: String::new(),
            change: Some(proto::effect::Change::End(proto::EndRelation {
                a: a.into(),
                b: b.into(),
                kind: "at_war".into(),
                directed: false,
            })),
        }
    }

    #[test]
    fn an_end_effect_defaults_to_the_event_end() {
        let parsed = Event::from_proto(&event(vec![end_effect("north-korea", "china")])).unwrap();
        assert_eq!(parsed.effects[0].time.text(), "1953-07-27");
        match &parsed.effects[0].change {
            Change::End(key) => {
                assert_eq!((key.a.as_str(), key.b.as_str()), ("china", "north-korea"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn field_paths_name_the_offender() {
        let error = Event::from_proto(&event(vec![end_effect("china", "china")])).unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { ref field, .. } if field == "effects[0].end.b"),
            "{error}"
        );
        let mut reversed = event(vec![]);
        reversed.occurred.as_mut().unwrap().end = "1949".into();
        let error = Event::from_proto(&reversed).unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { ref field, .. } if field == "occurred.end"),
            "{error}"
        );
    }

    #[test]
    fn identifiers_have_one_shape_each() {
        assert!(check_entity_id("f", "north-korea").is_ok());
        for bad in [
            "North-Korea",
            "north_korea",
            "-north",
            "north-",
            "",
            "a--b",
            "a b",
        ] {
            assert!(check_entity_id("f", bad).is_err(), "{bad}");
        }
        assert!(check_kind("f", "state_visit").is_ok());
        for bad in ["StateVisit", "state-visit", "_x", "x_", "1x", ""] {
            assert!(check_kind("f", bad).is_err(), "{bad}");
        }
        assert!(check_event_id("f", "article-001").is_ok());
        assert!(check_event_id("f", "a b").is_err());
    }

    #[test]
    fn symmetric_keys_are_order_free_and_directed_keys_are_not() {
        assert_eq!(
            RelationKey::new("north-korea", "china", "alliance", false),
            RelationKey::new("china", "north-korea", "alliance", false)
        );
        assert_ne!(
            RelationKey::new("north-korea", "china", "supports", true),
            RelationKey::new("china", "north-korea", "supports", true)
        );
    }
}
