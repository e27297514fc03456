//! The places and sources of the GDELT-shaped rows (`gdelt.rs`): the eight
//! geo columns of an actor or of the action (GDELT's geo types 1 country,
//! 2 US state, 3 US city, 4 world city, 5 world region, with FIPS 10-4
//! country codes, ADM1/ADM2 codes, coordinates and feature ids), and
//! SOURCEURL (a few events per story, now and then a citation in place of
//! a URL).

use crate::gdelt_tables::{Country, CITATIONS, COUNTRIES, SITES, SLUG_WORDS, US_PLACES};
use crate::workload::SplitMix64;
use chrono::NaiveDate;

/// `38.8951` → `"38.8951"`, `46.0` → `"46"`: GDELT's coordinates.
pub fn coordinate(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// `UNITED STATES` → `United States`.
pub fn title(name: &str) -> String {
    name.split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn jitter(rng: &mut SplitMix64, degrees: f64) -> f64 {
    (rng.below(20_001) as f64 / 10_000.0 - 1.0) * degrees
}

/// A place: the 8 geo columns (type 0 and blanks for none).
pub struct Place(pub [String; 8]);

impl Place {
    pub fn none() -> Place {
        Place(std::array::from_fn(|i| {
            if i == 0 {
                "0".to_string()
            } else {
                String::new()
            }
        }))
    }

    pub fn is_none(&self) -> bool {
        self.0[0] == "0"
    }

    /// A plausible place in the `index`-th country (GDELT's geo columns).
    pub fn of(rng: &mut SplitMix64, index: usize) -> Place {
        let country: &Country = &COUNTRIES[index];
        let drawn = rng.below(100);
        let geo_type = match (country.code, drawn) {
            ("USA", 0..20) => 1,
            ("USA", 20..50) => 2,
            ("USA", _) => 3,
            (_, 0..35) => 1,
            (_, 35..80) => 4,
            _ => 5,
        };
        let fips = country.fips;
        let adm1 = format!("{fips}{:02}", 1 + (index + drawn as usize) % 30);
        let columns: [String; 8] = match geo_type {
            1 => [
                "1".into(),
                title(country.name),
                fips.into(),
                fips.into(),
                String::new(),
                coordinate(country.lat.round()),
                coordinate(country.lon.round()),
                fips.into(),
            ],
            2 | 3 => {
                let state = US_PLACES[rng.below(US_PLACES.len() as u64) as usize];
                let (name, postal, lat, lon, city, city_lat, city_lon) = state;
                if geo_type == 2 {
                    [
                        "2".into(),
                        format!("{name}, United States"),
                        "US".into(),
                        format!("US{postal}"),
                        String::new(),
                        coordinate(lat),
                        coordinate(lon),
                        postal.into(),
                    ]
                } else {
                    [
                        "3".into(),
                        format!("{city}, {name}, United States"),
                        "US".into(),
                        format!("US{postal}"),
                        format!("{postal}{:03}", 1 + rng.below(200)),
                        coordinate(city_lat + jitter(rng, 0.2)),
                        coordinate(city_lon + jitter(rng, 0.2)),
                        (100_000 + rng.below(2_400_000)).to_string(),
                    ]
                }
            }
            4 => [
                "4".into(),
                format!("{0}, {0}, {1}", country.capital, title(country.name)),
                fips.into(),
                adm1,
                (10_000 + rng.below(90_000)).to_string(),
                coordinate(country.lat + jitter(rng, 0.05)),
                coordinate(country.lon + jitter(rng, 0.05)),
                format!("-{}", 1_000_000 + rng.below(3_000_000)),
            ],
            _ => [
                "5".into(),
                format!("{}, {}", country.capital, title(country.name)),
                fips.into(),
                adm1.clone(),
                String::new(),
                coordinate(country.lat + jitter(rng, 0.5)),
                coordinate(country.lon + jitter(rng, 0.5)),
                adm1,
            ],
        };
        Place(columns)
    }
}

/// The story the next events come from.
#[derive(Default)]
pub struct Sources {
    url: String,
    left: u32,
}

impl Sources {
    /// SOURCEURL: a few events per story; now and then a citation.
    pub fn next(&mut self, rng: &mut SplitMix64, seen: NaiveDate) -> String {
        if self.left == 0 {
            self.left = 1 + rng.below(6) as u32;
            self.url = if rng.below(1000) < 12 {
                CITATIONS[rng.below(CITATIONS.len() as u64) as usize].to_string()
            } else {
                let site = SITES[rng.below(SITES.len() as u64) as usize];
                let words = 3 + rng.below(4);
                let slug: Vec<&str> = (0..words)
                    .map(|_| SLUG_WORDS[rng.below(SLUG_WORDS.len() as u64) as usize])
                    .collect();
                let scheme = if rng.below(1000) < 300 {
                    "https"
                } else {
                    "http"
                };
                format!(
                    "{scheme}://{site}/{}/{}-{}.html",
                    seen.format("%Y/%m/%d"),
                    slug.join("-"),
                    100_000 + rng.below(900_000)
                )
            };
        }
        self.left -= 1;
        self.url.clone()
    }
}
