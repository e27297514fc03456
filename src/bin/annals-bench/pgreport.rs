//! `pg-report`: turns the measurements bench/postgres/run.sh collects (a
//! TSV of pgbench runs) into the same JSON and tables as annals-bench, and,
//! given an annals result file, the ratios side by side.

use crate::measure::Stats;
use crate::report;
use crate::Res;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// (variant, n) → what was measured.
#[derive(Default)]
struct Size {
    load: Option<(f64, f64, f64, u64)>,
    /// (kind, name, clients) → one Stats per round, in round order.
    measurements: BTreeMap<(String, String, u64), Vec<Stats>>,
    /// First-seen order of (kind, name, clients).
    order: Vec<(String, String, u64)>,
}

fn field<T: std::str::FromStr>(fields: &[&str], index: usize, line: &str) -> Res<T> {
    fields
        .get(index)
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| format!("bad field {index} in line {line:?}").into())
}

pub struct Options<'a> {
    pub tsv: &'a Path,
    pub out: &'a Path,
    pub annals: Option<&'a Path>,
    pub seconds: f64,
    pub rounds: usize,
    pub server: &'a str,
    pub command: &'a str,
}

pub fn run(options: &Options) -> Res<()> {
    let text = std::fs::read_to_string(options.tsv)?;
    let mut sizes: BTreeMap<(String, u64), Size> = BTreeMap::new();
    // Variants in the order they were measured.
    let mut variant_order: Vec<String> = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() > 1 && !variant_order.iter().any(|v| v == fields[1]) {
            variant_order.push(fields[1].to_string());
        }
        match fields[0] {
            // load variant n seconds bytes reopen_seconds checked
            "load" => {
                let size = sizes
                    .entry((fields[1].to_string(), field(&fields, 2, line)?))
                    .or_default();
                size.load = Some((
                    field(&fields, 3, line)?,
                    field(&fields, 4, line)?,
                    field(&fields, 5, line)?,
                    field(&fields, 6, line)?,
                ));
            }
            // measure variant n kind name clients round tps items_per_s mean p50 p99
            "measure" => {
                let size = sizes
                    .entry((fields[1].to_string(), field(&fields, 2, line)?))
                    .or_default();
                let key = (
                    fields[3].to_string(),
                    fields[4].to_string(),
                    field(&fields, 5, line)?,
                );
                let tps: f64 = field(&fields, 7, line)?;
                let stats = Stats {
                    calls: (tps * options.seconds) as u64,
                    seconds: options.seconds,
                    calls_per_s: tps,
                    items_per_s: field(&fields, 8, line)?,
                    mean_us: field(&fields, 9, line)?,
                    p50_us: field(&fields, 10, line)?,
                    p99_us: field(&fields, 11, line)?,
                    max_us: 0.0,
                };
                if !size.order.contains(&key) {
                    size.order.push(key.clone());
                }
                size.measurements.entry(key).or_default().push(stats);
            }
            other => {
                return Err(format!("unknown record {other:?} in {}", options.tsv.display()).into())
            }
        }
    }

    let mut variants: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let variant_order: Vec<Value> = variant_order.into_iter().map(Value::from).collect();
    for ((variant, n), size) in &sizes {
        let mut queries = Vec::new();
        let mut appends = Vec::new();
        for key in &size.order {
            let rounds = &size.measurements[key];
            let (kind, name, clients) = key;
            let mut row = json!({
                "clients": clients,
                "median": Stats::median(rounds).to_json(),
                "rounds": rounds.iter().map(Stats::to_json).collect::<Vec<_>>(),
            });
            if kind == "query" {
                row["question"] = json!(name);
                queries.push(row);
            } else {
                row["kind"] = json!(name);
                appends.push(row);
            }
        }
        let mut entry = json!({ "n": n, "queries": queries, "appends": appends });
        if let Some((seconds, bytes, reopen, checked)) = size.load {
            entry["load"] = json!({
                "seconds": seconds,
                "events_per_s": crate::measure::round3(*n as f64 / seconds),
                "what": "COPY + keys + indexes + VACUUM ANALYZE",
            });
            entry["relation_bytes"] = json!(bytes);
            entry["bytes_per_event"] = json!(crate::measure::round3(bytes / *n as f64));
            entry["reopen_seconds"] = json!(reopen);
            entry["gate"] = json!({ "checked": checked, "failed": 0 });
        }
        variants.entry(variant.clone()).or_default().push(entry);
    }
    let result = json!({
        "benchmark": "bench/postgres/run.sh",
        "workload": "tl-synth-v1",
        "server": options.server,
        "command": options.command,
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": report::machine(),
        "settings": { "seconds": options.seconds, "rounds": options.rounds },
        "variant_order": variant_order,
        "variants": variants,
    });
    let annals: Option<Value> = match options.annals {
        Some(path) => Some(serde_json::from_str(
            &std::fs::read_to_string(path)
                .map_err(|error| format!("reading {}: {error}", path.display()))?,
        )?),
        None => None,
    };
    let table = markdown(&result, annals.as_ref());
    if let Some(parent) = options.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(options.out, serde_json::to_string_pretty(&result)? + "\n")?;
    std::fs::write(options.out.with_extension("md"), &table)?;
    println!("{table}");
    eprintln!(
        "wrote {} and {}",
        options.out.display(),
        options.out.with_extension("md").display()
    );
    if let Some(annals) = &annals {
        let chart = options.out.with_extension("svg");
        crate::chart::growth(&chart, annals, &result)?;
        eprintln!("wrote {}", chart.display());
    }
    Ok(())
}

fn markdown(result: &Value, annals: Option<&Value>) -> String {
    let machine = &result["machine"];
    let mut out = format!(
        "PostgreSQL, workload `tl-synth-v1`: {} ({} CPUs, {}, {} GiB RAM); pgbench with \
         prepared statements on the same machine; {} s per measurement, median of {} \
         interleaved round(s).\n\nCommand: `{}`\n",
        result["server"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        result["settings"]["seconds"],
        result["settings"]["rounds"],
        result["command"].as_str().unwrap_or("?"),
    );
    let empty = Vec::new();
    for variant in result["variant_order"].as_array().unwrap_or(&empty) {
        let variant = variant.as_str().unwrap_or("?");
        let sizes = result["variants"][variant]
            .as_array()
            .cloned()
            .unwrap_or_default();
        out.push_str(&format!("\n### PostgreSQL, {variant} indexes\n\n"));
        out.push_str(&report::summary_table(&sizes));
        out.push_str(
            "\n| N | load (COPY + keys + indexes + VACUUM ANALYZE) | bytes per event (tables + indexes) | \
             reopen to first answer | SQL answers checked |\n|---|---:|---:|---:|---:|\n",
        );
        for size in &sizes {
            out.push_str(&format!(
                "| {} | {:.2} s | {} | {:.2} s | {} (0 wrong) |\n",
                report::size_label(size["n"].as_u64().unwrap_or(0)),
                size["load"]["seconds"].as_f64().unwrap_or(0.0),
                report::thousands(size["bytes_per_event"].as_f64().unwrap_or(0.0)),
                size["reopen_seconds"].as_f64().unwrap_or(0.0),
                report::thousands(size["gate"]["checked"].as_f64().unwrap_or(0.0)),
            ));
        }
        out.push('\n');
        out.push_str(&report::latency_table(&sizes));
        if let Some(annals) = annals {
            let ours = annals["sizes"].as_array().cloned().unwrap_or_default();
            out.push_str(&format!(
                "\n#### annals ÷ PostgreSQL ({variant} indexes)\n\n\
                 Throughput ratios (> 1: annals serves more per second); for the hottest \
                 entity, PostgreSQL's mean latency ÷ annals' (> 1: annals answers sooner). \
                 annals: `{}` at {}.\n\n",
                annals["command"].as_str().unwrap_or("?"),
                annals["git_commit"].as_str().unwrap_or("?"),
            ));
            out.push_str(&report::ratio_table(&ours, &sizes));
        }
    }
    if let Some(annals) = annals {
        out.push_str("\n### annals (from the result file given)\n\n");
        out.push_str(&report::summary_table(
            &annals["sizes"].as_array().cloned().unwrap_or_default(),
        ));
    }
    out
}
