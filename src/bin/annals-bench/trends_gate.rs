//! The trends benchmark's correctness gate: before anything is timed,
//! annals's CountEvents and ListEvents answers for the busiest dyad must
//! equal what the generator knows it wrote (`gdelt::DyadRow`s): every
//! month's count and Goldstein sum, and every month's first page of
//! consultations (the same events day by day; within a day annals keeps log
//! order). The answers it checked become the `expected` lines of the
//! results, which the PostgreSQL side must reproduce before it is timed
//! (`trends-expected`).

use crate::gdelt::{self, DyadRow};
use crate::questions;
use crate::trends::LIST_MONTHS;
use crate::trends_measure::{count_lines, month, tenths};
use crate::Res;
use annals::proto;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the gate found.
pub struct Gate {
    pub checked: usize,
    pub problems: Vec<String>,
    /// The checked answers, as the PostgreSQL side prints them.
    pub expected: Value,
}

/// `YYYY-MM` of a day of the data.
fn month_of(day: u32) -> String {
    (gdelt::first_day() + chrono::Days::new(u64::from(day)))
        .format("%Y-%m")
        .to_string()
}

/// `YYYY-MM-DD` of a day of the data.
fn day_of(day: u32) -> String {
    (gdelt::first_day() + chrono::Days::new(u64::from(day)))
        .format("%Y-%m-%d")
        .to_string()
}

/// Is `got` (a first page of `listed` entries, as (day, id)) the first page
/// of `expected` (by (day, id))? Within a day annals lists events in log
/// order, which an import with two Appends in flight need not keep in
/// file (id) order: days must come in order, and each day hold the same
/// events; a day the page cuts off must hold only events of that day.
fn same_page(
    got: &[(String, u64)],
    listed: usize,
    expected: &[(String, u64)],
) -> Result<(), String> {
    if got.len() != listed {
        return Err(format!(
            "{listed} entries, {} of them GDELT events",
            got.len()
        ));
    }
    if got.windows(2).any(|pair| pair[0].0 > pair[1].0) {
        return Err("days out of order".into());
    }
    let full = got.len() == 100 && expected.len() > 100;
    let cut_day = full.then(|| got[99].0.clone());
    let whole = |rows: &[(String, u64)]| -> Vec<(String, u64)> {
        let mut rows: Vec<_> = rows
            .iter()
            .filter(|(day, _)| cut_day.as_ref().is_none_or(|cut| day < cut))
            .cloned()
            .collect();
        rows.sort();
        rows
    };
    if whole(got) != whole(expected) {
        return Err(format!(
            "{} events from {:?}, expected {} from {:?}",
            got.len(),
            got.first(),
            expected.len().min(100),
            expected.first()
        ));
    }
    if let Some(cut) = cut_day {
        let on_cut =
            |(day, id): &(String, u64)| *day == cut && expected.contains(&(day.clone(), *id));
        if !got.iter().filter(|(day, _)| *day == cut).all(on_cut) {
            return Err(format!("events of {cut} the data does not hold"));
        }
    }
    Ok(())
}

/// The truth's `month|count|sum` lines, for the rows `wanted` keeps.
fn truth_lines(truth: &[DyadRow], wanted: impl Fn(&DyadRow) -> bool) -> Vec<String> {
    let mut months: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for row in truth.iter().filter(|row| wanted(row)) {
        let entry = months.entry(month_of(row.day)).or_default();
        entry.0 += 1;
        entry.1 += i64::from(row.goldstein_tenths);
    }
    months
        .into_iter()
        .map(|(month, (count, sum))| format!("{month}|{count}|{}", tenths(sum as f64 / 10.0)))
        .collect()
}

fn request(
    entity: &str,
    counterpart: &str,
    value_label: &str,
    root: bool,
) -> proto::CountEventsRequest {
    proto::CountEventsRequest {
        entity: entity.to_string(),
        counterpart: counterpart.to_string(),
        labels: root
            .then(|| ("cameo_root".to_string(), "04".to_string()))
            .into_iter()
            .collect(),
        from: "2015".into(),
        to: "2024".into(),
        bucket: proto::Bucket::Month as i32,
        value_label: value_label.to_string(),
        ..Default::default()
    }
}

/// Asks CountEvents (three ways, and with the dyad reversed) and the first
/// ListEvents page of every month, and compares each with the truth.
pub async fn check(address: &str, dyad: &[String; 2], truth: &[DyadRow]) -> Res<Gate> {
    let mut client = questions::connect(address).await?;
    let [a, b] = dyad;
    let mut gate = Gate {
        checked: 0,
        problems: Vec::new(),
        expected: Value::Null,
    };
    let all = truth_lines(truth, |_| true);
    let root04 = truth_lines(truth, |row| row.root == 4);
    let cases = [
        ("count_goldstein", request(a, b, "goldstein", false), &all),
        (
            "count_goldstein_reversed",
            request(b, a, "goldstein", false),
            &all,
        ),
        (
            "count_root04_goldstein",
            request(a, b, "goldstein", true),
            &root04,
        ),
    ];
    for (name, request, expected) in cases {
        let response = client
            .count_events(request)
            .await
            .map_err(|status| format!("{name}: {status}"))?
            .into_inner();
        let (lines, valued) = count_lines(&response);
        gate.checked += 1;
        if &lines != expected {
            let first = lines
                .iter()
                .zip(expected.iter())
                .find(|(got, want)| got != want);
            gate.problems.push(format!(
                "{name}: {} buckets, expected {}; first difference {first:?}",
                lines.len(),
                expected.len()
            ));
        }
        for bucket in &response.buckets {
            if valued.get(&bucket.start) != Some(&bucket.count) {
                gate.problems.push(format!(
                    "{name} {}: {} events carry goldstein of {}",
                    bucket.start, bucket.valued, bucket.count
                ));
            }
        }
    }
    // Without a value label: the counts alone.
    let response = client
        .count_events(request(a, b, "", false))
        .await
        .map_err(|status| format!("count: {status}"))?
        .into_inner();
    gate.checked += 1;
    if response.total != truth.len() as u64 || response.buckets.len() != all.len() {
        gate.problems.push(format!(
            "count: total {} in {} buckets, expected {} in {}",
            response.total,
            response.buckets.len(),
            truth.len(),
            all.len()
        ));
    }

    let mut lists = serde_json::Map::new();
    for index in 0..120 {
        let window = month(index);
        let page = client
            .list_events(proto::ListEventsRequest {
                entity: a.clone(),
                counterpart: b.clone(),
                labels: [("cameo_root".to_string(), "04".to_string())].into(),
                from: window.clone(),
                to: window.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .map_err(|status| format!("list_root04 {window}: {status}"))?
            .into_inner();
        // (day, id) of each entry, in the order listed.
        let got: Vec<(String, u64)> = page
            .entries
            .iter()
            .filter_map(|entry| {
                let event = entry.event.as_ref()?;
                let day = event.occurred.as_ref()?.start.clone();
                Some((day, event.id.strip_prefix("gdelt-")?.parse().ok()?))
            })
            .collect();
        let expected: Vec<(String, u64)> = truth
            .iter()
            .filter(|row| row.root == 4 && month_of(row.day) == window)
            .map(|row| (day_of(row.day), row.id))
            .collect();
        gate.checked += 1;
        if let Err(problem) = same_page(&got, page.entries.len(), &expected) {
            gate.problems
                .push(format!("list_root04 {window}: {problem}"));
        }
        // A page that holds the whole month is the same set in any order
        // of a day's events; PostgreSQL's side prints it by (day, id).
        if LIST_MONTHS.contains(&index) && got.len() < 100 {
            let mut ids: Vec<(String, u64)> = got.clone();
            ids.sort();
            let ids: Vec<String> = ids.iter().map(|(_, id)| id.to_string()).collect();
            lists.insert(window, json!(ids.join(",")));
        }
    }
    gate.expected = json!({
        "count_goldstein": all,
        "count_root04_goldstein": root04,
        "list_root04": lists,
    });
    Ok(gate)
}
