//! The synthetic workload `tl-synth-v1` (bench/WORKLOAD.md): a port of the
//! reference generator `gen_workload.py`, draw for draw, so that the CSV it
//! writes is byte-identical, and the mapping of its events onto annals events.
//!
//! The stream does not depend on N: the N-event log is the first N events of
//! any longer log, so a `Generator` simply keeps going (the append phase
//! continues the same stream past N).

use annals::proto;
use std::collections::BTreeMap;
use std::io::{self, Write};

pub const SEED: u64 = 42;
/// Entities `1..=ENTITIES`; ids up to `COUNTRIES` are countries.
pub const ENTITIES: u16 = 1000;
pub const COUNTRIES: u16 = 200;
/// Valid days: 1900-01-01 + 0..VALID_DAYS (to 2025-12-31).
pub const VALID_DAYS: u32 = 46021;

pub const OPS: [&str; 4] = ["start", "end", "set", "occur"];
const OP_WEIGHTS: [u64; 4] = [35, 20, 30, 15];
pub const REL_KINDS: [&str; 8] = [
    "diplomatic",
    "trade",
    "ally",
    "rival",
    "sanctions",
    "aid",
    "military_cooperation",
    "border_dispute",
];
const REL_WEIGHTS: [u64; 8] = [20, 20, 10, 10, 15, 10, 10, 5];
pub const ATTR_KEYS: [&str; 8] = [
    "leader",
    "government",
    "capital",
    "bloc",
    "status",
    "office",
    "party",
    "rating",
];
pub const POINT_KINDS: [&str; 6] = ["summit", "visit", "talks", "incident", "statement", "vote"];
pub const LANGS: [&str; 4] = ["en", "fr", "ru", "zh"];
const WORDS: [&str; 16] = [
    "treaty", "summit", "border", "talks", "envoy", "accord", "trade", "tariff", "troops",
    "embassy", "sanction", "pact", "crisis", "vote", "aid", "minister",
];

/// The CSV header of `events.csv`.
pub const EVENTS_HEADER: &str =
    "seq,event_id,recorded_at,valid_from,valid_to,kind,subject,object,rel_kind,op,attr_key,attr_value,payload";

/// SplitMix64, as WORKLOAD.md specifies it.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, m)`: the high half of the 128-bit product.
    pub fn below(&mut self, m: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(m)) >> 64) as u64
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// What a workload event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Start,
    End,
    Set,
    Occur,
}

/// One workload event, compactly: strings are rendered on demand.
#[derive(Clone, Debug)]
pub struct WorkloadEvent {
    /// Workload seq, 1..; annals seq is this + 1 (seq 1 is the declaration).
    pub seq: u64,
    /// The two draws of the UUID, already masked.
    pub id_hi: u64,
    pub id_lo: u64,
    /// Milliseconds since 2024-01-01T00:00:00Z.
    pub rec_ms: u64,
    pub op: Op,
    pub subject: u16,
    /// 0 when there is none (`set`).
    pub object: u16,
    /// Days since 1900-01-01.
    pub valid_from: u32,
    pub valid_to: Option<u32>,
    /// Index into `REL_KINDS` (start/end), `ATTR_KEYS` (set) or `POINT_KINDS` (occur).
    pub detail: u8,
    /// The attribute value's number (set).
    pub attr_number: u16,
    pub src: u16,
    pub conf: u8,
    pub lang: u8,
    pub reference: u64,
    pub w1: u64,
    pub w2: u64,
}

/// The generator: one PRNG stream, events in append order.
pub struct Generator {
    rng: SplitMix64,
    entity_cum: Vec<u64>,
    entity_total: u64,
    rec_ms: u64,
    seq: u64,
}

fn pick(rng: &mut SplitMix64, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let r = rng.below(total);
    let mut acc = 0;
    for (index, weight) in weights.iter().enumerate() {
        acc += weight;
        if acc > r {
            return index;
        }
    }
    unreachable!("r < total")
}

impl Default for Generator {
    fn default() -> Self {
        Generator::new(SEED)
    }
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let mut entity_cum = Vec::with_capacity(ENTITIES as usize);
        let mut acc = 0u64;
        for i in 1..=u64::from(ENTITIES) {
            acc += (1u64 << 24) / (i + 9);
            entity_cum.push(acc);
        }
        Generator {
            rng: SplitMix64::new(seed),
            entity_total: acc,
            entity_cum,
            rec_ms: 0,
            seq: 0,
        }
    }

    fn pick_entity(&mut self) -> u16 {
        let r = self.rng.below(self.entity_total);
        // bisect_right: the first index whose cumulative weight exceeds r.
        (self.entity_cum.partition_point(|&cum| cum <= r) + 1) as u16
    }

    fn pick_object(&mut self, subject: u16) -> u16 {
        loop {
            let object = self.pick_entity();
            if object != subject {
                return object;
            }
        }
    }

    pub fn next_event(&mut self) -> WorkloadEvent {
        self.seq += 1;
        self.rec_ms += 1 + self.rng.below(2000);
        let id_hi = (self.rng.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
        let id_lo = (self.rng.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        let op = [Op::Start, Op::End, Op::Set, Op::Occur][pick(&mut self.rng, &OP_WEIGHTS)];
        let subject = self.pick_entity();
        let valid_from = self.rng.below(u64::from(VALID_DAYS)) as u32;
        let mut event = WorkloadEvent {
            seq: self.seq,
            id_hi,
            id_lo,
            rec_ms: self.rec_ms,
            op,
            subject,
            object: 0,
            valid_from,
            valid_to: None,
            detail: 0,
            attr_number: 0,
            src: 0,
            conf: 0,
            lang: 0,
            reference: 0,
            w1: 0,
            w2: 0,
        };
        match op {
            Op::Start | Op::End => {
                event.object = self.pick_object(subject);
                event.detail = pick(&mut self.rng, &REL_WEIGHTS) as u8;
                if op == Op::Start && self.rng.below(100) < 20 {
                    event.valid_to = Some(valid_from + 1 + self.rng.below(3650) as u32);
                }
            }
            Op::Set => {
                event.detail = self.rng.below(8) as u8;
                event.attr_number = self.rng.below(1000) as u16;
            }
            Op::Occur => {
                event.object = self.pick_object(subject);
                event.detail = self.rng.below(6) as u8;
                if self.rng.below(100) < 30 {
                    event.valid_to = Some(valid_from + 1 + self.rng.below(5) as u32);
                }
            }
        }
        event.src = self.rng.below(1000) as u16;
        event.conf = self.rng.below(100) as u8;
        event.lang = self.rng.below(4) as u8;
        event.reference = self.rng.next_u64();
        event.w1 = self.rng.next_u64();
        event.w2 = self.rng.next_u64();
        event
    }

    /// The first `n` events.
    pub fn take(&mut self, n: u64) -> Vec<WorkloadEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

/// `country-001` or `person-0201`.
pub fn entity_name(id: u16) -> String {
    if id <= COUNTRIES {
        format!("country-{id:03}")
    } else {
        format!("person-{id:04}")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// 1900-01-01 is day -25567 of the Unix epoch.
const DAYS_1900: i64 = -25_567;
/// 2024-01-01 is day 19723.
const DAYS_2024: i64 = 19_723;

/// A valid day (days since 1900-01-01) as `YYYY-MM-DD`.
pub fn valid_date(day: u32) -> String {
    let (year, month, day) = civil_from_days(DAYS_1900 + i64::from(day));
    format!("{year:04}-{month:02}-{day:02}")
}

/// A `recorded_at` offset as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn recorded_text(rec_ms: u64) -> String {
    let (seconds, ms) = (rec_ms / 1000, rec_ms % 1000);
    let (days, seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(DAYS_2024 + days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

impl WorkloadEvent {
    pub fn event_id(&self) -> String {
        let h = format!("{:016x}{:016x}", self.id_hi, self.id_lo);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    pub fn op_name(&self) -> &'static str {
        match self.op {
            Op::Start => OPS[0],
            Op::End => OPS[1],
            Op::Set => OPS[2],
            Op::Occur => OPS[3],
        }
    }

    pub fn rel_kind(&self) -> Option<&'static str> {
        matches!(self.op, Op::Start | Op::End).then(|| REL_KINDS[self.detail as usize])
    }

    pub fn attr_key(&self) -> Option<&'static str> {
        (self.op == Op::Set).then(|| ATTR_KEYS[self.detail as usize])
    }

    pub fn attr_value(&self) -> Option<String> {
        self.attr_key()
            .map(|key| format!("{key}-{}", self.attr_number))
    }

    pub fn kind(&self) -> String {
        match self.op {
            Op::Start | Op::End => {
                format!("{}_{}", REL_KINDS[self.detail as usize], self.op_name())
            }
            Op::Set => format!("set_{}", ATTR_KEYS[self.detail as usize]),
            Op::Occur => POINT_KINDS[self.detail as usize].to_string(),
        }
    }

    pub fn source(&self) -> String {
        format!("src-{:03}", self.src)
    }

    pub fn reference_text(&self) -> String {
        format!("{:016x}", self.reference)
    }

    pub fn note(&self) -> String {
        let words = (0..16)
            .map(|k| WORDS[((self.w1 >> (4 * k)) & 15) as usize])
            .chain((0..4).map(|k| WORDS[((self.w2 >> (4 * k)) & 15) as usize]));
        words.collect::<Vec<_>>().join(" ")
    }

    pub fn payload(&self) -> String {
        format!(
            r#"{{"source":"src-{:03}","confidence":0.{:02},"lang":"{}","ref":"{:016x}","note":"{}"}}"#,
            self.src,
            self.conf,
            LANGS[self.lang as usize],
            self.reference,
            self.note()
        )
    }

    /// One line of `events.csv` (without the line end), as Python's `csv`
    /// writes it: only the payload needs quoting.
    pub fn csv_line(&self) -> String {
        let object = if self.object == 0 {
            String::new()
        } else {
            self.object.to_string()
        };
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            self.seq,
            self.event_id(),
            recorded_text(self.rec_ms),
            valid_date(self.valid_from),
            self.valid_to.map(valid_date).unwrap_or_default(),
            self.kind(),
            self.subject,
            object,
            self.rel_kind().unwrap_or(""),
            self.op_name(),
            self.attr_key().unwrap_or(""),
            self.attr_value().unwrap_or_default(),
            self.payload().replace('"', "\"\"")
        )
    }

    /// The annals event (WORKLOAD.md, "Mapping onto annals events").
    pub fn to_proto(&self) -> proto::Event {
        use proto::effect::Change;
        let subject = entity_name(self.subject);
        let object = (self.object != 0).then(|| entity_name(self.object));
        let mut participants = vec![proto::Participant {
            entity: subject.clone(),
            role: "subject".into(),
        }];
        if let Some(object) = &object {
            participants.push(proto::Participant {
                entity: object.clone(),
                role: "object".into(),
            });
        }
        let effect = |at: String, change: Change| proto::Effect {
            at,
            change: Some(change),
        };
        let mut effects = Vec::new();
        let mut occurred_end = String::new();
        match self.op {
            Op::Start => {
                let (a, b, kind) = (
                    subject.clone(),
                    object.clone().unwrap_or_default(),
                    self.rel_kind().unwrap_or_default().to_string(),
                );
                effects.push(effect(
                    String::new(),
                    Change::Begin(proto::BeginRelation {
                        a: a.clone(),
                        b: b.clone(),
                        kind: kind.clone(),
                        directed: false,
                    }),
                ));
                if let Some(valid_to) = self.valid_to {
                    effects.push(effect(
                        valid_date(valid_to),
                        Change::End(proto::EndRelation {
                            a,
                            b,
                            kind,
                            directed: false,
                        }),
                    ));
                }
            }
            Op::End => effects.push(effect(
                String::new(),
                Change::End(proto::EndRelation {
                    a: subject.clone(),
                    b: object.clone().unwrap_or_default(),
                    kind: self.rel_kind().unwrap_or_default().to_string(),
                    directed: false,
                }),
            )),
            Op::Set => effects.push(effect(
                String::new(),
                Change::Set(proto::SetAttribute {
                    entity: subject.clone(),
                    key: self.attr_key().unwrap_or_default().to_string(),
                    value: self.attr_value().unwrap_or_default(),
                }),
            )),
            Op::Occur => occurred_end = self.valid_to.map(valid_date).unwrap_or_default(),
        }
        let labels: BTreeMap<String, String> = [
            ("lang".to_string(), LANGS[self.lang as usize].to_string()),
            ("ref".to_string(), self.reference_text()),
        ]
        .into_iter()
        .collect();
        proto::Event {
            id: self.event_id(),
            kind: self.kind(),
            occurred: Some(proto::TimeSpan {
                start: valid_date(self.valid_from),
                end: occurred_end,
            }),
            summary: self.note(),
            participants,
            location: String::new(),
            effects,
            source: Some(proto::Source {
                document: self.source(),
                confidence: f64::from(self.conf) / 100.0,
                ..Default::default()
            }),
            corrects: String::new(),
            labels,
        }
    }
}

/// The id of the declaration event, seq 1.
pub const DECLARATION_ID: &str = "tl-entities";

/// Seq 1: declares every entity.
pub fn declaration_event() -> proto::Event {
    let effects = (1..=ENTITIES)
        .map(|id| {
            let name = entity_name(id);
            let entity_type = if id <= COUNTRIES {
                proto::EntityType::Country
            } else {
                proto::EntityType::Person
            };
            proto::Effect {
                at: String::new(),
                change: Some(proto::effect::Change::Declare(proto::Declare {
                    id: name.clone(),
                    name,
                    r#type: entity_type as i32,
                    aliases: Vec::new(),
                })),
            }
        })
        .collect();
    proto::Event {
        id: DECLARATION_ID.to_string(),
        kind: "declaration".to_string(),
        occurred: Some(proto::TimeSpan {
            start: "1900-01-01".to_string(),
            end: String::new(),
        }),
        summary: "Declares the entities of the tl-synth-v1 workload.".to_string(),
        effects,
        ..Default::default()
    }
}

/// Writes `entities.csv` and `events.csv` for the first `n` events, exactly
/// as `gen_workload.py --n N --out-dir DIR` does.
pub fn write_csv(n: u64, dir: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut entities = io::BufWriter::new(std::fs::File::create(dir.join("entities.csv"))?);
    writeln!(entities, "id,name,etype")?;
    for id in 1..=ENTITIES {
        let etype = if id <= COUNTRIES { "country" } else { "person" };
        writeln!(entities, "{id},{},{etype}", entity_name(id))?;
    }
    entities.flush()?;
    let mut events =
        io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("events.csv"))?);
    writeln!(events, "{EVENTS_HEADER}")?;
    let mut generator = Generator::default();
    for _ in 0..n {
        writeln!(events, "{}", generator.next_event().csv_line())?;
    }
    events.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(valid_date(0), "1900-01-01");
        assert_eq!(valid_date(VALID_DAYS - 1), "2025-12-31");
        assert_eq!(valid_date(59), "1900-03-01"); // 1900 is not a leap year
        assert_eq!(recorded_text(0), "2024-01-01T00:00:00.000Z");
        assert_eq!(
            recorded_text(86_400_000 + 3_723_004),
            "2024-01-02T01:02:03.004Z"
        );
    }
}
