//! `annals import`: coded event data (GDELT 2.0, ICEWS) and JSON lines of
//! events, taken in as published and appended through the API like any
//! client's events — never a second write path.
//!
//! A file is read on a thread (`reader`), each row parsed by its format
//! (`gdelt`, `icews`) into a `row::Row`, its sides resolved to entities
//! (`actors`, with the built-in `countries`), and the events sent in
//! batches (`batch`), declarations first. Ids come from the source key and
//! content from the row alone, so an import run twice stores nothing the
//! second time, and an interrupted one is finished by running it again.

pub mod actors;
mod batch;
pub mod countries;
pub mod gdelt;
pub mod icews;
mod reader;
pub mod row;
pub mod source;

use crate::client::Client;
use crate::time::{Instant, ValidTime};
use batch::{Batch, Lost, Origin};
use reader::{Message, Record};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The format of an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Told by the file's first line.
    Auto,
    /// `annals.v1.Event` in proto3 JSON, one per line (as `annals append`).
    Jsonl,
    Gdelt,
    Icews,
}

impl Format {
    /// The format in words, for messages.
    pub fn description(self) -> &'static str {
        match self {
            Format::Auto => "a known format",
            Format::Jsonl => "JSON lines of events",
            Format::Gdelt => "a GDELT 2.0 event export (61 tab-separated columns)",
            Format::Icews => "an ICEWS events file (a tab-separated table with ICEWS's header)",
        }
    }
}

/// Which rows to import.
#[derive(Debug, Default)]
pub struct Filters {
    /// Events from this instant on (their day's start).
    pub from: Option<Instant>,
    /// Events up to this instant.
    pub to: Option<Instant>,
    /// Canonical ids of countries either side must be.
    pub countries: HashSet<String>,
    /// CAMEO root codes (`14`).
    pub roots: HashSet<&'static str>,
}

impl Filters {
    /// The filters of the command line: dates as valid times (`2018`,
    /// `2018-06-01`), countries by code or name, CAMEO roots as numbers.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        countries: &[String],
        roots: &[String],
    ) -> Result<Filters, String> {
        let time = |flag: &str, text: &str| {
            ValidTime::parse(text).map_err(|error| format!("--{flag}: {error}"))
        };
        let mut filters = Filters {
            from: from
                .map(|text| time("from", text))
                .transpose()?
                .map(|t| t.earliest()),
            to: to
                .map(|text| time("to", text))
                .transpose()?
                .map(|t| t.latest()),
            ..Filters::default()
        };
        for text in countries {
            let country = self::countries::find(text).ok_or_else(|| {
                format!("--country: {text:?} is not a country code or name annals knows")
            })?;
            filters.countries.insert(country.id.clone());
        }
        for text in roots {
            let root = row::root_of(text)
                .ok_or_else(|| format!("--cameo-root: {text:?} is not a CAMEO root (01 to 20)"))?;
            filters.roots.insert(root.code);
        }
        Ok(filters)
    }
}

/// How to import.
#[derive(Debug)]
pub struct Options {
    pub format: Format,
    pub filters: Arc<Filters>,
    /// Parse and count only; send nothing.
    pub dry_run: bool,
    /// Events per Append (declarations included).
    pub batch_events: usize,
    /// Encoded bytes per Append, well below the server's request limit.
    pub batch_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            format: Format::Auto,
            filters: Arc::default(),
            dry_run: false,
            batch_events: 1000,
            batch_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Problems named in the summary (each is counted, whatever the number).
const NAMED: usize = 10;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub files: Vec<String>,
    /// Data lines read (headers and blank lines are not rows).
    pub rows: u64,
    /// Rows stored now (with `--dry-run`: rows that would be sent).
    pub imported: u64,
    /// Rows whose event the log had already.
    pub already_present: u64,
    /// Rows whose id the log has with other content: reported, never
    /// overwritten.
    pub conflicts: u64,
    /// Rows the server refused for another reason.
    pub refused: u64,
    /// Rows outside the filters.
    pub filtered: u64,
    /// Malformed rows, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Entities the import declared.
    pub declared: u64,
    /// The first malformed rows, as `file:line: why`.
    pub first_skipped: Vec<String>,
    /// The first conflicts and refusals, as `file:line: event: why`.
    pub problems: Vec<String>,
    /// Why the import stopped before the end, if it did.
    pub stopped: Option<String>,
    pub dry_run: bool,
}

impl Summary {
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Did every row that should be stored get stored?
    pub fn is_complete(&self) -> bool {
        self.conflicts == 0 && self.refused == 0 && self.stopped.is_none()
    }

    fn skip(&mut self, file: &str, line: u64, skip: row::Skip) {
        *self.skipped.entry(skip.reason.to_string()).or_default() += 1;
        if self.first_skipped.len() < NAMED {
            self.first_skipped
                .push(format!("{file}:{line}: {}: {}", skip.reason, skip.detail));
        }
    }

    fn conflict(&mut self, what: String) {
        self.conflicts += 1;
        self.name_problem(what);
    }

    fn refusal(&mut self, what: String) {
        self.refused += 1;
        self.name_problem(what);
    }

    fn name_problem(&mut self, what: String) {
        if self.problems.len() < NAMED {
            self.problems.push(what);
        }
    }

    /// The summary as JSON (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "files": self.files,
            "rows": self.rows,
            "imported": self.imported,
            "already_present": self.already_present,
            "conflicts": self.conflicts,
            "refused": self.refused,
            "filtered": self.filtered,
            "skipped": self.skipped_rows(),
            "skipped_by_reason": self.skipped,
            "declared": self.declared,
            "first_skipped": self.first_skipped,
            "problems": self.problems,
            "stopped": self.stopped,
            "dry_run": self.dry_run,
        })
    }
}

/// Counts bytes read across files, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the current file read so far.
    pub bytes: Arc<AtomicU64>,
    /// Rows read so far, over every file.
    pub rows: AtomicU64,
}

/// Imports `paths` in order through `client` (none for a dry run).
/// Malformed rows are skipped and counted; conflicts and refusals are
/// reported; a server that goes away stops the import, and the summary
/// says how far it got. `on_file` is told when each file starts.
pub async fn import(
    mut client: Option<&mut Client>,
    paths: &[PathBuf],
    options: &Options,
    progress: &Progress,
    on_file: &mut dyn FnMut(&PathBuf),
) -> Result<Summary, String> {
    let mut summary = Summary {
        dry_run: options.dry_run,
        ..Summary::default()
    };
    let mut actors = actors::Actors::default();
    for path in paths {
        on_file(path);
        let file = path.display().to_string();
        summary.files.push(file.clone());
        progress.bytes.store(0, Ordering::Relaxed);
        let mut lines = reader::spawn(
            path.clone(),
            options.format,
            options.filters.clone(),
            progress.bytes.clone(),
        );
        let mut batch = Batch::default();
        while let Some(message) = lines.recv().await {
            let records = match message {
                Message::Lines(records) => records,
                Message::Failed(reason) => return Err(reason),
            };
            for (line, record) in records {
                summary.rows += 1;
                progress.rows.fetch_add(1, Ordering::Relaxed);
                let event = match record {
                    Record::Skipped(skip) => {
                        summary.skip(&file, line, skip);
                        continue;
                    }
                    Record::Filtered => {
                        summary.filtered += 1;
                        continue;
                    }
                    _ if options.dry_run => {
                        summary.imported += 1;
                        continue;
                    }
                    Record::Event(event) => *event,
                    Record::Row(row) => {
                        let client = client.as_deref_mut().expect("a client unless dry run");
                        let resolved = match actors.resolve(client, &row).await {
                            Ok(resolved) => resolved,
                            Err(status) => {
                                summary.stopped = Some(format!(
                                    "{file}:{line}: {:?}: {}",
                                    status.code(),
                                    status.message()
                                ));
                                return Ok(summary);
                            }
                        };
                        for declaration in resolved.declarations {
                            batch.push(declaration, Origin::Declaration, &file, &mut summary);
                        }
                        row.event(resolved.participants)
                    }
                };
                batch.push(event, Origin::Line(line), &file, &mut summary);
                if batch.len() >= options.batch_events || batch.bytes() >= options.batch_bytes {
                    let full = std::mem::take(&mut batch);
                    let client = client.as_deref_mut().expect("a client unless dry run");
                    if let Err(Lost(reason)) = full.send(client, &file, &mut summary).await {
                        summary.stopped = Some(reason);
                        return Ok(summary);
                    }
                }
            }
        }
        if !batch.is_empty() {
            let client = client.as_deref_mut().expect("a client unless dry run");
            if let Err(Lost(reason)) = batch.send(client, &file, &mut summary).await {
                summary.stopped = Some(reason);
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}
