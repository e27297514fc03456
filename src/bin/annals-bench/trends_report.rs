//! The trends benchmark's result file and its markdown: `trends.rs` writes
//! the annals side, `trends_pg.rs` merges PostgreSQL's into it.

use crate::report::{latency, size_label, thousands};
use crate::Res;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Writes the JSON and the markdown next to it.
pub fn write(out: &Path, result: &Value) -> Res<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(result)? + "\n")?;
    std::fs::write(out.with_extension("md"), markdown(result))?;
    Ok(())
}

/// The PostgreSQL query that answers what an annals query asks.
fn pg_query(query: &str) -> &str {
    match query {
        "count_goldstein_reversed" => "count_goldstein",
        other => other,
    }
}

fn pg_metric(size: &Value, variant: &str, query: &str, clients: u64, field: &str) -> Option<f64> {
    size["postgres"]["variants"][variant]["queries"]
        .as_array()?
        .iter()
        .find(|q| {
            q["query"].as_str() == Some(pg_query(query)) && q["clients"].as_u64() == Some(clients)
        })?["median"][field]
        .as_f64()
}

/// The largest of a list of numbers.
fn worst(list: &Value) -> Option<f64> {
    list.as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .fold(None, |worst: Option<f64>, x| {
            Some(worst.map_or(x, |w| w.max(x)))
        })
}

/// The CPU others took during PostgreSQL's runs of a query, worst round
/// and worse variant.
fn pg_others(size: &Value, query: &str, clients: u64) -> Option<f64> {
    ["plain", "covering"]
        .iter()
        .filter_map(|variant| {
            let queries = size["postgres"]["variants"][variant]["queries"].as_array()?;
            let found = queries.iter().find(|q| {
                q["query"].as_str() == Some(pg_query(query))
                    && q["clients"].as_u64() == Some(clients)
            })?;
            worst(&found["others_cpu_s"])
        })
        .fold(None, |worst: Option<f64>, x| {
            Some(worst.map_or(x, |w| w.max(x)))
        })
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_string())
}

fn seconds_text(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".into(), |s| format!("{s:.1} s"))
}

/// What the query tables show.
const QUERY_LEGEND: &str = "The busiest dyad, 2015-01 to 2024-12 by month \
(CountEvents), or one month drawn per call (ListEvents, `cameo_root=04`, first page of 100). \
PG plain: indexes on (actor1countrycode, actor2countrycode, day) and (actor2countrycode, \
actor1countrycode, day), the dyad as one OR. PG covering: the same with INCLUDE \
(goldsteinscale, eventrootcode), each order of the dyad queried on its own and UNION ALL'd \
(index-only scans for the counts). `count_goldstein_reversed` asks annals for the dyad with \
entity and counterpart swapped; its PostgreSQL figures are count_goldstein's. `floor` is a \
call that reads nothing, what every other one pays first: a gRPC health check against \
PostgreSQL's `SELECT 1`. Last column: annals calls/s ÷ the better PostgreSQL variant's.";

/// The annals run's phases, in the order they run.
const ANNALS_PHASES: [&str; 7] = [
    "generate_s",
    "import_s",
    "read_back_s",
    "batch_append_s",
    "gate_s",
    "queries_s",
    "waiting_for_quiet_s",
];

/// The tables: import, queries per size, growth, commands and times.
pub fn markdown(result: &Value) -> String {
    let mut out = String::new();
    let sizes = result["sizes"].as_array().cloned().unwrap_or_default();
    let machine = &result["machine"];
    let _ = writeln!(
        out,
        "# Trends: annals and PostgreSQL on GDELT-shaped data\n"
    );
    let _ = writeln!(
        out,
        "{}; {} CPUs ({}), {} GiB, Linux {}. annals {} ({}); {}. {} s per measurement, median of {} rounds. Data: {}.\n",
        result["started_at"].as_str().unwrap_or(""),
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or(""),
        result["git_commit"].as_str().unwrap_or("?"),
        result["settings"]["server"].as_str().unwrap_or(""),
        result["postgres"]["server"].as_str().unwrap_or("PostgreSQL: not run yet"),
        result["settings"]["seconds"],
        result["settings"]["rounds"],
        result["data"].as_str().unwrap_or(""),
    );
    let _ = writeln!(out, "## Import\n");
    let _ = writeln!(out, "| N | busiest dyad (rows) | `annals import` rows/s | events/s | batch append events/s | import ÷ batch append | importer peak RSS | PostgreSQL COPY rows/s |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for size in &sizes {
        let dyad = &size["dyad"];
        let _ = writeln!(
            out,
            "| {} | {}–{} ({}) | {} | {} | {} | {:.1} % | {} MiB | {} |",
            size_label(size["n"].as_u64().unwrap_or(0)),
            dyad["ids"][0].as_str().unwrap_or(""),
            dyad["ids"][1].as_str().unwrap_or(""),
            dyad["rows"],
            thousands(size["import"]["rows_per_s"].as_f64().unwrap_or(0.0)),
            thousands(size["import"]["events_per_s"].as_f64().unwrap_or(0.0)),
            thousands(size["batch_append"]["events_per_s"].as_f64().unwrap_or(0.0)),
            100.0 * size["import_vs_batch_append"].as_f64().unwrap_or(0.0),
            size["import"]["peak_rss_kib"].as_u64().unwrap_or(0) / 1024,
            or_dash(
                size["postgres"]["load"]["copy_rows_per_s"]
                    .as_f64()
                    .map(thousands)
            ),
        );
    }
    let _ = writeln!(out, "\nEvents = rows + the importer's `actor_declared` declarations; the batch append re-appends exactly those events (read back with ReadLog) into a fresh server, 1,000 per Append, one at a time. PostgreSQL's COPY excludes its indexes (below).\n");
    let _ = writeln!(out, "CPU seconds while they ran (2 cores: at most 2 s per second of wall time; the server's share is machine − client − others; others: processes this benchmark did not start, e.g. a build):\n");
    let _ = writeln!(out, "| N | import wall | importer CPU | machine CPU | others | batch append wall | its client CPU | machine CPU | others |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in &sizes {
        let (import, batch) = (&size["import"], &size["batch_append"]);
        let cell = |value: &Value| seconds_text(value);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size_label(size["n"].as_u64().unwrap_or(0)),
            cell(&import["seconds"]),
            cell(&import["client_cpu_s"]),
            cell(&import["machine_cpu_s"]),
            cell(&import["others_cpu_s"]),
            cell(&batch["seconds"]),
            cell(&batch["client_cpu_s"]),
            cell(&batch["machine_cpu_s"]),
            cell(&batch["others_cpu_s"]),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Queries\n\n{QUERY_LEGEND}\n");
    for size in &sizes {
        let n = size["n"].as_u64().unwrap_or(0);
        let _ = writeln!(out, "### N = {}\n", size_label(n));
        let _ = writeln!(out, "| query | clients | annals calls/s | p50 | p99 | PG plain calls/s | p50 | PG covering calls/s | p50 | annals ÷ PG best | others' cores, worst round: annals / PG |");
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for query in size["queries"].as_array().into_iter().flatten() {
            let name = query["query"].as_str().unwrap_or("");
            let clients = query["clients"].as_u64().unwrap_or(1);
            let median = &query["median"];
            let calls = median["calls_per_s"].as_f64().unwrap_or(0.0);
            let pg = |variant, field| pg_metric(size, variant, name, clients, field);
            let best = [pg("plain", "calls_per_s"), pg("covering", "calls_per_s")]
                .into_iter()
                .flatten()
                .fold(None, |best: Option<f64>, x| {
                    Some(best.map_or(x, |b| b.max(x)))
                });
            let seconds = median["seconds"].as_f64().unwrap_or(1.0).max(1e-3);
            let pg_seconds = result["postgres"]["seconds_per_run"]
                .as_f64()
                .unwrap_or(seconds);
            let others = format!(
                "{} / {}",
                or_dash(worst(&query["others_cpu_s"]).map(|o| format!("{:.2}", o / seconds))),
                or_dash(pg_others(size, name, clients).map(|o| format!("{:.2}", o / pg_seconds)))
            );
            let _ = writeln!(
                out,
                "| {name} | {clients} | {calls:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                latency(median["p50_us"].as_f64().unwrap_or(0.0)),
                latency(median["p99_us"].as_f64().unwrap_or(0.0)),
                or_dash(pg("plain", "calls_per_s").map(|v| format!("{v:.1}"))),
                or_dash(pg("plain", "p50_us").map(latency)),
                or_dash(pg("covering", "calls_per_s").map(|v| format!("{v:.1}"))),
                or_dash(pg("covering", "p50_us").map(latency)),
                or_dash(best.map(|b| format!("{:.2}×", calls / b))),
                others,
            );
        }
        let _ = writeln!(out);
    }
    if sizes.len() > 1 {
        let (first, last) = (&sizes[0], &sizes[sizes.len() - 1]);
        let labels = [first, last].map(|s| size_label(s["n"].as_u64().unwrap_or(0)));
        let _ = writeln!(
            out,
            "## Latency growth {} → {}, 1 client (p50)\n",
            labels[0], labels[1]
        );
        let _ = writeln!(out, "| query | annals {0} | annals {1} | growth | PG plain {0} | PG plain {1} | growth | PG covering {0} | PG covering {1} | growth |", labels[0], labels[1]);
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for query in first["queries"].as_array().into_iter().flatten() {
            let name = query["query"].as_str().unwrap_or("");
            if query["clients"].as_u64() != Some(1) {
                continue;
            }
            let p50 = |size: &Value| {
                size["queries"].as_array()?.iter().find(|q| {
                    q["query"].as_str() == Some(name) && q["clients"].as_u64() == Some(1)
                })?["median"]["p50_us"]
                    .as_f64()
            };
            let growth = |a: Option<f64>, b: Option<f64>| {
                or_dash(a.zip(b).map(|(a, b)| format!("{:.2}×", b / a)))
            };
            let mut row = format!("| {name}");
            for (small, large) in [
                (p50(first), p50(last)),
                (
                    pg_metric(first, "plain", name, 1, "p50_us"),
                    pg_metric(last, "plain", name, 1, "p50_us"),
                ),
                (
                    pg_metric(first, "covering", name, 1, "p50_us"),
                    pg_metric(last, "covering", name, 1, "p50_us"),
                ),
            ] {
                let _ = write!(
                    row,
                    " | {} | {} | {}",
                    or_dash(small.map(latency)),
                    or_dash(large.map(latency)),
                    growth(small, large)
                );
            }
            let _ = writeln!(out, "{row} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Commands and times\n");
    let _ = writeln!(
        out,
        "- `{}`: {}",
        result["command"].as_str().unwrap_or(""),
        seconds_text(&result["seconds"])
    );
    for size in &sizes {
        let phases: Vec<String> = ANNALS_PHASES
            .iter()
            .map(|name| {
                let label = name.trim_end_matches("_s").replace('_', " ");
                format!("{label} {}", seconds_text(&size["phases"][name]))
            })
            .collect();
        let _ = writeln!(
            out,
            "  - N = {}: {}",
            size_label(size["n"].as_u64().unwrap_or(0)),
            phases.join(", ")
        );
    }
    if let Some(command) = result["postgres"]["command"].as_str() {
        let _ = writeln!(
            out,
            "- `{command}`: {}",
            seconds_text(&result["postgres"]["seconds"])
        );
        for size in &sizes {
            let postgres = &size["postgres"];
            let mut phases = vec![
                format!(
                    "generate {}",
                    seconds_text(&postgres["phases"]["generate_s"])
                ),
                format!("COPY {}", seconds_text(&postgres["load"]["copy_s"])),
                format!(
                    "primary key {}",
                    seconds_text(&postgres["load"]["primary_key_s"])
                ),
            ];
            for variant in ["plain", "covering"] {
                if postgres["variants"][variant].is_object() {
                    phases.push(format!(
                        "{variant}: indexes + VACUUM ANALYZE {}, check {}, timing {}",
                        seconds_text(&postgres["variants"][variant]["index_s"]),
                        seconds_text(&postgres["phases"][format!("check_{variant}_s")]),
                        seconds_text(&postgres["phases"][format!("timing_{variant}_s")]),
                    ));
                }
            }
            let _ = writeln!(
                out,
                "  - N = {}: {}",
                size_label(size["n"].as_u64().unwrap_or(0)),
                phases.join(", ")
            );
        }
    }
    out
}
