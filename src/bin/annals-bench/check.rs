//! The correctness gate: before anything is timed, a sample of the server's
//! answers (fresh random parameters per question) must equal the oracle's.
//! A fast wrong answer is a failure, not a result.
//!
//! Also writes the same kind of sample for PostgreSQL (`pg-checks`): a psql
//! script running the benchmark's SQL with drawn parameters, and the rows the
//! oracle expects, in the same text form psql prints (`-A -t -F'|'`).

use crate::oracle::{ActiveRelation, Oracle};
use crate::questions::{self, Grpc, Params, Question};
use crate::workload::{entity_name, valid_date, SplitMix64, ATTR_KEYS, REL_KINDS};
use crate::Res;
use annals::proto;
use std::fmt::Write as _;
use std::path::Path;

/// Relations as comparable text: (counterpart, kind, since, event id).
type RelationRow = (String, String, String, String);

fn expected_relations(oracle: &Oracle, relations: &[ActiveRelation]) -> Vec<RelationRow> {
    let mut rows: Vec<RelationRow> = relations
        .iter()
        .map(|relation| {
            (
                entity_name(relation.other),
                REL_KINDS[relation.kind as usize].to_string(),
                valid_date(relation.since),
                oracle.event(relation.seq).event_id(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The server's relations of `entity`; a relation not involving it, or not
/// certain at a day-precision T, is itself a wrong answer.
fn actual_relations(
    entity: &str,
    relations: &[proto::Relation],
    problems: &mut Vec<String>,
) -> Vec<RelationRow> {
    let mut rows: Vec<RelationRow> = relations
        .iter()
        .map(|relation| {
            let counterpart = if relation.a == entity {
                relation.b.clone()
            } else {
                if relation.b != entity {
                    problems.push(format!("relation {relation:?} does not involve {entity}"));
                }
                relation.a.clone()
            };
            if !relation.certain || relation.directed {
                problems.push(format!(
                    "relation {relation:?} should be certain and undirected"
                ));
            }
            (
                counterpart,
                relation.kind.clone(),
                relation.since.clone(),
                relation.event_id.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn compare<T: std::fmt::Debug + PartialEq>(
    label: &str,
    expected: &[T],
    actual: &[T],
    problems: &mut Vec<String>,
) {
    if expected == actual {
        return;
    }
    let missing: Vec<&T> = expected
        .iter()
        .filter(|item| !actual.contains(item))
        .collect();
    let extra: Vec<&T> = actual
        .iter()
        .filter(|item| !expected.contains(item))
        .collect();
    problems.push(format!(
        "{label}: expected {} items, got {}; missing {:?}; unexpected {:?}{}",
        expected.len(),
        actual.len(),
        &missing[..missing.len().min(5)],
        &extra[..extra.len().min(5)],
        if missing.is_empty() && extra.is_empty() {
            " (same items, other order)"
        } else {
            ""
        }
    ));
}

/// One question asked of the server and of the oracle; the differences.
async fn check_one(
    client: &mut Grpc,
    oracle: &Oracle,
    question: Question,
    params: &Params,
) -> Res<(Vec<String>, usize)> {
    let entity = entity_name(params.entity);
    let at = valid_date(params.at);
    let n = oracle.len();
    let mut problems = Vec::new();
    let mut items = 0;
    let label = format!(
        "{} entity={entity} at={at}{}",
        question.name(),
        match question {
            Question::Q3 => format!(" as_of_seq={}", params.as_of_seq),
            Question::Q4 => format!(" to={}", valid_date(params.window_end())),
            _ => String::new(),
        }
    );
    match question {
        Question::Q1 | Question::Q1Hot | Question::Q3 => {
            let max_seq = if question == Question::Q3 {
                params.as_of_seq - 1
            } else {
                n
            };
            let expected =
                expected_relations(oracle, &oracle.relations(params.entity, params.at, max_seq));
            let answer = questions::relations(client, &entity, &at, params.as_of_seq).await?;
            let actual = actual_relations(&entity, &answer, &mut problems);
            items += expected.len();
            compare(&label, &expected, &actual, &mut problems);
        }
        Question::Q2 => {
            let state = questions::entity_state(client, &entity, &at).await?;
            if state.entity.as_ref().map(|e| e.id.as_str()) != Some(entity.as_str()) {
                problems.push(format!("{label}: entity is {:?}", state.entity));
            }
            let mut expected_attributes: Vec<RelationRow> = oracle
                .attributes(params.entity, params.at)
                .iter()
                .map(|attribute| {
                    let key = ATTR_KEYS[attribute.key as usize];
                    (
                        key.to_string(),
                        format!("{key}-{}", attribute.value),
                        valid_date(attribute.since),
                        oracle.event(attribute.seq).event_id(),
                    )
                })
                .collect();
            expected_attributes.sort();
            let mut actual_attributes: Vec<RelationRow> = state
                .attributes
                .iter()
                .map(|attribute| {
                    if !attribute.certain {
                        problems.push(format!("{label}: {attribute:?} should be certain"));
                    }
                    (
                        attribute.key.clone(),
                        attribute.value.clone(),
                        attribute.since.clone(),
                        attribute.event_id.clone(),
                    )
                })
                .collect();
            actual_attributes.sort();
            compare(
                &format!("{label} attributes"),
                &expected_attributes,
                &actual_attributes,
                &mut problems,
            );
            let expected =
                expected_relations(oracle, &oracle.relations(params.entity, params.at, n));
            let actual = actual_relations(&entity, &state.relations, &mut problems);
            items += expected_attributes.len() + expected.len();
            compare(
                &format!("{label} relations"),
                &expected,
                &actual,
                &mut problems,
            );
        }
        Question::Q4 => {
            let to = valid_date(params.window_end());
            let expected: Vec<(u64, String)> = oracle
                .events_in_window(params.entity, params.at, params.window_end(), 100, true)
                .into_iter()
                .map(|seq| match seq {
                    0 => (1, crate::workload::DECLARATION_ID.to_string()),
                    seq => (seq + 1, oracle.event(seq).event_id()),
                })
                .collect();
            let answer = questions::events(client, &entity, &at, &to).await?;
            let actual: Vec<(u64, String)> = answer
                .entries
                .iter()
                .map(|entry| {
                    let id = entry.event.as_ref().map_or("", |event| event.id.as_str());
                    (entry.seq, id.to_string())
                })
                .collect();
            items += expected.len();
            compare(&label, &expected, &actual, &mut problems);
        }
    }
    Ok((problems, items))
}

/// The gate's outcome.
#[derive(Clone, Debug, Default)]
pub struct GateReport {
    pub checked: usize,
    /// Relations, attributes and events in the expected answers.
    pub items: usize,
    pub failed: usize,
    pub problems: Vec<String>,
    /// Per question: its name, how many were asked, and the items in their
    /// expected answers (so the mean answer size at this N).
    pub per_question: Vec<(&'static str, usize, usize)>,
}

/// Asks `per_question` random instances of Q1–Q4 (and a few Q1-hot) and
/// compares each answer with the oracle.
pub async fn gate(
    address: &str,
    oracle: &Oracle,
    per_question: usize,
    seed: u64,
) -> Res<GateReport> {
    let mut client = questions::connect(address).await?;
    let mut rng = SplitMix64::new(seed);
    let mut report = GateReport::default();
    for question in Question::ALL {
        let count = if question == Question::Q1Hot {
            per_question.div_ceil(10)
        } else {
            per_question
        };
        report.per_question.push((question.name(), count, 0));
        for _ in 0..count {
            let params = Params::draw(question, oracle.len(), &mut rng);
            let (problems, items) = check_one(&mut client, oracle, question, &params).await?;
            report.checked += 1;
            report.items += items;
            if let Some(last) = report.per_question.last_mut() {
                last.2 += items;
            }
            if !problems.is_empty() {
                report.failed += 1;
                if report.problems.len() < 20 {
                    report.problems.extend(problems);
                }
            }
        }
    }
    Ok(report)
}

/// Writes `checks.sql` (a psql script: draw parameters, `\i` the
/// benchmark's query files) and `expected.txt` (what psql must print for it
/// with `-X -A -t -F'|'`), for the PostgreSQL side's correctness check.
pub fn write_pg_checks(
    oracle: &Oracle,
    per_question: usize,
    seed: u64,
    sql_dir: &Path,
    out_dir: &Path,
) -> Res<()> {
    std::fs::create_dir_all(out_dir)?;
    let sql_dir = std::fs::canonicalize(sql_dir)?;
    let mut script = String::from("\\set ON_ERROR_STOP 1\n\\pset footer off\n");
    let mut expected = String::new();
    let mut rng = SplitMix64::new(seed);
    let n = oracle.len();
    let relation_rows = |relations: Vec<ActiveRelation>, prefix: &str, mid: &str| {
        let mut rows: Vec<(u16, &str, String)> = relations
            .iter()
            .map(|relation| {
                let kind = REL_KINDS[relation.kind as usize];
                (
                    relation.other,
                    kind,
                    format!(
                        "{prefix}{}|{kind}{mid}|{}|{}\n",
                        relation.other,
                        valid_date(relation.since),
                        oracle.event(relation.seq).event_id()
                    ),
                )
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, _, row)| row).collect::<String>()
    };
    for question in Question::ALL {
        let count = if question == Question::Q1Hot {
            per_question.div_ceil(10)
        } else {
            per_question
        };
        for _ in 0..count {
            let params = Params::draw(question, n, &mut rng);
            let (x, t) = (params.entity, params.at);
            let (file, header, rows) = match question {
                Question::Q1 | Question::Q1Hot => (
                    "q1.sql",
                    format!("#q1 x={x} t={t}"),
                    relation_rows(oracle.relations(x, t, n), "", ""),
                ),
                Question::Q3 => (
                    "q3.sql",
                    format!("#q3 x={x} t={t} s={}", params.as_of_seq),
                    relation_rows(oracle.relations(x, t, params.as_of_seq - 1), "", ""),
                ),
                Question::Q2 => {
                    let mut attributes: Vec<(&str, String)> = oracle
                        .attributes(x, t)
                        .iter()
                        .map(|attribute| {
                            let key = ATTR_KEYS[attribute.key as usize];
                            (
                                key,
                                format!(
                                    "a||{key}|{key}-{}|{}|{}\n",
                                    attribute.value,
                                    valid_date(attribute.since),
                                    oracle.event(attribute.seq).event_id()
                                ),
                            )
                        })
                        .collect();
                    attributes.sort();
                    let mut rows: String = attributes.into_iter().map(|(_, row)| row).collect();
                    rows.push_str(&relation_rows(oracle.relations(x, t, n), "r|", "|"));
                    ("q2.sql", format!("#q2 x={x} t={t}"), rows)
                }
                Question::Q4 => {
                    let mut rows = String::new();
                    for seq in oracle.events_in_window(x, t, params.window_end(), 100, false) {
                        let event = oracle.event(seq);
                        let object = if event.object == 0 {
                            String::new()
                        } else {
                            event.object.to_string()
                        };
                        writeln!(
                            rows,
                            "{}|{}|{}|{}|{}|{}|{}|{}",
                            seq,
                            event.event_id(),
                            valid_date(event.valid_from),
                            event.valid_to.map(valid_date).unwrap_or_default(),
                            event.kind(),
                            event.subject,
                            object,
                            event.payload()
                        )?;
                    }
                    (
                        "q4.sql",
                        format!("#q4 x={x} t1={t} d={}", params.window_days),
                        rows,
                    )
                }
            };
            writeln!(
                script,
                "\\set x {x}\n\\set t {t}\n\\set s {}\n\\set d {}\n\\echo '{header}'\n\\i {}",
                params.as_of_seq.max(2),
                params.window_days.max(30),
                sql_dir.join(file).display()
            )?;
            writeln!(expected, "{header}")?;
            expected.push_str(&rows);
        }
    }
    std::fs::write(out_dir.join("checks.sql"), script)?;
    std::fs::write(out_dir.join("expected.txt"), expected)?;
    Ok(())
}
