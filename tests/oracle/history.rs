//! Random histories: declarations, then batches of events out of valid-time
//! order, with imprecise dates, spans, corrections and retractions, one or
//! two participants and labels.

use super::common;
use annals::proto;
use annals::time::ValidTime;

pub const ENTITIES: [&str; 4] = ["e-a", "e-b", "e-c", "e-d"];
/// Entities a crowded event names besides one of `ENTITIES`: more than
/// the index pairs one by one (`records::MAX_PAIRED`).
const CROWD: [&str; 18] = [
    "x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h", "x-i", "x-j", "x-k", "x-l", "x-m",
    "x-n", "x-o", "x-p", "x-q", "x-r",
];
/// Labels filtered on: one the index keeps beside each key (a fact), one
/// it does not.
pub const FILTER_LABELS: [&str; 2] = ["cameo_root", "code"];
/// Their values.
pub const LABEL_CODES: [&str; 2] = ["04", "19"];
/// Labels summed: a fact, and one that is not.
pub const VALUE_LABELS: [&str; 2] = ["goldstein", "score"];
/// Their values: numbers, one that is not, and one too long to keep as a
/// fact.
const SCORES: [&str; 6] = [
    "1.5",
    "-2",
    "0",
    "7.25",
    "n/a",
    "2.0000000000000000000000000000000000000000000000000000000000000000000",
];

/// SplitMix64: a tiny deterministic generator driven by proptest's seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A valid time in 1990–1994 at year, month or day precision.
    /// One or two participants (a dyad), as coded event data has them.
    fn participants(&mut self) -> Vec<proto::Participant> {
        let subject = self.pick(&ENTITIES);
        let mut participants = vec![proto::Participant {
            entity: subject.into(),
            role: "subject".into(),
        }];
        let target = self.pick(&ENTITIES);
        if target != subject && self.below(2) == 0 {
            participants.push(proto::Participant {
                entity: target.into(),
                role: "target".into(),
            });
        }
        if self.below(12) == 0 {
            participants.extend(CROWD.iter().map(|entity| proto::Participant {
                entity: entity.to_string(),
                role: "witness".into(),
            }));
        }
        participants
    }

    /// Labels as coded rows carry them: a code, and a score that is
    /// sometimes missing and sometimes not a number.
    fn labels(&mut self) -> std::collections::BTreeMap<String, String> {
        let mut labels = std::collections::BTreeMap::new();
        for key in FILTER_LABELS {
            if self.below(4) != 0 {
                labels.insert(key.to_string(), self.pick(&LABEL_CODES).to_string());
            }
        }
        for key in VALUE_LABELS {
            if self.below(4) != 0 {
                labels.insert(key.to_string(), self.pick(&SCORES).to_string());
            }
        }
        labels
    }

    pub fn time(&mut self) -> String {
        let year = 1990 + self.below(5);
        let month = 1 + self.below(12);
        let day = 1 + self.below(28);
        match self.below(3) {
            0 => format!("{year}"),
            1 => format!("{year}-{month:02}"),
            _ => format!("{year}-{month:02}-{day:02}"),
        }
    }

    fn effect(&mut self) -> proto::Effect {
        use proto::effect::Change;
        let a = self.pick(&ENTITIES);
        let mut b = self.pick(&ENTITIES);
        while b == a {
            b = self.pick(&ENTITIES);
        }
        let kind = self.pick(&["ally", "trade"]).to_string();
        let directed = self.below(4) == 0;
        let change = match self.below(3) {
            0 => Change::Begin(proto::BeginRelation {
                a: a.into(),
                b: b.into(),
                kind,
                directed,
            }),
            1 => Change::End(proto::EndRelation {
                a: a.into(),
                b: b.into(),
                kind,
                directed,
            }),
            _ => Change::Set(proto::SetAttribute {
                entity: a.into(),
                key: self.pick(&["leader", "status"]).into(),
                value: self.pick(&["x", "y", ""]).into(),
            }),
        };
        proto::Effect {
            at: if self.below(3) == 0 {
                self.time()
            } else {
                String::new()
            },
            change: Some(change),
        }
    }
}

/// A random history: a declaration batch, then batches of 1–4 events,
/// some of them corrections or retractions of earlier events.
pub fn history(rng: &mut Rng, events: usize) -> Vec<Vec<proto::Event>> {
    let everyone: Vec<&str> = ENTITIES.iter().chain(&CROWD).copied().collect();
    let declarations = common::declarations("declarations", &everyone);
    let mut batches = vec![vec![declarations]];
    let mut correctable: Vec<String> = Vec::new();
    let mut made = 0;
    while made < events {
        let size = 1 + rng.below(4) as usize;
        let mut batch = Vec::new();
        for _ in 0..size {
            // Ids of three shapes: the cache keeps lowercase UUIDs in 16
            // bytes and every other id as written.
            let id = match rng.below(3) {
                0 => format!("ev-{made}"),
                shape => {
                    let uuid = format!(
                        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                        rng.next() as u32,
                        rng.next() as u16,
                        rng.next() & 0xfff,
                        rng.next() & 0xfff,
                        rng.next() & 0xffff_ffff_ffff
                    );
                    if shape == 1 {
                        uuid
                    } else {
                        uuid.to_uppercase()
                    }
                }
            };
            made += 1;
            let start = rng.time();
            let end = if rng.below(4) == 0 {
                let later = rng.time();
                let (first, second) = (
                    ValidTime::parse(&start).unwrap(),
                    ValidTime::parse(&later).unwrap(),
                );
                (second.earliest() >= first.earliest() && second.latest() >= first.latest())
                    .then_some(later)
            } else {
                None
            };
            let mut corrects = String::new();
            if !correctable.is_empty() && rng.below(6) == 0 {
                let position = rng.below(correctable.len() as u64) as usize;
                corrects = correctable.remove(position);
            }
            let effects = if !corrects.is_empty() && rng.below(3) == 0 {
                Vec::new() // a retraction
            } else {
                (0..1 + rng.below(3)).map(|_| rng.effect()).collect()
            };
            batch.push(proto::Event {
                id: id.clone(),
                kind: rng.pick(&["meeting", "treaty"]).into(),
                occurred: Some(proto::TimeSpan {
                    start,
                    end: end.unwrap_or_default(),
                }),
                participants: rng.participants(),
                effects,
                corrects,
                labels: rng.labels(),
                ..Default::default()
            });
            correctable.push(id);
        }
        batches.push(batch);
    }
    batches
}
