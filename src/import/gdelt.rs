//! GDELT 2.0 event exports: 61 tab-separated columns, no header, no quoting
//! (column names and meanings: GDELT's event codebook).
//!
//! `SQLDATE` is the day the event took place (kept as GDELT resolved it,
//! even a year off); `DATEADDED` is when GDELT first saw it, kept as a
//! label. `MonthYear`, `Year` and `FractionDate` only restate `SQLDATE`
//! and are not kept; everything else is, as a label with GDELT's text.

use super::countries;
use super::row::{label, root_of, Actor, CountryRef, Parsed, Row, Side};
use crate::proto;
use std::collections::BTreeMap;

/// Columns of a GDELT 2.0 export row.
pub const COLUMNS: usize = 61;

/// The columns of one actor (from Actor1Code / Actor2Code on), and the
/// labels they become.
const ACTOR_COLUMNS: [&str; 10] = [
    "code",
    "name",
    "country",
    "known_group",
    "ethnic",
    "religion1",
    "religion2",
    "type1",
    "type2",
    "type3",
];

/// The columns of one place (from Actor1Geo_Type, Actor2Geo_Type,
/// ActionGeo_Type on).
const GEO_COLUMNS: [&str; 8] = [
    "type",
    "name",
    "country_fips",
    "adm1",
    "adm2",
    "lat",
    "lon",
    "feature_id",
];

/// The event columns from IsRootEvent on.
const EVENT_COLUMNS: [&str; 10] = [
    "is_root_event",
    "cameo_code",
    "cameo_base",
    "cameo_root",
    "quad_class",
    "goldstein",
    "num_mentions",
    "num_sources",
    "num_articles",
    "avg_tone",
];

/// Does this line look like a GDELT 2.0 export row?
pub fn looks_like(line: &str) -> bool {
    let fields: Vec<&str> = line.split('\t').collect();
    fields.len() == COLUMNS
        && !fields[0].is_empty()
        && fields[0].bytes().all(|b| b.is_ascii_digit())
}

/// Parses one data line.
pub fn parse(line: &str) -> Parsed {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != COLUMNS {
        return Parsed::skipped(
            "wrong number of columns",
            format!(
                "{} columns where a GDELT 2.0 row has {COLUMNS}",
                fields.len()
            ),
        );
    }
    let event_id = fields[0].trim();
    if event_id.is_empty() || !event_id.bytes().all(|b| b.is_ascii_digit()) {
        return Parsed::skipped(
            "bad event id",
            format!("GLOBALEVENTID {event_id:?} is not a number"),
        );
    }
    let Some(day) = day(fields[1]) else {
        return Parsed::skipped(
            "unparseable date",
            format!("SQLDATE {:?} is not a YYYYMMDD date", fields[1]),
        );
    };
    let code = fields[26].trim();
    if code.is_empty() {
        return Parsed::skipped("blank event code", "blank EventCode".into());
    }
    let root_code = if fields[28].trim().is_empty() {
        code.get(..2).unwrap_or(code)
    } else {
        fields[28]
    };
    let Some(root) = root_of(root_code) else {
        return Parsed::skipped(
            "unknown CAMEO root",
            format!("EventRootCode {root_code:?} is not a CAMEO root"),
        );
    };

    let mut labels = BTreeMap::new();
    labels.insert("dataset".to_string(), "gdelt2".to_string());
    for (actor, first) in [("actor1", 5), ("actor2", 15)] {
        for (offset, name) in ACTOR_COLUMNS.iter().enumerate() {
            label(
                &mut labels,
                &format!("{actor}_{name}"),
                fields[first + offset],
            );
        }
    }
    for (offset, name) in EVENT_COLUMNS.iter().enumerate() {
        label(&mut labels, name, fields[25 + offset]);
    }
    for (place, first) in [("actor1_geo", 35), ("actor2_geo", 43), ("geo", 51)] {
        for (offset, name) in GEO_COLUMNS.iter().enumerate() {
            label(
                &mut labels,
                &format!("{place}_{name}"),
                fields[first + offset],
            );
        }
    }
    label(&mut labels, "date_added", fields[59]);

    let date_added = fields[59].trim();
    let cited = fields[60].trim();
    let is_url = cited.starts_with("http://") || cited.starts_with("https://");
    let document = match (cited.is_empty() || is_url, date_added.is_empty()) {
        (true, false) => format!("GDELT 2.0 events {date_added}"),
        (true, true) => "GDELT 2.0 events".to_string(),
        (false, _) => format!("GDELT 2.0 events {date_added}: {cited}"),
    };
    let source = proto::Source {
        document,
        url: if is_url {
            cited.to_string()
        } else {
            String::new()
        },
        ..Default::default()
    };

    let named = |code: &str, name: &str| {
        let name = name.trim();
        if name.is_empty() {
            code.trim().to_string()
        } else {
            name.to_string()
        }
    };
    let (actor1, actor2) = (named(fields[5], fields[6]), named(fields[15], fields[16]));
    let what = format!("{} ({code})", root.kind.replace('_', " "));
    let summary = [actor1.as_str(), what.as_str(), actor2.as_str()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" — ");

    Parsed::Row(Box::new(Row {
        id: format!("gdelt-{event_id}"),
        day,
        root,
        summary,
        source,
        labels,
        sides: [side(fields[5], fields[7]), side(fields[15], fields[17])],
    }))
}

/// `YYYYMMDD` as `YYYY-MM-DD`, if it is a day of years 0001–9999.
fn day(text: &str) -> Option<String> {
    let text = text.trim();
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y%m%d").ok()?;
    (text[..4] != *"0000").then(|| date.format("%Y-%m-%d").to_string())
}

/// One side: the actor's country, and the actor when its code says more
/// than the country (`USAGOV`, or `GOV` with no country).
fn side(code: &str, country_code: &str) -> Side {
    let (code, country_code) = (code.trim(), country_code.trim());
    let country = if !country_code.is_empty() {
        Some(match countries::by_code(country_code) {
            Some(country) => CountryRef::Known(country),
            None => CountryRef::Unknown {
                id: format!("cameo-{country_code}"),
                text: country_code.to_string(),
            },
        })
    } else {
        countries::by_code(code).map(CountryRef::Known)
    };
    let is_country = countries::by_code(code).is_some() || code == country_code;
    let actor = (!code.is_empty() && !is_country).then(|| Actor::Code(code.to_string()));
    Side { country, actor }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with the given fields set (by 0-based column) and the rest
    /// blank.
    fn line(fields: &[(usize, &str)]) -> String {
        let mut columns = vec![""; COLUMNS];
        for (column, value) in fields {
            columns[*column] = value;
        }
        columns.join("\t")
    }

    fn base() -> Vec<(usize, &'static str)> {
        vec![
            (0, "410412347"),
            (1, "20150218"),
            (5, "USAGOV"),
            (6, "UNITED STATES"),
            (7, "USA"),
            (15, "PRK"),
            (16, "NORTH KOREA"),
            (17, "PRK"),
            (26, "042"),
            (27, "042"),
            (28, "04"),
            (29, "1"),
            (30, "1.9"),
            (59, "20150218230000"),
            (60, "http://example.org/story"),
        ]
    }

    fn row(fields: &[(usize, &str)]) -> Row {
        match parse(&line(fields)) {
            Parsed::Row(row) => *row,
            Parsed::Skipped(skip) => panic!("skipped: {}", skip.detail),
        }
    }

    #[test]
    fn a_row_becomes_a_report_with_its_values_as_labels() {
        let row = row(&base());
        assert_eq!(row.id, "gdelt-410412347");
        assert_eq!(row.day, "2015-02-18");
        assert_eq!(row.root.kind, "consult");
        assert_eq!(row.source.url, "http://example.org/story");
        assert_eq!(row.labels["goldstein"], "1.9");
        assert_eq!(row.labels["cameo_root"], "04");
        assert_eq!(row.labels["actor1_code"], "USAGOV");
        assert!(!row.labels.contains_key("actor2_type1"));
        assert_eq!(row.summary, "UNITED STATES — consult (042) — NORTH KOREA");
        let [subject, target] = &row.sides;
        assert!(matches!(&subject.country, Some(CountryRef::Known(c)) if c.id == "united-states"));
        assert_eq!(subject.actor, Some(Actor::Code("USAGOV".into())));
        assert!(matches!(&target.country, Some(CountryRef::Known(c)) if c.id == "north-korea"));
        assert_eq!(target.actor, None);
    }

    #[test]
    fn a_citation_that_is_not_a_url_goes_into_the_document() {
        let mut fields = base();
        fields.retain(|(column, _)| *column != 60);
        fields.push((60, "BBC Monitoring"));
        let row = row(&fields);
        assert_eq!(row.source.url, "");
        assert_eq!(
            row.source.document,
            "GDELT 2.0 events 20150218230000: BBC Monitoring"
        );
    }

    #[test]
    fn a_blank_actor_is_no_side() {
        let mut fields = base();
        fields.retain(|(column, _)| !(15..=17).contains(column));
        let row = row(&fields);
        assert_eq!(row.sides[1], Side::default());
        assert_eq!(row.summary, "UNITED STATES — consult (042)");
    }

    #[test]
    fn bad_rows_are_skipped_with_a_reason() {
        let skipped = |text: String| match parse(&text) {
            Parsed::Skipped(skip) => skip.detail,
            Parsed::Row(_) => panic!("parsed {text:?}"),
        };
        assert!(skipped("1\t2\t3".into()).contains("3 columns"));
        let mut fields = base();
        fields[1] = (1, "20151345");
        assert!(skipped(line(&fields)).contains("SQLDATE"));
        let mut fields = base();
        fields.retain(|(column, _)| *column != 26);
        assert!(skipped(line(&fields)).contains("blank EventCode"));
    }
}
