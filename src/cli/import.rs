//! `annals import FILE…`: coded event data or JSON lines of events through
//! Append, with a progress bar on a terminal and a summary at the end.

use super::Outcome;
use crate::client::Client;
use crate::import::{self, Filters, Format, Options, Progress, Summary};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files to import: plain, .zip or .gz.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The files' format (auto: told by their names and columns).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Only events on or after this date (2018, 2018-06, 2018-06-01).
    #[arg(long)]
    from: Option<String>,
    /// Only events on or before this date.
    #[arg(long)]
    to: Option<String>,
    /// Only events with this country on either side (code or name; comma-separated).
    #[arg(long, value_delimiter = ',')]
    country: Vec<String>,
    /// Only events of these CAMEO roots (comma-separated, e.g. 14,19).
    #[arg(long, value_delimiter = ',')]
    cameo_root: Vec<String>,
    /// Parse and count, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Events per Append call (each call is atomic).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Auto,
    Jsonl,
    Gdelt,
    Icews,
}

impl ImportArgs {
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    fn options(&self) -> Result<Options, String> {
        let filters = Filters::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            &self.country,
            &self.cameo_root,
        )?;
        Ok(Options {
            format: match self.format {
                FormatArg::Auto => Format::Auto,
                FormatArg::Jsonl => Format::Jsonl,
                FormatArg::Gdelt => Format::Gdelt,
                FormatArg::Icews => Format::Icews,
            },
            filters: Arc::new(filters),
            dry_run: self.dry_run,
            batch_events: self.batch as usize,
            ..Options::default()
        })
    }
}

/// Runs the import (no client for a dry run) and prints its summary. Exits
/// non-zero when a row could not be stored.
pub async fn run(client: Option<&mut Client>, args: ImportArgs, json: bool) -> Outcome {
    let options = args.options()?;
    let progress = Arc::new(Progress::default());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}")
            .map_err(|error| error.to_string())?
            .progress_chars("=> "),
    );
    let ticker = {
        let bar = bar.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let rows = progress.rows.load(Ordering::Relaxed);
                let rate = rows as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_position(progress.bytes.load(Ordering::Relaxed));
                bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
            }
        })
    };
    let mut on_file = |path: &PathBuf| {
        bar.set_length(import::source::size(path).unwrap_or(0));
        bar.set_position(0);
        bar.set_prefix(path.display().to_string());
    };
    let outcome = import::import(client, &args.files, &options, &progress, &mut on_file).await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = outcome?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&summary.to_json()).map_err(|error| error.to_string())?
        );
    } else {
        print_summary(&summary);
    }
    if let Some(reason) = &summary.stopped {
        return Err(format!(
            "the import stopped after {} rows: {reason}; run it again to finish (rows already stored are recognised)",
            summary.rows
        ));
    }
    if !summary.is_complete() {
        return Err(format!(
            "{} rows could not be stored ({} conflicts, {} refused)",
            summary.conflicts + summary.refused,
            summary.conflicts,
            summary.refused
        ));
    }
    Ok(())
}

fn print_summary(summary: &Summary) {
    let mut rows = vec![
        ("rows read", summary.rows),
        (
            if summary.dry_run {
                "would import"
            } else {
                "imported"
            },
            summary.imported,
        ),
    ];
    if !summary.dry_run {
        rows.push(("already present", summary.already_present));
        rows.push(("conflicts", summary.conflicts));
        rows.push(("refused", summary.refused));
    }
    rows.push(("filtered out", summary.filtered));
    rows.push(("skipped", summary.skipped_rows()));
    if !summary.dry_run {
        rows.push(("entities declared", summary.declared));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let digits = rows
        .iter()
        .map(|(_, count)| count.to_string().len())
        .max()
        .unwrap_or(1);
    for (name, count) in rows {
        out!("{name:<width$}  {count:>digits$}");
    }
    for (reason, count) in &summary.skipped {
        out!("  skipped, {reason}: {count}");
    }
    for line in &summary.first_skipped {
        out!("  {line}");
    }
    for problem in &summary.problems {
        out!("  {problem}");
    }
    if summary.dry_run {
        out!("(dry run: nothing was sent)");
    }
}
