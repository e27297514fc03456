//! A coded row in a form both formats share, and the event it becomes.
//!
//! A row is a report that something was said or done, not a state change:
//! its event has no effects. Its content is a pure function of the row and
//! the built-in tables (ids from the source key, the CAMEO root's name as
//! the kind, every other value as a label with the source's exact text),
//! so importing the same file twice changes nothing.

use super::countries::Country;
use crate::proto;
use std::collections::BTreeMap;

/// A CAMEO root code (`01`–`20`) with the kind its events get.
#[derive(Debug, PartialEq, Eq)]
pub struct Root {
    pub code: &'static str,
    pub kind: &'static str,
}

/// The twenty CAMEO roots, named as CAMEO names them.
pub const ROOTS: [Root; 20] = [
    root("01", "make_public_statement"),
    root("02", "appeal"),
    root("03", "express_intent_to_cooperate"),
    root("04", "consult"),
    root("05", "engage_in_diplomatic_cooperation"),
    root("06", "engage_in_material_cooperation"),
    root("07", "provide_aid"),
    root("08", "yield"),
    root("09", "investigate"),
    root("10", "demand"),
    root("11", "disapprove"),
    root("12", "reject"),
    root("13", "threaten"),
    root("14", "protest"),
    root("15", "exhibit_force_posture"),
    root("16", "reduce_relations"),
    root("17", "coerce"),
    root("18", "assault"),
    root("19", "fight"),
    root("20", "use_unconventional_mass_violence"),
];

const fn root(code: &'static str, kind: &'static str) -> Root {
    Root { code, kind }
}

/// The root of a CAMEO root code as written (`4` or `04`).
pub fn root_of(code: &str) -> Option<&'static Root> {
    let code = code.trim();
    let padded;
    let code = if code.len() == 1 {
        padded = format!("0{code}");
        padded.as_str()
    } else {
        code
    };
    ROOTS.iter().find(|root| root.code == code)
}

/// Who is on one side of a row (the source or actor 1; the target or
/// actor 2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// The side's country: one of the table, or a code or name the table
    /// does not know (a region such as GDELT's `AFR`).
    pub country: Option<CountryRef>,
    /// The actor, when it is more than its country.
    pub actor: Option<Actor>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountryRef {
    Known(&'static Country),
    /// Not in the table: the entity id to use and the source's text.
    Unknown {
        id: String,
        text: String,
    },
}

/// An actor as a data set names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A GDELT CAMEO actor code (`USAGOV`): entity `cameo-usagov`.
    Code(String),
    /// An ICEWS actor name (`Xi Jinping`): entity `xi-jinping`.
    Name(String),
}

/// One row, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The event id, from the source key.
    pub id: String,
    /// The event's day, `YYYY-MM-DD`.
    pub day: String,
    pub root: &'static Root,
    pub summary: String,
    pub source: proto::Source,
    pub labels: BTreeMap<String, String>,
    /// The source or actor 1, then the target or actor 2.
    pub sides: [Side; 2],
}

/// What a data line turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Row(Box<Row>),
    /// A line that is not a row.
    Skipped(Skip),
}

/// Why a line is not a row: the kind of fault (what the summary counts by)
/// and the line's particulars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub detail: String,
}

impl Parsed {
    pub fn skipped(reason: &'static str, detail: String) -> Parsed {
        Parsed::Skipped(Skip { reason, detail })
    }
}

/// The roles of a row's two sides.
pub const ROLES: [&str; 2] = ["subject", "target"];

impl Row {
    /// The row's event, naming the given participants.
    pub fn into_event(self, participants: Vec<proto::Participant>) -> proto::Event {
        proto::Event {
            id: self.id,
            kind: self.root.kind.to_string(),
            occurred: Some(proto::TimeSpan {
                start: self.day,
                end: String::new(),
            }),
            summary: self.summary,
            participants,
            source: Some(self.source),
            labels: self.labels,
            ..Default::default()
        }
    }

    /// The ids of the countries on either side that the table knows.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.sides.iter().filter_map(|side| match &side.country {
            Some(CountryRef::Known(country)) => Some(country.id.as_str()),
            _ => None,
        })
    }
}

/// Puts `value` under `key` unless it is absent (empty, or a data set's
/// spelling of "no value").
pub fn label(labels: &mut BTreeMap<String, String>, key: &str, value: &str) {
    if !is_absent(value) {
        labels.insert(key.to_string(), value.to_string());
    }
}

/// Is this value a data set's "no value" (`""`, `NA`, `None`)?
pub fn is_absent(value: &str) -> bool {
    matches!(value.trim(), "" | "NA" | "None")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_found_with_or_without_the_leading_zero() {
        assert_eq!(root_of("04").map(|root| root.kind), Some("consult"));
        assert_eq!(root_of("4").map(|root| root.kind), Some("consult"));
        assert_eq!(root_of("19").map(|root| root.kind), Some("fight"));
        assert_eq!(root_of("21"), None);
        assert_eq!(root_of(""), None);
    }

    #[test]
    fn absent_values_make_no_label() {
        let mut labels = BTreeMap::new();
        label(&mut labels, "a", "NA");
        label(&mut labels, "b", "");
        label(&mut labels, "c", "0.5");
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["c"], "0.5");
    }
}
