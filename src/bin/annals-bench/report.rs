//! The result file (JSON) and its markdown rendering.

use serde_json::{json, Value};

/// What the benchmark ran on.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split(':').nth(1))
        .map_or_else(|| "unknown".to_string(), |model| model.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu,
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "os": std::env::consts::OS,
    })
}

/// 12345.6 → "12,346".
pub fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn size_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

pub fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn find<'a>(list: &'a Value, key: &str, name: &str, clients: u64) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|item| item[key].as_str() == Some(name) && item["clients"].as_u64() == Some(clients))
}

pub fn metric(list: &Value, key: &str, name: &str, clients: u64, field: &str) -> Option<f64> {
    find(list, key, name, clients)?["median"][field].as_f64()
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_string())
}

/// The headline table: one row per size, the figures WORKLOAD.md's
/// PostgreSQL tables have.
pub fn summary_table(sizes: &[Value]) -> String {
    let empty = Value::Array(Vec::new());
    let mut out = String::from(
        "| N | Q1 1 client | Q1 8 | Q2 (state) 8 | Q3 8 | Q4 8 | Q1 hottest, 1 client | \
         appends 1 / 16 / 64 clients | 1,000-event batches |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for size in sizes {
        let queries = size.get("queries").unwrap_or(&empty);
        let appends = size.get("appends").unwrap_or(&empty);
        let tps = |name: &str, clients: u64| {
            or_dash(metric(queries, "question", name, clients, "calls_per_s").map(thousands))
        };
        let hot = or_dash(metric(queries, "question", "q1_hot", 1, "mean_us").map(latency));
        let single = |clients: u64| {
            or_dash(metric(appends, "kind", "single", clients, "calls_per_s").map(thousands))
        };
        let batches = or_dash(
            metric(appends, "kind", "batch_1000", 1, "items_per_s")
                .map(|v| format!("{} events/s", thousands(v))),
        );
        out.push_str(&format!(
            "| {} | {} calls/s | {} | {} | {} | {} | {} | {} / {} / {} per s | {} |\n",
            size_label(size["n"].as_u64().unwrap_or(0)),
            tps("q1", 1),
            tps("q1", 8),
            tps("q2", 8),
            tps("q3", 8),
            tps("q4", 8),
            hot,
            single(1),
            single(16),
            single(64),
            batches,
        ));
    }
    out
}

/// Every measurement with its latencies.
pub fn latency_table(sizes: &[Value]) -> String {
    let mut out = String::from(
        "| N | measurement | clients | calls/s | mean | p50 | p99 |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for size in sizes {
        let label = size_label(size["n"].as_u64().unwrap_or(0));
        let rows = size
            .get("queries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|row| (row["question"].as_str().unwrap_or("?").to_string(), row))
            .chain(
                size.get("appends")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|row| {
                        (
                            format!("append {}", row["kind"].as_str().unwrap_or("?")),
                            row,
                        )
                    }),
            );
        for (name, row) in rows {
            let median = &row["median"];
            out.push_str(&format!(
                "| {label} | {name} | {} | {} | {} | {} | {} |\n",
                row["clients"],
                thousands(median["calls_per_s"].as_f64().unwrap_or(0.0)),
                latency(median["mean_us"].as_f64().unwrap_or(0.0)),
                latency(median["p50_us"].as_f64().unwrap_or(0.0)),
                latency(median["p99_us"].as_f64().unwrap_or(0.0)),
            ));
        }
    }
    out
}

/// annals ÷ PostgreSQL for each headline figure (> 1: annals does more per
/// second; for the hottest entity, PostgreSQL's latency ÷ annals').
pub fn ratio_table(annals: &[Value], postgres: &[Value]) -> String {
    let empty = Value::Array(Vec::new());
    let mut out = String::from(
        "| N | Q1 1 client | Q1 8 | Q2 (state) 8 | Q3 8 | Q4 8 | Q1 hottest, 1 client | \
         appends 1 / 16 / 64 clients | 1,000-event batches |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_string(),
    };
    for ours in annals {
        let n = ours["n"].as_u64();
        let Some(theirs) = postgres.iter().find(|size| size["n"].as_u64() == n) else {
            continue;
        };
        let figure =
            |size: &Value, list: &str, key: &str, name: &str, clients: u64, field: &str| {
                metric(size.get(list).unwrap_or(&empty), key, name, clients, field)
            };
        let tps = |name: &str, clients: u64| {
            ratio(
                figure(ours, "queries", "question", name, clients, "calls_per_s"),
                figure(theirs, "queries", "question", name, clients, "calls_per_s"),
            )
        };
        let single = |clients: u64| {
            ratio(
                figure(ours, "appends", "kind", "single", clients, "calls_per_s"),
                figure(theirs, "appends", "kind", "single", clients, "calls_per_s"),
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} |\n",
            size_label(n.unwrap_or(0)),
            tps("q1", 1),
            tps("q1", 8),
            tps("q2", 8),
            tps("q3", 8),
            tps("q4", 8),
            ratio(
                figure(theirs, "queries", "question", "q1_hot", 1, "mean_us"),
                figure(ours, "queries", "question", "q1_hot", 1, "mean_us"),
            ),
            single(1),
            single(16),
            single(64),
            ratio(
                figure(ours, "appends", "kind", "batch_1000", 1, "items_per_s"),
                figure(theirs, "appends", "kind", "batch_1000", 1, "items_per_s"),
            ),
        ));
    }
    out
}

/// The markdown tables for an annals-bench result file.
pub fn markdown(result: &Value) -> String {
    let mut out = String::new();
    let machine = &result["machine"];
    let settings = &result["settings"];
    out.push_str(&format!(
        "annals-bench, workload `tl-synth-v1`: {} CPUs ({}), {} GiB RAM, Linux {}; \
         server and clients on the same machine, gRPC over loopback TCP; \
         {} s per measurement, median of {} interleaved round(s); server {}.\n\n",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        settings["seconds"],
        settings["rounds"],
        result["git_commit"].as_str().unwrap_or("?"),
    ));
    out.push_str("Command: `");
    out.push_str(result["command"].as_str().unwrap_or("annals-bench"));
    out.push_str("`\n\n");
    let sizes = result["sizes"].as_array().cloned().unwrap_or_default();
    out.push_str(&summary_table(&sizes));
    out.push_str(
        "\nQ1-hottest is the mean latency of one call; appends are acknowledged only when durable.\n\n",
    );
    out.push_str(
        "| N | load (1,000-event Appends) | events/s | bytes on disk per event | \
         shutdown | reopen to first answer | server RSS after queries (peak) | answers checked |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for size in &sizes {
        let gate = &size["gate"];
        out.push_str(&format!(
            "| {} | {:.2} s | {} | {} | {:.2} s | {:.2} s | {} | {} ({} wrong) |\n",
            size_label(size["n"].as_u64().unwrap_or(0)),
            size["load"]["seconds"].as_f64().unwrap_or(0.0),
            thousands(size["load"]["events_per_s"].as_f64().unwrap_or(0.0)),
            thousands(size["bytes_per_event"].as_f64().unwrap_or(0.0)),
            size["shutdown_seconds"].as_f64().unwrap_or(0.0),
            size["reopen_seconds"].as_f64().unwrap_or(0.0),
            match size["rss_kib"].as_u64() {
                Some(rss) => format!(
                    "{:.0} MiB ({:.0} MiB)",
                    rss as f64 / 1024.0,
                    size["peak_rss_kib"].as_u64().unwrap_or(0) as f64 / 1024.0
                ),
                None => "–".to_string(),
            },
            thousands(gate["checked"].as_f64().unwrap_or(0.0)),
            gate["failed"].as_u64().unwrap_or(0),
        ));
    }
    out.push('\n');
    out.push_str(&latency_table(&sizes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(size_label(100_000), "100k");
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(2000), "2k");
    }
}
