//! A GDELT-shaped event export for the trends benchmark (`trends.rs`): N rows
//! of GDELT 2.0's 61 tab-separated columns, deterministic for a seed, drawn
//! from `gdelt_tables.rs` (no real data). Ten years of news, 2015-01-01 to
//! 2024-12-31, more of it in the early years and on weekdays, with news
//! days; rows in the order GDELT adds them (`DATEADDED`), a few dated days
//! to a year before that, as GDELT's resolved dates are. Countries follow a
//! Zipf-like popularity and a few dyads (USA–China, USA–Russia, …) get
//! far more than their share, so one dyad is the busiest by a margin.
//!
//! Besides the file, the generator keeps the truth about the busiest dyad
//! (its rows' day, id, root and Goldstein score), which the benchmark's gate
//! compares with annals's answers.

use crate::gdelt_places::{Place, Sources};
use crate::gdelt_tables::{CODES, COUNTRIES, HOT_DYADS, ROOT_WEIGHTS, TYPES};
use crate::workload::SplitMix64;
use crate::Res;
use chrono::{Datelike, NaiveDate, Weekday};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// The generator's seed (the file depends on N and this only).
pub const SEED: u64 = 0x6DE1_7000_2015_2024;
/// Days from 2015-01-01 to 2024-12-31.
pub const DAYS: u32 = 3653;
/// The first GLOBALEVENTID (GDELT 2.0's ids start near here).
const FIRST_ID: u64 = 410_500_000;

/// The first day of the data.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2015, 1, 1).expect("a valid date")
}

/// One row of the busiest dyad, as the gate needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DyadRow {
    /// SQLDATE, as days since 2015-01-01.
    pub day: u32,
    pub id: u64,
    /// CAMEO root, 1–20.
    pub root: u8,
    /// GoldsteinScale × 10.
    pub goldstein_tenths: i32,
}

/// Two countries: codes as the file writes them, ids as annals names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dyad {
    pub codes: [&'static str; 2],
    pub ids: [String; 2],
    pub rows: u64,
}

/// What was written.
pub struct Generated {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub seconds: f64,
    /// The ten busiest dyads of two different countries, busiest first.
    pub top: Vec<Dyad>,
    /// The busiest dyad's rows, by (day, id).
    pub truth: Vec<DyadRow>,
}

/// The canonical annals id of a country code of the tables.
fn annals_id(code: &str) -> Res<String> {
    match annals::import::countries::by_code(code) {
        Some(country) if country.code == code => Ok(country.id.clone()),
        _ => Err(format!("{code} is not a primary code of annals's country table").into()),
    }
}

/// Cumulative weights, for `pick`.
fn cumulative(weights: impl IntoIterator<Item = u64>) -> Vec<u64> {
    weights
        .into_iter()
        .scan(0, |total, weight| {
            *total += weight;
            Some(*total)
        })
        .collect()
}

fn pick(rng: &mut SplitMix64, cdf: &[u64]) -> usize {
    let drawn = rng.below(*cdf.last().expect("weights"));
    cdf.partition_point(|&total| total <= drawn)
}

/// One side of a row: the 10 actor columns.
#[derive(Default)]
struct Actor {
    code: String,
    name: String,
    country: Option<usize>,
    columns: [&'static str; 7],
}

struct Rows {
    rng: SplitMix64,
    countries: Vec<u64>,
    hot: Vec<u64>,
    types: Vec<u64>,
    roots: Vec<u64>,
    codes: Vec<Vec<u64>>,
    next_id: u64,
    sources: Sources,
}

impl Rows {
    fn new() -> Rows {
        // Zipf-like: the k-th country weighs 1/k^1.05.
        let countries =
            cumulative((1..=COUNTRIES.len()).map(|rank| (1e9 / (rank as f64).powf(1.05)) as u64));
        let types =
            cumulative((1..=TYPES.len()).map(|rank| (1e6 / (rank as f64).powf(0.8)) as u64));
        let codes = CODES
            .iter()
            .map(|codes| {
                cumulative(codes.iter().map(|(code, _)| match code.len() {
                    3 if code.ends_with('0') => 3,
                    3 => 2,
                    _ => 1,
                }))
            })
            .collect();
        Rows {
            rng: SplitMix64::new(SEED),
            countries,
            hot: cumulative(HOT_DYADS.iter().map(|&(_, _, weight)| u64::from(weight))),
            types,
            roots: cumulative(ROOT_WEIGHTS.iter().map(|&weight| u64::from(weight))),
            codes,
            next_id: FIRST_ID,
            sources: Sources::default(),
        }
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.rng.below(1000) < per_thousand
    }

    fn country(&mut self) -> usize {
        pick(&mut self.rng, &self.countries)
    }

    /// The countries of the two sides, when they have one.
    fn countries(&mut self, first: bool, second: bool) -> (Option<usize>, Option<usize>) {
        match (first, second) {
            (true, true) => {
                let drawn = self.rng.below(100);
                if drawn < 22 {
                    let (a, b, _) = HOT_DYADS[pick(&mut self.rng, &self.hot)];
                    let index = |code| COUNTRIES.iter().position(|c| c.code == code);
                    let (a, b) = (index(a), index(b));
                    if self.rng.below(2) == 0 {
                        (a, b)
                    } else {
                        (b, a)
                    }
                } else if drawn < 50 {
                    let domestic = self.country();
                    (Some(domestic), Some(domestic))
                } else {
                    (Some(self.country()), Some(self.country()))
                }
            }
            (true, false) => (Some(self.country()), None),
            (false, true) => (None, Some(self.country())),
            (false, false) => (None, None),
        }
    }

    fn actor_type(&mut self) -> (&'static str, &'static str) {
        let (code, names) = TYPES[pick(&mut self.rng, &self.types)];
        (code, names[self.rng.below(names.len() as u64) as usize])
    }

    /// An actor of `country` (or of no country: a bare type such as `GOV`).
    fn actor(&mut self, country: Option<usize>) -> Actor {
        let mut actor = Actor {
            country,
            ..Actor::default()
        };
        let (type1, type1_name) = self.actor_type();
        let drawn = self.rng.below(100);
        let types = match country {
            Some(_) if drawn < 50 => 0,
            _ if drawn < 90 => 1,
            _ => 2,
        };
        let type2 = (types == 2)
            .then(|| self.actor_type().0)
            .filter(|&t| t != type1);
        let prefix = country.map_or("", |index| COUNTRIES[index].code);
        actor.code = [
            prefix,
            if types > 0 { type1 } else { "" },
            type2.unwrap_or(""),
        ]
        .concat();
        actor.name = match country {
            Some(index) if types == 0 || self.rng.below(2) == 0 => {
                COUNTRIES[index].name.to_string()
            }
            _ => type1_name.to_string(),
        };
        // Actor{1,2}CountryCode, KnownGroup, Ethnic, Religion1, Religion2,
        // Type1, Type2 (Type3 stays blank).
        actor.columns[0] = prefix;
        if self.chance(15) {
            actor.columns[1] = ["UNO", "EEC", "WTO", "IMF"][self.rng.below(4) as usize];
        }
        if self.chance(5) {
            actor.columns[2] = ["kur", "pas", "bal", "tam"][self.rng.below(4) as usize];
        }
        if self.chance(30) {
            actor.columns[3] = ["MOS", "CHR", "JEW", "BUD", "HIN"][self.rng.below(5) as usize];
            if self.chance(300) {
                actor.columns[4] = ["SUN", "SHI", "CTH"][self.rng.below(3) as usize];
            }
        }
        if types > 0 {
            actor.columns[5] = type1;
        }
        actor.columns[6] = type2.unwrap_or("");
        actor
    }

    /// An actor's place: mostly where its country is, now and then nowhere.
    fn actor_place(&mut self, actor: Option<&Actor>) -> Place {
        match actor {
            None => Place::none(),
            Some(_) if self.chance(80) => Place::none(),
            Some(actor) => {
                let index = actor.country.unwrap_or_else(|| self.country());
                Place::of(&mut self.rng, index)
            }
        }
    }

    /// One row, added to GDELT at `seen` (a day) and `slot` (of 96 quarter
    /// hours), into `line` (without the newline).
    fn row(&mut self, seen: u32, slot: u32, line: &mut String) -> (DyadRow, [Option<usize>; 2]) {
        let id = self.next_id;
        self.next_id += if self.chance(30) {
            2 + self.rng.below(4)
        } else {
            1
        };
        let lag = match self.rng.below(1000) {
            0..958 => 0,
            958..966 => 1,
            966..972 => 7,
            972..978 => 30,
            _ => 365,
        };
        let day = if lag <= seen { seen - lag } else { seen };
        let first = first_day();
        let date = first + chrono::Days::new(u64::from(day));
        let seen_date = first + chrono::Days::new(u64::from(seen));

        let first_blank = self.chance(80);
        let second_blank = !first_blank && self.chance(272);
        let has_country = [
            !first_blank && self.chance(660),
            !second_blank && self.chance(660),
        ];
        let (c1, c2) = self.countries(has_country[0], has_country[1]);
        let actor1 = (!first_blank).then(|| self.actor(c1));
        let actor2 = (!second_blank).then(|| self.actor(c2));

        let root = pick(&mut self.rng, &self.roots);
        let (code, goldstein) = CODES[root][pick(&mut self.rng, &self.codes[root])];
        let quad = match root + 1 {
            1..=5 => 1,
            6..=9 => 2,
            10..=14 => 3,
            _ => 4,
        };
        let mentions =
            [1, 2, 2, 2, 3, 4, 4, 5, 6, 6, 8, 10, 10, 12, 15, 20][self.rng.below(16) as usize];
        let sources = match self.rng.below(100) {
            0..85 => 1,
            85..95 => 2,
            _ => 3,
        };
        let articles = if self.chance(920) {
            mentions
        } else {
            (mentions - 1).max(1)
        };
        // AvgTone: roughly normal around -1.2, clamped to [-10, 10].
        let normal = ((0..4)
            .map(|_| self.rng.below(1_000_001) as f64 / 1e6)
            .sum::<f64>()
            - 2.0)
            * 3f64.sqrt();
        let tone = (-1.2 + 3.2 * normal).clamp(-10.0, 10.0);
        let decimals = 2 + self.rng.below(9) as usize;
        let mut tone = format!("{tone:.decimals$}");
        if tone.trim_start_matches(['-', '0', '.']).is_empty() {
            tone = tone.trim_start_matches('-').to_string();
        }

        let place1 = self.actor_place(actor1.as_ref());
        let place2 = self.actor_place(actor2.as_ref());
        let action = match self.rng.below(100) {
            0..60 if !place1.is_none() => Place(place1.0.clone()),
            0..90 if !place2.is_none() => Place(place2.0.clone()),
            _ => {
                let index = c1.or(c2).unwrap_or_else(|| self.country());
                Place::of(&mut self.rng, index)
            }
        };
        let source = self.sources.next(&mut self.rng, seen_date);

        line.clear();
        let fraction =
            f64::from(date.year()) + f64::from((date.month() - 1) * 30 + date.day()) / 365.0;
        let _ = write!(
            line,
            "{id}\t{}\t{}\t{}\t{fraction:.4}",
            date.format("%Y%m%d"),
            date.format("%Y%m"),
            date.year()
        );
        for actor in [&actor1, &actor2] {
            match actor {
                Some(actor) => {
                    let _ = write!(line, "\t{}\t{}", actor.code, actor.name);
                    for column in &actor.columns {
                        let _ = write!(line, "\t{column}");
                    }
                    line.push('\t'); // Type3Code
                }
                None => line.push_str(&"\t".repeat(10)),
            }
        }
        let is_root = u8::from(self.chance(620));
        let _ = write!(
            line,
            "\t{is_root}\t{code}\t{}\t{}\t{quad}\t{goldstein:.1}\t{mentions}\t{sources}\t{articles}\t{tone}",
            &code[..3],
            &code[..2]
        );
        for place in [&place1, &place2, &action] {
            for column in &place.0 {
                let _ = write!(line, "\t{column}");
            }
        }
        let _ = write!(
            line,
            "\t{}{:02}{:02}00\t{source}",
            seen_date.format("%Y%m%d"),
            slot / 4,
            (slot % 4) * 15
        );
        let facts = DyadRow {
            day,
            id,
            root: root as u8 + 1,
            goldstein_tenths: (goldstein * 10.0).round() as i32,
        };
        (facts, [c1, c2])
    }
}

/// How many rows GDELT adds on each day: more in the early years, less at
/// weekends, two to three times as many on news days (~3 % of days).
fn rows_per_day(n: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(SEED ^ 0xDA75);
    let weights: Vec<u64> = (0..DAYS)
        .map(|day| {
            let date = first_day() + chrono::Days::new(u64::from(day));
            let year = 1.3 - 0.05 * f64::from(date.year() - 2015);
            let weekday = match date.weekday() {
                Weekday::Sat => 0.75,
                Weekday::Sun => 0.7,
                _ => 1.0,
            };
            let news = if rng.below(100) < 3 {
                2.0 + rng.below(100) as f64 / 100.0
            } else {
                1.0
            };
            (year * weekday * news * 1e6) as u64
        })
        .collect();
    let total: u64 = weights.iter().sum();
    let mut before = 0u128;
    let mut sum = 0u64;
    weights
        .iter()
        .map(|&weight| {
            sum += weight;
            let through = u128::from(n) * u128::from(sum) / u128::from(total);
            let count = (through - before) as u64;
            before = through;
            count
        })
        .collect()
}

/// Writes the N-row export to `path`.
pub fn write(n: u64, path: &Path) -> Res<Generated> {
    for (code, _) in TYPES {
        if annals::import::countries::by_code(code).is_some() {
            return Err(format!("actor type {code} is also a country code").into());
        }
    }
    let ids: Vec<String> = COUNTRIES
        .iter()
        .map(|country| annals_id(country.code))
        .collect::<Res<_>>()?;
    let started = std::time::Instant::now();
    let file = std::fs::File::create(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut rows = Rows::new();
    let mut line = String::with_capacity(1024);
    let mut bytes = 0u64;
    // Rows naming two different countries: (countries, facts).
    let mut dyad_rows: Vec<((u8, u8), DyadRow)> = Vec::new();
    let mut dyads: HashMap<(u8, u8), u64> = HashMap::new();
    for (seen, &count) in rows_per_day(n).iter().enumerate() {
        for k in 0..count {
            let slot = (k * 96 / count) as u32;
            let (facts, countries) = rows.row(seen as u32, slot, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
            hasher.update(line.as_bytes());
            bytes += line.len() as u64;
            if let [Some(a), Some(b)] = countries {
                if a != b {
                    let pair = (a.min(b) as u8, a.max(b) as u8);
                    *dyads.entry(pair).or_default() += 1;
                    dyad_rows.push((pair, facts));
                }
            }
        }
    }
    out.flush()?;
    let mut ranked: Vec<((u8, u8), u64)> = dyads.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<Dyad> = ranked
        .iter()
        .take(10)
        .map(|&((a, b), rows)| Dyad {
            codes: [COUNTRIES[a as usize].code, COUNTRIES[b as usize].code],
            ids: [ids[a as usize].clone(), ids[b as usize].clone()],
            rows,
        })
        .collect();
    let busiest = ranked.first().map(|&(pair, _)| pair);
    let mut truth: Vec<DyadRow> = dyad_rows
        .into_iter()
        .filter(|(pair, _)| Some(*pair) == busiest)
        .map(|(_, facts)| facts)
        .collect();
    truth.sort_by_key(|row| (row.day, row.id));
    let sha256 = hasher
        .finalize()
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
    Ok(Generated {
        rows: n,
        bytes,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
        top,
        truth,
    })
}

/// `annals-bench gdelt-gen`: writes the file and prints what it holds.
pub fn command(n: u64, out: &Path) -> Res<()> {
    let generated = write(n, out)?;
    let summary = serde_json::json!({
        "file": out.display().to_string(),
        "rows": generated.rows,
        "bytes": generated.bytes,
        "sha256": generated.sha256,
        "seconds": crate::measure::round3(generated.seconds),
        "busiest_dyads": generated.top.iter().map(|dyad| serde_json::json!({
            "codes": dyad.codes, "ids": dyad.ids, "rows": dyad.rows,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_61_columns_and_consistent_codes() {
        let mut rows = Rows::new();
        let mut line = String::new();
        for seen in 0..2000 {
            rows.row(seen % DAYS, seen % 96, &mut line);
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 61, "{line}");
            assert!(fields[5].is_empty() as u8 + fields[15].is_empty() as u8 <= 1);
            assert!(fields[26].starts_with(fields[27]) && fields[27].starts_with(fields[28]));
            assert!(fields[59] >= fields[1], "added before it happened: {line}");
            assert_eq!(&fields[1][..6], fields[2]);
        }
    }

    #[test]
    fn days_share_out_exactly_n_rows() {
        assert_eq!(rows_per_day(12_345).iter().sum::<u64>(), 12_345);
        assert_eq!(crate::gdelt_places::coordinate(46.0), "46");
        assert_eq!(crate::gdelt_places::coordinate(-30.30981), "-30.3098");
        assert_eq!(crate::gdelt_places::title("NORTH KOREA"), "North Korea");
    }
}
