//! The answers watches keep: GetEntity's and ListRelations', each worked
//! out whole once, then again only in the part an entry touches (one
//! attribute, the relations of one kind between two entities), so that a
//! watch of an entity with a long history costs an append about as much
//! as one of a new one.

use super::entry::Touch;
use crate::error::Result;
use crate::proto;
use crate::query::Snapshot;
use crate::time::Instant;

/// A standing query: what it answers, what can change that, and how the
/// answer goes to the client.
pub(super) trait Standing: Send + Sync + 'static {
    type Answer: PartialEq + Send + 'static;
    type Message: Send + 'static;

    /// The valid time watched.
    fn at(&self) -> Instant;

    /// The entities whose changes can change the answer (none: any).
    fn entities(&self) -> Vec<String>;

    /// Whether a change to `touch` (dated at or before `at`) can change
    /// the answer.
    fn follows(&self, touch: &Touch) -> bool;

    /// The whole answer.
    fn answer(&self, snapshot: &Snapshot) -> Result<Self::Answer>;

    /// Works out again the part of `answer` that `touch` can change (one
    /// that `follows`); whether it changed.
    fn refresh(
        &self,
        snapshot: &Snapshot,
        touch: &Touch,
        answer: &mut Self::Answer,
    ) -> Result<bool>;

    /// The message of an answer as of `seq`, changed by `event_id` (empty
    /// for the first).
    fn message(&self, answer: &Self::Answer, seq: u64, event_id: &str) -> Self::Message;
}

/// WatchEntity: GetEntity's answer for `id` at `at`.
pub(super) struct EntityAnswer {
    pub id: String,
    pub at: Instant,
}

impl Standing for EntityAnswer {
    type Answer = proto::GetEntityResponse;
    type Message = proto::WatchEntityResponse;

    fn at(&self) -> Instant {
        self.at
    }

    fn entities(&self) -> Vec<String> {
        vec![self.id.clone()]
    }

    fn follows(&self, touch: &Touch) -> bool {
        touch.entities().any(|entity| entity == self.id)
    }

    fn answer(&self, snapshot: &Snapshot) -> Result<Self::Answer> {
        Ok(proto::GetEntityResponse {
            entity: snapshot.entity(&self.id),
            attributes: snapshot.attributes(&self.id, self.at)?,
            relations: snapshot.relations(Some(&self.id), None, None, self.at)?,
        })
    }

    fn refresh(
        &self,
        snapshot: &Snapshot,
        touch: &Touch,
        answer: &mut Self::Answer,
    ) -> Result<bool> {
        match touch {
            Touch::Declared(id) => {
                let entity = snapshot.entity(id);
                let changed = entity != answer.entity;
                answer.entity = entity;
                Ok(changed)
            }
            Touch::Attribute { entity, key } => {
                let now = snapshot.attribute(entity, key, self.at)?;
                Ok(patch_attribute(&mut answer.attributes, key, now))
            }
            Touch::Relation { kind, a, b } => {
                let other = if *a == self.id { b } else { a };
                let now = snapshot.relations(Some(&self.id), Some(other), Some(kind), self.at)?;
                Ok(patch_relations(&mut answer.relations, kind, a, b, now))
            }
        }
    }

    fn message(&self, answer: &Self::Answer, seq: u64, event_id: &str) -> Self::Message {
        proto::WatchEntityResponse {
            answer: Some(answer.clone()),
            seq,
            event_id: event_id.to_string(),
        }
    }
}

/// WatchRelations: ListRelations' answer at `at`, of `entity` (every
/// relation when `None`), only with `counterpart` and of `kind` when given.
pub(super) struct RelationsAnswer {
    pub entity: Option<String>,
    pub counterpart: Option<String>,
    pub kind: Option<String>,
    pub at: Instant,
}

impl Standing for RelationsAnswer {
    type Answer = Vec<proto::Relation>;
    type Message = proto::WatchRelationsResponse;

    fn at(&self) -> Instant {
        self.at
    }

    fn entities(&self) -> Vec<String> {
        self.entity
            .iter()
            .chain(&self.counterpart)
            .cloned()
            .collect()
    }

    fn follows(&self, touch: &Touch) -> bool {
        let Touch::Relation { kind, a, b } = touch else {
            return false;
        };
        let between = |entity: &Option<String>| {
            entity
                .as_ref()
                .is_none_or(|entity| entity == a || entity == b)
        };
        self.kind.as_ref().is_none_or(|wanted| wanted == kind)
            && between(&self.entity)
            && between(&self.counterpart)
    }

    fn answer(&self, snapshot: &Snapshot) -> Result<Self::Answer> {
        snapshot.relations(
            self.entity.as_deref(),
            self.counterpart.as_deref(),
            self.kind.as_deref(),
            self.at,
        )
    }

    fn refresh(
        &self,
        snapshot: &Snapshot,
        touch: &Touch,
        answer: &mut Self::Answer,
    ) -> Result<bool> {
        let Touch::Relation { kind, a, b } = touch else {
            return Ok(false);
        };
        let now = snapshot.relations(Some(a), Some(b), Some(kind), self.at)?;
        Ok(patch_relations(answer, kind, a, b, now))
    }

    fn message(&self, answer: &Self::Answer, seq: u64, event_id: &str) -> Self::Message {
        proto::WatchRelationsResponse {
            relations: answer.clone(),
            seq,
            event_id: event_id.to_string(),
        }
    }
}

/// Puts `now` (the attribute `key` in force, if any) in place of `key`'s
/// entry in `attributes` (by key); whether that changed them.
fn patch_attribute(
    attributes: &mut Vec<proto::Attribute>,
    key: &str,
    now: Option<proto::Attribute>,
) -> bool {
    let place = attributes.partition_point(|attribute| attribute.key.as_str() < key);
    let held = attributes
        .get(place)
        .filter(|attribute| attribute.key == key);
    match (held, now) {
        (Some(held), Some(now)) if *held == now => false,
        (Some(_), Some(now)) => {
            attributes[place] = now;
            true
        }
        (Some(_), None) => {
            attributes.remove(place);
            true
        }
        (None, Some(now)) => {
            attributes.insert(place, now);
            true
        }
        (None, None) => false,
    }
}

/// Puts `now` (the relations of `kind` between `a` and `b` active, by
/// (kind, a, b, directed)) in place of theirs in `relations` (in that
/// order); whether that changed them.
fn patch_relations(
    relations: &mut Vec<proto::Relation>,
    kind: &str,
    a: &str,
    b: &str,
    now: Vec<proto::Relation>,
) -> bool {
    let theirs = |relation: &proto::Relation| {
        relation.kind == kind
            && ((relation.a == a && relation.b == b) || (relation.a == b && relation.b == a))
    };
    let held = relations.iter().filter(|relation| theirs(relation));
    if held.clone().eq(now.iter()) {
        return false;
    }
    relations.retain(|relation| !theirs(relation));
    fn order(relation: &proto::Relation) -> (&str, &str, &str, bool) {
        (&relation.kind, &relation.a, &relation.b, relation.directed)
    }
    for relation in now {
        let place = relations.partition_point(|other| order(other) < order(&relation));
        relations.insert(place, relation);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(kind: &str, a: &str, b: &str, directed: bool, since: &str) -> proto::Relation {
        proto::Relation {
            a: a.into(),
            b: b.into(),
            kind: kind.into(),
            directed,
            since: since.into(),
            certain: true,
            event_id: format!("{kind}-{a}-{b}"),
        }
    }

    #[test]
    fn a_patched_list_of_relations_is_the_list_worked_out_whole() {
        let whole = vec![
            relation("ally", "x", "y", false, "1950"),
            relation("rival", "w", "x", true, "1951"),
            relation("rival", "x", "w", true, "1952"),
            relation("trade", "x", "z", false, "1953"),
        ];
        // The rival relations between x and w, both ways, unknown to the
        // list held: patched in at their places.
        let mut held = vec![whole[0].clone(), whole[3].clone()];
        assert!(patch_relations(
            &mut held,
            "rival",
            "x",
            "w",
            whole[1..3].to_vec()
        ));
        assert_eq!(held, whole);
        // The same again: no change.
        assert!(!patch_relations(
            &mut held,
            "rival",
            "w",
            "x",
            whole[1..3].to_vec()
        ));
        // One ended, one begun again later: replaced.
        let later = relation("rival", "x", "w", true, "1960");
        assert!(patch_relations(
            &mut held,
            "rival",
            "w",
            "x",
            vec![later.clone()]
        ));
        assert_eq!(held, vec![whole[0].clone(), later, whole[3].clone()]);
        // Ended: gone, the others kept.
        assert!(patch_relations(&mut held, "rival", "x", "w", Vec::new()));
        assert_eq!(held, vec![whole[0].clone(), whole[3].clone()]);
    }

    #[test]
    fn a_patched_attribute_takes_its_place_by_key() {
        let attribute = |key: &str, value: &str| proto::Attribute {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let mut held = vec![attribute("a", "1"), attribute("c", "3")];
        assert!(patch_attribute(&mut held, "b", Some(attribute("b", "2"))));
        assert!(!patch_attribute(&mut held, "b", Some(attribute("b", "2"))));
        assert!(patch_attribute(&mut held, "c", Some(attribute("c", "4"))));
        assert!(patch_attribute(&mut held, "a", None));
        assert!(!patch_attribute(&mut held, "d", None));
        assert_eq!(held, vec![attribute("b", "2"), attribute("c", "4")]);
    }
}
