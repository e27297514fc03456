//! The reading side of an import, on a thread of its own: the file streamed
//! line by line, its format told from its first line, each line parsed and
//! filtered, and the results sent on in chunks through a bounded channel —
//! so reading overlaps sending, and memory stays a few chunks whatever the
//! file's size.

use super::row::{root_of, Parsed, Row, Skip};
use super::{countries, gdelt, icews, source, Filters, Format};
use crate::json::from_json;
use crate::proto;
use crate::time::{Instant, ValidTime};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Lines per chunk sent to the importer.
const CHUNK_LINES: usize = 512;

/// What one line of a file is.
#[derive(Debug)]
pub enum Record {
    Row(Box<Row>),
    /// An event of a JSON-lines file.
    Event(Box<proto::Event>),
    Skipped(Skip),
    /// A row outside `--from`/`--to`/`--country`/`--cameo-root`.
    Filtered,
}

/// What the reader sends.
#[derive(Debug)]
pub enum Message {
    /// Records with their line numbers.
    Lines(Vec<(u64, Record)>),
    /// The file cannot be read as asked (it stops the import).
    Failed(String),
}

/// Reads `path` on a new thread, sending what it finds to the returned
/// receiver; its bytes read are counted into `progress`.
pub fn spawn(
    path: PathBuf,
    format: Format,
    filters: Arc<Filters>,
    progress: Arc<AtomicU64>,
) -> mpsc::Receiver<Message> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let name = path.display().to_string();
        let mut reader = Reader {
            format,
            filters: &filters,
            sender: &sender,
            chunk: Vec::with_capacity(CHUNK_LINES),
            line: 0,
            settled: false,
        };
        let result = source::with_text(&path, progress, &mut |text| reader.read(text));
        let failure = match result {
            Ok(()) => reader.flush().err(),
            Err(error) => Some(error),
        };
        if let Some(error) = failure.filter(|error| error.kind() != std::io::ErrorKind::BrokenPipe)
        {
            let _ = sender.blocking_send(Message::Failed(format!("{name}: {error}")));
        }
    });
    receiver
}

struct Reader<'a> {
    /// `Auto` until the first line has told.
    format: Format,
    filters: &'a Filters,
    sender: &'a mpsc::Sender<Message>,
    chunk: Vec<(u64, Record)>,
    line: u64,
    /// Has the first line shown the format?
    settled: bool,
}

/// A failure that ends the reading, as an I/O error.
fn stop(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl Reader<'_> {
    fn read(&mut self, text: &mut dyn BufRead) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            if text.read_until(b'\n', &mut bytes)? == 0 {
                return Ok(());
            }
            self.line += 1;
            let record = match std::str::from_utf8(&bytes) {
                Ok(line) => {
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.trim().is_empty() {
                        continue;
                    }
                    if !self.settled {
                        self.settle_format(line)?;
                        self.settled = true;
                        if self.format == Format::Icews && icews::is_header(line) {
                            continue;
                        }
                    }
                    self.record(line)
                }
                Err(_) => Record::Skipped(Skip {
                    reason: "not UTF-8",
                    detail: "the line is not UTF-8 text".into(),
                }),
            };
            self.chunk.push((self.line, record));
            if self.chunk.len() >= CHUNK_LINES {
                self.flush()?;
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_LINES));
        self.sender
            .blocking_send(Message::Lines(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    /// Tells the format from the first line, or checks it is the one asked
    /// for: a file of another format fails at once, saying what it looks
    /// like (and so does one that looks like none, unless a format was
    /// asked for).
    fn settle_format(&mut self, line: &str) -> std::io::Result<()> {
        let looks = looks_like(line);
        match (self.format, looks) {
            (Format::Auto, Some(format)) => {
                self.format = format;
                Ok(())
            }
            (asked, Some(format)) if asked == format => Ok(()),
            // Asked for a format, and the first line is no other one (a
            // malformed row): its rows are read, and skipped if they are bad.
            (asked, None) if asked != Format::Auto => Ok(()),
            (asked, _) => Err(stop(format!(
                "line {}: this is not {}: it looks like {}",
                self.line,
                asked.description(),
                describe(line, looks)
            ))),
        }
    }

    fn record(&self, line: &str) -> Record {
        match self.format {
            Format::Gdelt | Format::Icews => {
                let parsed = if self.format == Format::Gdelt {
                    gdelt::parse(line)
                } else {
                    icews::parse(line)
                };
                match parsed {
                    Parsed::Row(row) if self.filters.keeps(&row) => Record::Row(row),
                    Parsed::Row(_) => Record::Filtered,
                    Parsed::Skipped(skip) => Record::Skipped(skip),
                }
            }
            Format::Jsonl | Format::Auto => match from_json::<proto::Event>(line) {
                Ok(event) if self.filters.keeps_event(&event) => Record::Event(Box::new(event)),
                Ok(_) => Record::Filtered,
                Err(error) => Record::Skipped(Skip {
                    reason: "not an event in proto3 JSON",
                    detail: error.to_string(),
                }),
            },
        }
    }
}

/// The format a first line shows, if any.
fn looks_like(line: &str) -> Option<Format> {
    if icews::is_header(line) {
        Some(Format::Icews)
    } else if gdelt::looks_like(line) {
        Some(Format::Gdelt)
    } else if line.trim_start().starts_with('{') {
        Some(Format::Jsonl)
    } else {
        None
    }
}

/// What a line looks like, in words.
fn describe(line: &str, looks: Option<Format>) -> String {
    if let Some(format) = looks {
        return format.description().to_string();
    }
    let columns = line.split('\t').count();
    match columns {
        57 | 58 => format!("GDELT 1.0 ({columns} tab-separated columns), which annals does not import"),
        1 => "text that is neither tab-separated nor JSON".to_string(),
        _ => format!(
            "a table of {columns} tab-separated columns, neither GDELT 2.0 ({}) nor ICEWS (no ICEWS header)",
            gdelt::COLUMNS
        ),
    }
}

impl Filters {
    /// Does a coded row pass `--from`, `--to`, `--country` and
    /// `--cameo-root`?
    fn keeps(&self, row: &Row) -> bool {
        let day = ValidTime::parse(&row.day).map(|time| time.earliest());
        self.keeps_instant(day.ok())
            && (self.countries.is_empty() || row.countries().any(|id| self.countries.contains(id)))
            && (self.roots.is_empty() || self.roots.contains(row.root.code))
    }

    /// Does an event of a JSON-lines file pass `--from` and `--to` (by its
    /// start), and `--cameo-root` and `--country` by its labels and
    /// participants?
    fn keeps_event(&self, event: &proto::Event) -> bool {
        let start = event
            .occurred
            .as_ref()
            .and_then(|span| ValidTime::parse(&span.start).ok())
            .map(|time| time.earliest());
        let root = event
            .labels
            .get("cameo_root")
            .and_then(|code| root_of(code))
            .map(|root| root.code);
        self.keeps_instant(start)
            && (self.roots.is_empty() || root.is_some_and(|code| self.roots.contains(code)))
            && (self.countries.is_empty()
                || event.participants.iter().any(|participant| {
                    countries::find(&participant.entity)
                        .is_some_and(|country| self.countries.contains(country.id.as_str()))
                }))
    }

    fn keeps_instant(&self, instant: Option<Instant>) -> bool {
        match (self.from, self.to) {
            (None, None) => true,
            (from, to) => instant.is_some_and(|instant| {
                from.is_none_or(|from| instant >= from) && to.is_none_or(|to| instant <= to)
            }),
        }
    }
}
