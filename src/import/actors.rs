//! Who a row names: its sides resolved to entity ids, and the declarations
//! the log still needs for them.
//!
//! A country is the table's canonical id (`PRK`, `North Korea` →
//! `north-korea`); a GDELT actor code is `cameo-<code>` (`cameo-usagov`);
//! an ICEWS actor name is its kebab-case (`Xi Jinping` → `xi-jinping`), or
//! the entity the log already has under that name or alias. An entity the
//! log lacks is declared by an event of its own, `actor-<id>`, whose content
//! depends only on the entity (never on the file that named it first), so
//! files imported in any order declare the same entities.
//!
//! What the log has is read once, at the start (`ListEntities`): every
//! id, name and alias, as the server resolves them (case-insensitively).
//! Resolving a row then asks the server nothing.

use super::countries::{self, Country};
use super::row::{Actor, CountryRef, Row, ROLES};
use crate::proto;
use std::collections::HashMap;

/// The valid time of every declaration the importer makes: the start of
/// the earliest coded data set (GDELT 1.0, 1979).
pub const DECLARED_AT: &str = "1979";

/// A row's participants, and the declarations to append before it.
#[derive(Debug, Default)]
pub struct Resolved {
    pub participants: Vec<proto::Participant>,
    pub declarations: Vec<proto::Event>,
}

/// What this import knows of the log's entities: every id, name and alias,
/// to the entity it names.
#[derive(Debug, Default)]
pub struct Actors {
    /// Lowercased id, name or alias → entity id.
    known: HashMap<String, String>,
}

/// An entity a row names, before it is known to exist.
struct Wanted {
    id: String,
    name: String,
    entity_type: proto::EntityType,
    aliases: Vec<String>,
}

impl Actors {
    /// The entities the log has (as `ListEntities` lists them).
    pub fn new(entities: &[proto::Entity]) -> Actors {
        let mut actors = Actors::default();
        for entity in entities {
            for name in std::iter::once(&entity.id)
                .chain(std::iter::once(&entity.name))
                .chain(&entity.aliases)
            {
                actors
                    .known
                    .entry(name.trim().to_lowercase())
                    .or_insert_with(|| entity.id.clone());
            }
        }
        actors
    }

    /// The participants of `row` (roles `subject` and `target`), declaring
    /// what the log does not have yet.
    pub fn resolve(&mut self, row: &Row) -> Resolved {
        let mut resolved = Resolved::default();
        for (side, role) in row.sides.iter().zip(ROLES) {
            let country = side.country.as_ref().map(|country| match country {
                CountryRef::Known(country) => country_entity(country),
                CountryRef::Unknown { id, text } => other_entity(id, text),
            });
            let actor = side.actor.as_ref().map(|actor| match actor {
                Actor::Code(code) => other_entity(&format!("cameo-{code}"), code),
                Actor::Name(name) => match countries::by_name(name) {
                    Some(country) => country_entity(country),
                    None => other_entity(name, name),
                },
            });
            for wanted in country.into_iter().chain(actor) {
                let entity = self.entity(wanted, &mut resolved.declarations);
                let participant = proto::Participant {
                    entity,
                    role: role.to_string(),
                };
                if !resolved.participants.contains(&participant) {
                    resolved.participants.push(participant);
                }
            }
        }
        resolved
    }

    /// The id of the entity `wanted` is, declaring it when no entity has its
    /// id or name.
    fn entity(&mut self, wanted: Wanted, declarations: &mut Vec<proto::Event>) -> String {
        for name in [&wanted.id, &wanted.name] {
            if let Some(id) = self.known.get(&name.trim().to_lowercase()) {
                return id.clone();
            }
        }
        // Aliases another entity already answers to stay with it.
        let name = wanted.name.to_lowercase();
        let mut aliases: Vec<String> = Vec::new();
        for alias in wanted.aliases {
            let lower = alias.trim().to_lowercase();
            let taken = lower == name
                || self.known.contains_key(&lower)
                || aliases.iter().any(|kept| kept.to_lowercase() == lower);
            if !taken {
                aliases.push(alias);
            }
        }
        for known in std::iter::once(&wanted.id)
            .chain(std::iter::once(&wanted.name))
            .chain(&aliases)
        {
            self.known
                .insert(known.trim().to_lowercase(), wanted.id.clone());
        }
        declarations.push(declaration(
            &wanted.id,
            &wanted.name,
            wanted.entity_type,
            aliases,
        ));
        wanted.id
    }
}

fn country_entity(country: &Country) -> Wanted {
    let mut aliases = vec![country.code.clone()];
    aliases.extend(country.codes.iter().cloned());
    aliases.extend(country.aliases.iter().cloned());
    Wanted {
        id: country.id.clone(),
        name: country.name.clone(),
        entity_type: proto::EntityType::Country,
        aliases,
    }
}

fn other_entity(id_text: &str, name: &str) -> Wanted {
    Wanted {
        id: kebab(id_text),
        name: name.trim().to_string(),
        entity_type: proto::EntityType::Other,
        aliases: Vec::new(),
    }
}

/// The event that declares an entity for the importer: a function of the
/// entity alone.
pub fn declaration(
    id: &str,
    name: &str,
    entity_type: proto::EntityType,
    aliases: Vec<String>,
) -> proto::Event {
    proto::Event {
        id: format!("actor-{id}"),
        kind: "actor_declared".to_string(),
        occurred: Some(proto::TimeSpan {
            start: DECLARED_AT.to_string(),
            end: String::new(),
        }),
        summary: format!("Declares {name}, named in coded event data."),
        effects: vec![proto::Effect {
            at: String::new(),
            change: Some(proto::effect::Change::Declare(proto::Declare {
                id: id.to_string(),
                name: name.to_string(),
                r#type: entity_type as i32,
                aliases,
            })),
        }],
        ..Default::default()
    }
}

/// A name as an entity id: ASCII (transliterated), lowercase, words joined
/// by `-`, at most 120 bytes; `entity` when nothing is left.
pub fn kebab(name: &str) -> String {
    let ascii = deunicode::deunicode(name).to_lowercase();
    let mut id = String::with_capacity(ascii.len());
    for word in ascii
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        if id.len() + word.len() + 1 > 120 {
            break;
        }
        if !id.is_empty() {
            id.push('-');
        }
        id.push_str(word);
    }
    if id.is_empty() {
        id.push_str("entity");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::row::Side;

    fn entity(id: &str, aliases: &[&str]) -> proto::Entity {
        proto::Entity {
            id: id.into(),
            name: id.to_uppercase(),
            aliases: aliases.iter().map(|alias| alias.to_string()).collect(),
            ..Default::default()
        }
    }

    fn row(sides: [Side; 2]) -> Row {
        match crate::import::icews::parse(
            "1\t2018-06-01\tA\tNA\tNA\tConsult\t040\t1\tB\tNA\tNA\t1\t1\tP\tNA\tNA\tNA\tNA\tNA\tNA",
        ) {
            crate::import::row::Parsed::Row(mut row) => {
                row.sides = sides;
                *row
            }
            crate::import::row::Parsed::Skipped(skip) => panic!("{}", skip.detail),
        }
    }

    #[test]
    fn names_become_kebab_case_ids() {
        assert_eq!(kebab("Recep Tayyip Erdoğan"), "recep-tayyip-erdogan");
        assert_eq!(kebab("Police (India)"), "police-india");
        assert_eq!(kebab("cameo-USAGOV"), "cameo-usagov");
        assert_eq!(kebab("!!!"), "entity");
        assert!(kebab(&"word ".repeat(100)).len() <= 120);
    }

    #[test]
    fn known_entities_are_used_and_the_rest_declared_once() {
        let mut actors = Actors::new(&[
            entity("north-korea", &["PRK"]),
            entity("xi-jinping", &["Xi Jinping"]),
            entity("chinese-peoples-volunteers", &["CPV"]),
        ]);
        let sides = [
            Side {
                country: countries::by_name("China").map(CountryRef::Known),
                actor: Some(Actor::Name("Xi Jinping".into())),
            },
            Side {
                country: countries::by_code("PRK").map(CountryRef::Known),
                actor: Some(Actor::Code("PRKGOV".into())),
            },
        ];
        let resolved = actors.resolve(&row(sides.clone()));
        let named: Vec<(&str, &str)> = resolved
            .participants
            .iter()
            .map(|p| (p.entity.as_str(), p.role.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("china", "subject"),
                ("xi-jinping", "subject"),
                ("north-korea", "target"),
                ("cameo-prkgov", "target")
            ]
        );
        let declared: Vec<&str> = resolved
            .declarations
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(declared, ["actor-china", "actor-cameo-prkgov"]);
        let again = actors.resolve(&row(sides));
        assert!(again.declarations.is_empty(), "declared once");

        // Cape Verde's code is another entity's alias here: it is left out.
        let cape_verde = countries::by_code("CPV").expect("Cape Verde is in the table");
        let side = Side {
            country: Some(CountryRef::Known(cape_verde)),
            actor: None,
        };
        let resolved = actors.resolve(&row([side, Side::default()]));
        let Some(proto::effect::Change::Declare(declare)) =
            &resolved.declarations[0].effects[0].change
        else {
            panic!("not a declaration");
        };
        assert!(!declare.aliases.iter().any(|alias| alias == "CPV"));
    }
}
