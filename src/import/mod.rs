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
use crate::proto;
use crate::time::{Instant, ValidTime};
use batch::{Batch, Lost, Origin};
use reader::{Message, Record};
use std::collections::{BTreeMap, HashMap, HashSet};
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

    /// Adds what one batch's sending counted.
    fn absorb(&mut self, other: Summary) {
        self.imported += other.imported;
        self.already_present += other.already_present;
        self.conflicts += other.conflicts;
        self.refused += other.refused;
        self.declared += other.declared;
        for problem in other.problems {
            self.name_problem(problem);
        }
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
///
/// One batch is sent while the next is read and built: the next is sent
/// only once the one before is stored, so declarations are always in the
/// log before the rows that name them.
pub async fn import(
    client: Option<&mut Client>,
    paths: &[PathBuf],
    options: &Options,
    progress: &Progress,
    on_file: &mut dyn FnMut(&PathBuf),
) -> Result<Summary, String> {
    let mut summary = Summary {
        dry_run: options.dry_run,
        ..Summary::default()
    };
    let mut actors = match &client {
        Some(client) => {
            let mut client = (*client).clone();
            let entities = client
                .entities(crate::proto::EntityType::Unspecified, "", 0)
                .await
                .map_err(|status| {
                    format!(
                        "listing the log's entities: {:?}: {}",
                        status.code(),
                        status.message()
                    )
                })?;
            actors::Actors::new(&entities)
        }
        None => actors::Actors::default(),
    };
    let mut sender = client.map(|client| Sender {
        client: client.clone(),
        in_flight: Default::default(),
        declarations: HashMap::new(),
    });
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
                Message::Failed(reason) => {
                    if let Some(sender) = &mut sender {
                        sender.finish(&mut summary).await;
                    }
                    return Err(reason);
                }
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
                        let resolved = actors.resolve(&row);
                        for declaration in resolved.declarations {
                            if let Some(sender) = &mut sender {
                                sender.remember(&declaration);
                            }
                            batch.push(declaration, Origin::Declaration, &file, &mut summary);
                        }
                        row.into_event(resolved.participants)
                    }
                };
                batch.push(event, Origin::Line(line), &file, &mut summary);
                if batch.len() >= options.batch_events || batch.bytes() >= options.batch_bytes {
                    let full = std::mem::take(&mut batch);
                    if let Some(sender) = &mut sender {
                        if !sender.send(full, &file, &mut summary).await {
                            return Ok(summary);
                        }
                    }
                }
            }
        }
        if let Some(sender) = &mut sender {
            if !batch.is_empty() && !sender.send(batch, &file, &mut summary).await {
                return Ok(summary);
            }
            if !sender.finish(&mut summary).await {
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}

/// Batches sent and not yet answered, at most this many: the server
/// commits them together while the importer builds the next.
const IN_FLIGHT: usize = 2;

/// A batch on its way: its sending task, and the entities it declares.
struct Flight {
    task: tokio::task::JoinHandle<(Summary, Result<(), Lost>)>,
    declares: HashSet<String>,
}

/// Sends batches while the next ones are being built. A batch that names
/// an entity declared by one still on its way declares it again (the
/// importer's own declarations), or waits for that one first (a file's),
/// so declarations are in the log before the rows that name them.
struct Sender {
    client: Client,
    in_flight: std::collections::VecDeque<Flight>,
    /// The declarations this import made, by entity.
    declarations: HashMap<String, proto::Event>,
}

impl Sender {
    /// Keeps a declaration the importer made, to declare again in a later
    /// batch while the first is on its way.
    fn remember(&mut self, declaration: &proto::Event) {
        for effect in &declaration.effects {
            if let Some(proto::effect::Change::Declare(declare)) = &effect.change {
                self.declarations
                    .insert(declare.id.clone(), declaration.clone());
            }
        }
    }

    /// Sends `batch` once the batches it depends on are stored (and there
    /// is room). `false` when the import must stop (the summary says why).
    async fn send(&mut self, mut batch: Batch, file: &str, summary: &mut Summary) -> bool {
        if batch.corrects() && !self.finish(summary).await {
            return false;
        }
        // An entity the importer declared in a batch still on its way is
        // declared again in this one (the same event: whichever is stored
        // second finds it present), so this batch need not wait.
        let copies: Vec<proto::Event> = batch
            .named()
            .iter()
            .filter(|entity| !batch.declared().contains(*entity))
            .filter(|entity| {
                self.in_flight
                    .iter()
                    .any(|flight| flight.declares.contains(*entity))
            })
            .filter_map(|entity| self.declarations.get(entity).cloned())
            .collect();
        batch.prepend_declarations(copies, file);
        let names = batch.named();
        while let Some(position) = self.in_flight.iter().rposition(|flight| {
            flight
                .declares
                .iter()
                .any(|entity| names.contains(entity) && !batch.declared().contains(entity))
        }) {
            for _ in 0..=position {
                if !self.land(summary).await {
                    return false;
                }
            }
        }
        while self.in_flight.len() >= IN_FLIGHT {
            if !self.land(summary).await {
                return false;
            }
        }
        let mut client = self.client.clone();
        let file = file.to_string();
        let declares = batch.declared().clone();
        let task = tokio::spawn(async move {
            let mut counted = Summary::default();
            let sent = batch.send(&mut client, &file, &mut counted).await;
            (counted, sent)
        });
        self.in_flight.push_back(Flight { task, declares });
        true
    }

    /// Waits for every batch on its way. `false` when one could not be
    /// stored.
    async fn finish(&mut self, summary: &mut Summary) -> bool {
        while !self.in_flight.is_empty() {
            if !self.land(summary).await {
                return false;
            }
        }
        true
    }

    /// Waits for the oldest batch on its way and counts it in.
    async fn land(&mut self, summary: &mut Summary) -> bool {
        let Some(flight) = self.in_flight.pop_front() else {
            return true;
        };
        match flight.task.await {
            Ok((counted, sent)) => {
                summary.absorb(counted);
                if let Err(Lost(reason)) = sent {
                    summary.stopped = Some(reason);
                    return false;
                }
                true
            }
            Err(error) => {
                summary.stopped = Some(format!("sending a batch failed: {error}"));
                false
            }
        }
    }
}
