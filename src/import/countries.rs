//! The built-in country table: every ISO 3166-1 country and territory, and
//! Kosovo, under one canonical kebab-case entity id. Besides the ISO names it
//! knows the names ICEWS uses ("Russian Federation", "Occupied Palestinian
//! Territory") and GDELT's CAMEO codes where they differ from ISO (`ROM`, `TMP`).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The table: `id`, `code`, `name`, `aliases`, `codes`, tab-separated, lists
/// `|`-separated, `#` starts a comment line. See the file's header.
const TABLE: &str = include_str!("../../data/countries.tsv");

/// One country of the built-in table.
#[derive(Debug, PartialEq, Eq)]
pub struct Country {
    /// Canonical kebab-case entity id (`north-korea`).
    pub id: String,
    /// Short common name (`North Korea`).
    pub name: String,
    /// ISO 3166-1 alpha-3 (`PRK`); `XKX` for Kosovo.
    pub code: String,
    /// Other codes that name it, e.g. CAMEO's `ROM` for Romania.
    pub codes: Vec<String>,
    /// Other names: the ISO official and common names, older names.
    pub aliases: Vec<String>,
}

/// The parsed table and its two lookups, built on first use.
#[derive(Default)]
struct Index {
    countries: Vec<Country>,
    /// Upper-case code → position in `countries`.
    codes: HashMap<String, usize>,
    /// Lower-case id, name or alias → position in `countries`.
    names: HashMap<String, usize>,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| Index::parse(TABLE));

impl Country {
    /// `code`, then `codes`.
    fn all_codes(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.code).chain(&self.codes)
    }

    /// `id`, `name`, then `aliases`.
    fn all_names(&self) -> impl Iterator<Item = &String> {
        [&self.id, &self.name].into_iter().chain(&self.aliases)
    }
}

impl Index {
    /// Parses the embedded table. It is part of the build, so a malformed line
    /// or a key that names two countries is a bug here, not bad input: panic.
    fn parse(table: &str) -> Index {
        let mut index = Index::default();
        for (number, line) in table.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or("");
            let list = |i: usize| {
                field(i)
                    .split('|')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            };
            let at = format!("data/countries.tsv line {}", number + 1);
            assert!(
                (3..=5).contains(&fields.len()),
                "{at}: expected 3 to 5 fields: id, code, name, aliases, codes"
            );
            let country = Country {
                id: field(0).to_string(),
                code: field(1).to_string(),
                name: field(2).to_string(),
                aliases: list(3).collect(),
                codes: list(4).collect(),
            };
            let position = index.countries.len();
            for code in country.all_codes() {
                let held = index
                    .codes
                    .entry(code.to_ascii_uppercase())
                    .or_insert(position);
                assert_eq!(
                    *held, position,
                    "{at}: code {code} names another country too"
                );
            }
            for name in country.all_names() {
                let held = index.names.entry(name.to_lowercase()).or_insert(position);
                assert_eq!(*held, position, "{at}: {name:?} names another country too");
            }
            index.countries.push(country);
        }
        index
    }
}

/// Every country of the built-in table.
pub fn all() -> &'static [Country] {
    &INDEX.countries
}

/// The country a 3-letter ISO or CAMEO code names (case-insensitive).
pub fn by_code(code: &str) -> Option<&'static Country> {
    let index = &*INDEX;
    let position = index.codes.get(&code.trim().to_ascii_uppercase())?;
    index.countries.get(*position)
}

/// The country a name, alias or id names (case-insensitive, surrounding
/// whitespace ignored).
pub fn by_name(name: &str) -> Option<&'static Country> {
    let index = &*INDEX;
    let position = index.names.get(&name.trim().to_lowercase())?;
    index.countries.get(*position)
}

/// `by_code`, else `by_name`.
pub fn find(text: &str) -> Option<&'static Country> {
    by_code(text).or_else(|| by_name(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn id_of(country: Option<&Country>) -> Option<&str> {
        country.map(|country| country.id.as_str())
    }

    #[test]
    fn the_countries_the_data_set_declares_keep_their_ids() {
        let fixed = [
            ("north-korea", "North Korea", "PRK"),
            ("south-korea", "South Korea", "KOR"),
            ("china", "China", "CHN"),
            ("russia", "Russia", "RUS"),
            ("united-states", "United States", "USA"),
            ("japan", "Japan", "JPN"),
            ("india", "India", "IND"),
        ];
        for (id, name, code) in fixed {
            let country = by_code(code).unwrap_or_else(|| panic!("{code} is not in the table"));
            assert_eq!((country.id.as_str(), country.name.as_str()), (id, name));
            assert_eq!(by_name(id), Some(country));
            assert_eq!(by_name(name), Some(country));
        }
    }

    #[test]
    fn codes_names_and_aliases_resolve_whatever_their_case() {
        assert_eq!(id_of(by_code("PRK")), Some("north-korea"));
        assert_eq!(id_of(by_code("prk")), Some("north-korea"));
        assert_eq!(id_of(by_code("ROM")), Some("romania"));
        assert_eq!(id_of(by_code("TMP")), Some("east-timor"));
        assert_eq!(id_of(by_name("Russian Federation")), Some("russia"));
        assert_eq!(id_of(by_name("north korea")), Some("north-korea"));
        assert_eq!(id_of(by_name("  Viet Nam ")), Some("vietnam"));
        assert_eq!(id_of(by_name("CÔTE D'IVOIRE")), Some("ivory-coast"));
        assert_eq!(id_of(find("GBR")), Some("united-kingdom"));
        assert_eq!(id_of(find("Congo")), Some("republic-of-the-congo"));
        assert_eq!(by_code("AFR"), None);
        assert_eq!(by_name(""), None);
        assert!(all().len() >= 249, "only {} countries", all().len());
    }

    #[test]
    fn ids_are_kebab_case_and_no_key_names_two_countries() {
        let kebab = |part: &str| {
            !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
        };
        // The built-in data set declares these for entities of its own.
        let reserved = ["us", "rok", "dprk", "prc", "unsc", "cpv", "unc", "kcna"];
        let (mut ids, mut owner) = (std::collections::HashSet::new(), HashMap::new());
        for country in all() {
            let id = country.id.as_str();
            assert!(
                id.len() <= 128 && id.split('-').all(kebab),
                "{id:?} is not kebab-case"
            );
            assert!(ids.insert(id), "{id} appears twice");
            for code in country.all_codes() {
                let letters = code.bytes().all(|b| b.is_ascii_uppercase());
                assert!(code.len() == 3 && letters, "{id}: code {code:?}");
            }
            for key in country.all_codes().chain(country.all_names()) {
                let key = key.to_lowercase();
                let other = *owner.entry(key.clone()).or_insert(id);
                assert_eq!(other, id, "{key:?} names {other} and {id}");
            }
            for alias in &country.aliases {
                let alias = alias.to_lowercase();
                assert!(!reserved.contains(&alias.as_str()), "{id}: alias {alias:?}");
            }
        }
    }

    /// `<ANNALS_SHARED_DIR, by default CARGO_MANIFEST_DIR/../shared>/realdata`.
    fn realdata() -> Option<PathBuf> {
        let default = || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
        let shared = std::env::var_os("ANNALS_SHARED_DIR").map_or_else(default, PathBuf::from);
        let dir = shared.join("realdata");
        if dir.is_dir() {
            return Some(dir);
        }
        let required = std::env::var("ANNALS_REQUIRE_SHARED").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "ANNALS_REQUIRE_SHARED=1: {} is missing",
            dir.display()
        );
        println!("skipped: ../shared/realdata not found");
        None
    }

    /// The non-empty cells of the given 0-based columns of a tab-separated file.
    fn cells(path: PathBuf, skip_lines: usize, columns: &[usize]) -> Vec<String> {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut cells = Vec::new();
        for line in String::from_utf8_lossy(&bytes).lines().skip(skip_lines) {
            let row: Vec<&str> = line.split('\t').collect();
            let picked = columns
                .iter()
                .filter_map(|&i| row.get(i))
                .map(|cell| cell.trim());
            cells.extend(picked.filter(|cell| !cell.is_empty()).map(String::from));
        }
        cells
    }

    #[test]
    fn every_country_in_the_real_samples_resolves() {
        // CAMEO's regions (GDELT's CAMEO.country.txt): not countries, not in the table.
        const REGIONS: &[&str] = &[
            "AFR", "ASA", "BAG", "BLK", "CAS", "CAU", "CEU", "CFR", "CRB", "EAF", "EEU", "EIN",
            "EUR", "GZS", "LAM", "MDT", "MEA", "NAF", "NMR", "PGS", "SAF", "SAM", "SAS", "SCN",
            "SEA", "WAF", "WSB", "WST",
        ];
        let Some(dir) = realdata() else { return };
        let mut missing = Vec::new();
        // ICEWS: Source Country, Target Country, Country; `NA` where there is none.
        for name in cells(dir.join("icews_events.2018.sample.tab"), 1, &[4, 10, 17]) {
            if name != "NA" && by_name(&name).is_none() {
                missing.push(name);
            }
        }
        // GDELT: Actor1CountryCode, Actor2CountryCode.
        for code in cells(dir.join("gdelt2_20150218230000.export.CSV"), 0, &[7, 17]) {
            if code.len() == 3 && !REGIONS.contains(&code.as_str()) && by_code(&code).is_none() {
                missing.push(code);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        assert!(missing.is_empty(), "these do not resolve: {missing:?}");
        assert!(REGIONS.iter().all(|region| find(region).is_none()));
    }
}
