//! ICEWS coded event data (Dataverse `.tab`): a header of 20 columns, tab
//! separated, no quoting (a `"` is a literal character), `NA` or empty for
//! no value.
//!
//! `Event ID` alone is not unique (ICEWS re-used ids with other dates), so
//! an event's id is the id and the day. Dates are `YYYY-MM-DD`, except in
//! the 2017 file, which writes `M/D/YYYY`.

use super::countries;
use super::row::{is_absent, label, root_of, Actor, CountryRef, Parsed, Row, Side};
use crate::proto;
use std::collections::BTreeMap;

/// The header of an ICEWS events file.
pub const HEADER: [&str; 20] = [
    "Event ID",
    "Event Date",
    "Source Name",
    "Source Sectors",
    "Source Country",
    "Event Text",
    "CAMEO Code",
    "Intensity",
    "Target Name",
    "Target Sectors",
    "Target Country",
    "Story ID",
    "Sentence Number",
    "Publisher",
    "City",
    "District",
    "Province",
    "Country",
    "Latitude",
    "Longitude",
];

/// ICEWS's home: there is no article URL in the data.
pub const DATASET_URL: &str = "https://doi.org/10.7910/DVN/28075";

/// Is this line an ICEWS header?
pub fn is_header(line: &str) -> bool {
    line.trim_end_matches('\r').split('\t').eq(HEADER)
}

/// Parses one data line (not the header).
pub fn parse(line: &str) -> Parsed {
    let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
    if fields.len() != HEADER.len() {
        return Parsed::skipped(
            "wrong number of columns",
            format!(
                "{} columns where an ICEWS row has {}",
                fields.len(),
                HEADER.len()
            ),
        );
    }
    let value = |column: usize| -> &str {
        let text = fields[column].trim();
        if is_absent(text) {
            ""
        } else {
            text
        }
    };
    let event_id = value(0);
    if event_id.is_empty() || !event_id.bytes().all(|b| b.is_ascii_digit()) {
        return Parsed::skipped(
            "bad event id",
            format!("Event ID {:?} is not a number", fields[0]),
        );
    }
    let Some(day) = day(value(1)) else {
        return Parsed::skipped(
            "unparseable date",
            format!("Event Date {:?} is not YYYY-MM-DD or M/D/YYYY", fields[1]),
        );
    };
    let code = value(6);
    if code.is_empty() {
        return Parsed::skipped("blank event code", "blank CAMEO Code".into());
    }
    let Some(root) = root_of(code.get(..2).unwrap_or(code)) else {
        return Parsed::skipped(
            "unknown CAMEO root",
            format!("CAMEO Code {code:?} has no CAMEO root"),
        );
    };

    let mut labels = BTreeMap::new();
    labels.insert("dataset".to_string(), "icews".to_string());
    labels.insert("cameo_root".to_string(), root.code.to_string());
    for (column, key) in [
        (2, "source_name"),
        (4, "source_country"),
        (5, "event_text"),
        (6, "cameo_code"),
        (7, "goldstein"),
        (8, "target_name"),
        (10, "target_country"),
        (11, "story_id"),
        (12, "sentence_number"),
        (13, "publisher"),
        (14, "geo_city"),
        (15, "geo_district"),
        (16, "geo_province"),
        (17, "geo_country"),
        (18, "geo_lat"),
        (19, "geo_lon"),
    ] {
        label(&mut labels, key, value(column));
    }
    label(&mut labels, "source_sectors", &sectors(value(3)));
    label(&mut labels, "target_sectors", &sectors(value(9)));

    let summary = [value(2), value(5), value(8)]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" — ");
    let mut document = value(13).to_string();
    if !value(11).is_empty() {
        document = format!("{document}, story {}", value(11));
    }
    if !value(12).is_empty() {
        document = format!("{document}, sentence {}", value(12));
    }
    let source = proto::Source {
        document: document.trim_start_matches(", ").to_string(),
        url: DATASET_URL.to_string(),
        ..Default::default()
    };
    Parsed::Row(Box::new(Row {
        id: format!("icews-{event_id}-{}", day.replace('-', "")),
        day,
        root,
        summary,
        source,
        labels,
        sides: [side(value(2), value(4)), side(value(8), value(10))],
    }))
}

/// `YYYY-MM-DD` or `M/D/YYYY` as `YYYY-MM-DD`.
fn day(text: &str) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(text, "%m/%d/%Y"))
        .ok()?;
    use chrono::Datelike;
    (1..=9999)
        .contains(&date.year())
        .then(|| date.format("%Y-%m-%d").to_string())
}

/// A sector list as one text: the sectors sorted, quotes stripped (ICEWS
/// writes the same list in varying orders).
fn sectors(text: &str) -> String {
    let mut sectors: Vec<&str> = text
        .trim_matches('"')
        .split(',')
        .map(|sector| sector.trim().trim_matches('"'))
        .filter(|sector| !sector.is_empty())
        .collect();
    sectors.sort_unstable();
    sectors.join(",")
}

/// One side: its country, and the actor when it is more than the country
/// (`Police (India)`, `Xi Jinping`; not `North Korea` itself).
fn side(name: &str, country: &str) -> Side {
    let country_ref = (!country.is_empty()).then(|| match countries::by_name(country) {
        Some(known) => CountryRef::Known(known),
        None => CountryRef::Unknown {
            id: country.to_string(),
            text: country.to_string(),
        },
    });
    let names_the_country = match (&country_ref, countries::by_name(name)) {
        (Some(CountryRef::Known(known)), Some(named)) => known.id == named.id,
        (Some(CountryRef::Unknown { text, .. }), _) => text.eq_ignore_ascii_case(name),
        _ => false,
    };
    let actor = (!name.is_empty() && !names_the_country).then(|| Actor::Name(name.to_string()));
    Side {
        country: country_ref,
        actor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "32889836\t2018-06-01\tForeign Affairs (Bangladesh)\tGovernment,\"Executive\"\tBangladesh\tConsult\t040\t1\tNorth Korea\tNA\tNorth Korea\t47400351\t2\tVietnam News Agency Bulletin\tHanoi\tNA\tThanh Pho Ha Noi\tVietnam\t21.0245\t105.841";

    fn row(line: &str) -> Row {
        match parse(line) {
            Parsed::Row(row) => *row,
            Parsed::Skipped(skip) => panic!("skipped: {}", skip.detail),
        }
    }

    #[test]
    fn a_row_becomes_a_report_with_its_values_as_labels() {
        let row = row(ROW);
        assert_eq!(row.id, "icews-32889836-20180601");
        assert_eq!(row.day, "2018-06-01");
        assert_eq!(row.root.kind, "consult");
        assert_eq!(row.labels["goldstein"], "1");
        assert_eq!(row.labels["source_sectors"], "Executive,Government");
        assert!(!row.labels.contains_key("geo_district"));
        assert!(!row.labels.contains_key("target_sectors"));
        assert_eq!(row.source.url, DATASET_URL);
        assert_eq!(
            row.source.document,
            "Vietnam News Agency Bulletin, story 47400351, sentence 2"
        );
        let [source, target] = &row.sides;
        assert!(matches!(&source.country, Some(CountryRef::Known(c)) if c.id == "bangladesh"));
        assert_eq!(
            source.actor,
            Some(Actor::Name("Foreign Affairs (Bangladesh)".into()))
        );
        assert!(matches!(&target.country, Some(CountryRef::Known(c)) if c.id == "north-korea"));
        assert_eq!(target.actor, None, "North Korea is its own country");
    }

    #[test]
    fn dates_may_be_month_day_year() {
        let line = ROW.replace("2018-06-01", "6/1/2018");
        assert_eq!(row(&line).day, "2018-06-01");
        assert_eq!(row(&line).id, "icews-32889836-20180601");
    }

    #[test]
    fn bad_rows_are_skipped_with_a_reason() {
        let reason = |line: String| match parse(&line) {
            Parsed::Skipped(skip) => skip.detail,
            Parsed::Row(_) => panic!("parsed {line:?}"),
        };
        assert!(reason(ROW.replace("\t040\t", "\tNA\t")).contains("blank CAMEO Code"));
        assert!(reason(ROW.replace("2018-06-01", "2018-13-01")).contains("Event Date"));
        assert!(reason("1\t2".into()).contains("2 columns"));
        assert!(is_header(&HEADER.join("\t")));
        assert!(!is_header(ROW));
    }
}
