//! Event runs: compact in-memory copies of the event keys under one prefix
//! of `mentions` or `dyads` (an entity's events, a dyad's), for the walks
//! that read a whole history — the counts of a trend. An accelerator like
//! the timeline cache: a walk with no run reads the store, and the answer
//! is the same.
//!
//! A run is exact for every seq up to the one it was built at (`built_at`,
//! a durable seq: every derived write up to it is in the store). The writer
//! drops the run of every prefix a round writes to before it writes, so a
//! run in the cache also holds every later event of its prefix: none came.
//! A run built while a round was on its way (the round may have written to
//! the prefix before the build registered itself) serves its own query but
//! is not kept.

use super::records::{number, Cell, EventValue, Fact, FactValue, FACT_LABELS};
use crate::error::Result;
use crate::metrics::CacheLookups;
use crate::store::{Tree, Write};
use crate::time::Instant;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One event of a run.
#[derive(Clone, Copy, Debug)]
struct Item {
    earliest: Instant,
    seq: u64,
    latest: Instant,
    /// Position of the kind in `Run::kinds`.
    kind: u16,
    /// The event's encoded facts: `Run::facts[start..end]`.
    facts: (u32, u32),
}

/// The events under one prefix, by (earliest, seq).
#[derive(Debug, Default)]
pub struct Run {
    items: Vec<Item>,
    kinds: Vec<String>,
    facts: Vec<u8>,
    /// `FACT_LABELS.len()` cells per item: its facts looked up, so that a
    /// filter or a sum reads a cell instead of parsing the encoded facts.
    cells: Vec<Cell>,
    /// The facts' distinct values, with the numbers they read as.
    values: Vec<FactValue>,
    /// Per fact, when it has few distinct values (a code, a class; not a
    /// tone) and every item's is beside its key: the positions of the items
    /// holding each value, ascending, so that a walk filtering on it visits
    /// only those.
    postings: Vec<Option<Postings>>,
    built_at: u64,
}

/// A fact's values in a run, each with the positions of the items holding
/// it.
type Postings = Vec<(Cell, Vec<u32>)>;

/// A fact with more distinct values than this in a run gets no postings.
const MAX_POSTED_VALUES: usize = 256;

impl Run {
    /// Bytes the run holds.
    fn size(&self) -> usize {
        self.items.len() * std::mem::size_of::<Item>()
            + self.facts.len()
            + self.cells.len() * std::mem::size_of::<Cell>()
            + self
                .values
                .iter()
                .map(|value| value.text.len() + 40)
                .sum::<usize>()
            + self.kinds.iter().map(|kind| kind.len() + 24).sum::<usize>()
            + self
                .postings
                .iter()
                .flatten()
                .flatten()
                .map(|(_, items)| items.len() * 4 + 32)
                .sum::<usize>()
            + 64
    }

    /// The seq it is exact up to.
    pub fn built_at(&self) -> u64 {
        self.built_at
    }

    /// Calls `visit` with each event whose earliest instant is in
    /// `[from, to]`, in (earliest, seq) order, until it returns `false`.
    /// With `only` (a fact's position and a value) it may leave out events
    /// whose fact is another value: those a filter on it would refuse.
    pub fn visit(
        &self,
        (from, to): (Instant, Instant),
        only: Option<(usize, &str)>,
        visit: &mut dyn FnMut(Instant, u64, EventValue) -> Result<bool>,
    ) -> Result<()> {
        let posted = only.and_then(|(position, wanted)| {
            let postings = self.postings.get(position)?.as_ref()?;
            Some(
                postings
                    .iter()
                    .find(|(cell, _)| self.values[cell.0 as usize - 1].text == wanted)
                    .map_or(&[][..], |(_, items)| items.as_slice()),
            )
        });
        let item = |position: usize| -> Result<Option<(Instant, u64, EventValue)>> {
            let item = &self.items[position];
            if item.earliest > to {
                return Ok(None);
            }
            let width = FACT_LABELS.len();
            let facts = &self.facts[item.facts.0 as usize..item.facts.1 as usize];
            let cells = &self.cells[position * width..(position + 1) * width];
            let value = EventValue::from_parts(item.latest, &self.kinds[item.kind as usize], facts)
                .with_cells(cells, &self.values);
            Ok(Some((item.earliest, item.seq, value)))
        };
        match posted {
            Some(posted) => {
                let first = posted.partition_point(|&at| self.items[at as usize].earliest < from);
                for &at in &posted[first..] {
                    let Some((earliest, seq, value)) = item(at as usize)? else {
                        break;
                    };
                    if !visit(earliest, seq, value)? {
                        break;
                    }
                }
            }
            None => {
                let first = self.items.partition_point(|item| item.earliest < from);
                for position in first..self.items.len() {
                    let Some((earliest, seq, value)) = item(position)? else {
                        break;
                    };
                    if !visit(earliest, seq, value)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Builds a run from the keys of a prefix, in key order.
#[derive(Debug, Default)]
pub struct RunBuilder {
    run: Run,
    kinds: HashMap<String, u16>,
    values: HashMap<String, u32>,
}

impl RunBuilder {
    pub fn new(built_at: u64) -> RunBuilder {
        RunBuilder {
            run: Run {
                built_at,
                ..Run::default()
            },
            kinds: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// Adds an event (events past `built_at` are left out).
    pub fn push(&mut self, earliest: Instant, seq: u64, value: &EventValue) -> Result<()> {
        if seq > self.run.built_at {
            return Ok(());
        }
        for position in 0..FACT_LABELS.len() {
            let cell = match value.fact_at(Some(position))? {
                Fact::Absent => Cell::ABSENT,
                Fact::InTheLog => Cell::IN_THE_LOG,
                Fact::Value(text) => match self.values.get(text) {
                    Some(at) => Cell(*at),
                    None => {
                        self.run.values.push(FactValue {
                            text: text.to_string(),
                            number: number(text),
                        });
                        let at = self.run.values.len() as u32;
                        self.values.insert(text.to_string(), at);
                        Cell(at)
                    }
                },
            };
            self.run.cells.push(cell);
        }
        let kind = match self.kinds.get(value.kind) {
            Some(kind) => *kind,
            None => {
                let kind = self.run.kinds.len().min(u16::MAX as usize) as u16;
                self.run.kinds.push(value.kind.to_string());
                self.kinds.insert(value.kind.to_string(), kind);
                kind
            }
        };
        let start = self.run.facts.len() as u32;
        self.run.facts.extend_from_slice(value.facts());
        self.run.items.push(Item {
            earliest,
            seq,
            latest: value.latest,
            kind,
            facts: (start, self.run.facts.len() as u32),
        });
        Ok(())
    }

    pub fn finish(mut self) -> Run {
        let width = FACT_LABELS.len();
        self.run.postings = (0..width)
            .map(|position| {
                let mut postings: Postings = Vec::new();
                let mut of_cell: HashMap<u32, usize> = HashMap::new();
                for (at, cells) in self.run.cells.chunks_exact(width).enumerate() {
                    let cell = cells[position];
                    if cell == Cell::IN_THE_LOG {
                        return None;
                    }
                    if cell == Cell::ABSENT {
                        continue;
                    }
                    match of_cell.get(&cell.0) {
                        Some(&posting) => postings[posting].1.push(at as u32),
                        None if postings.len() < MAX_POSTED_VALUES => {
                            of_cell.insert(cell.0, postings.len());
                            postings.push((cell, vec![at as u32]));
                        }
                        None => return None,
                    }
                }
                Some(postings)
            })
            .collect();
        self.run
    }
}

/// The runs kept, within a budget of bytes, least recently used out first.
#[derive(Debug)]
pub struct EventRuns {
    budget: usize,
    state: Mutex<State>,
    /// `get` finding a run is a hit; finding none (a budget of 0 too) a
    /// miss.
    lookups: CacheLookups,
}

#[derive(Debug, Default)]
struct State {
    /// (tree, prefix) → its slot.
    runs: HashMap<(Tree, Vec<u8>), Slot>,
    bytes: usize,
    clock: u64,
    /// The highest seq a round has written (or is writing) derived keys of.
    written: u64,
}

/// A prefix's run (none while it is being built) and when it was last
/// used.
type Slot = (Option<Arc<Run>>, u64);

/// A build registered with the cache, to be kept if nothing intervened.
pub struct Building {
    key: (Tree, Vec<u8>),
    written_then: u64,
}

impl EventRuns {
    pub fn new(budget: usize) -> EventRuns {
        EventRuns {
            budget,
            state: Mutex::default(),
            lookups: CacheLookups::default(),
        }
    }

    /// Counts its hits and misses in `lookups`.
    pub fn with_lookups(mut self, lookups: CacheLookups) -> EventRuns {
        self.lookups = lookups;
        self
    }

    /// The run of a prefix, if one is kept; `None` also when the budget is
    /// 0.
    pub fn get(&self, tree: Tree, prefix: &[u8]) -> Option<Arc<Run>> {
        let run = self.lookup(tree, prefix);
        self.lookups.record(run.is_some());
        run
    }

    fn lookup(&self, tree: Tree, prefix: &[u8]) -> Option<Arc<Run>> {
        if self.budget == 0 {
            return None;
        }
        let mut state = self.state.lock().expect("event runs lock");
        state.clock += 1;
        let clock = state.clock;
        let (run, used) = state.runs.get_mut(&(tree, prefix.to_vec()))?;
        *used = clock;
        run.clone()
    }

    /// Registers a build of a prefix's run (`None` when the cache keeps
    /// nothing).
    pub fn start(&self, tree: Tree, prefix: &[u8]) -> Option<Building> {
        if self.budget == 0 {
            return None;
        }
        let mut state = self.state.lock().expect("event runs lock");
        let key = (tree, prefix.to_vec());
        let clock = state.clock;
        state.runs.entry(key.clone()).or_insert((None, clock));
        Some(Building {
            key,
            written_then: state.written,
        })
    }

    /// Keeps a built run, unless a round wrote to its prefix since the
    /// build started (it dropped the registration), or one was on its way
    /// then or now past the seq the run is exact for.
    pub fn keep(&self, building: Building, run: Arc<Run>) {
        let mut state = self.state.lock().expect("event runs lock");
        let quiet = building.written_then <= run.built_at && state.written <= run.built_at;
        let size = run.size();
        match state.runs.get(&building.key) {
            Some((None, _)) if quiet && size <= self.budget / 4 => {}
            Some((None, _)) => {
                state.runs.remove(&building.key);
                return;
            }
            _ => return,
        }
        state.clock += 1;
        let clock = state.clock;
        state.bytes += size;
        state.runs.insert(building.key, (Some(run), clock));
        while state.bytes > self.budget {
            let Some(oldest) = state
                .runs
                .iter()
                .filter(|(_, (run, _))| run.is_some())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((Some(run), _)) = state.runs.remove(&oldest) {
                state.bytes -= run.size();
            }
        }
    }

    /// Before a round's derived writes are written: drops the runs (and
    /// the builds) of every prefix they write to. `last_seq` is the round's
    /// last seq.
    pub fn touch(&self, writes: &[Write], last_seq: u64) {
        if self.budget == 0 {
            return;
        }
        let mut state = self.state.lock().expect("event runs lock");
        state.written = state.written.max(last_seq);
        if state.runs.is_empty() {
            return;
        }
        for (tree, key, _) in writes {
            if !matches!(tree, Tree::Mentions | Tree::Dyads) || key.len() < 16 {
                continue;
            }
            let prefix = (*tree, key[..key.len() - 16].to_vec());
            if let Some((Some(run), _)) = state.runs.remove(&prefix) {
                state.bytes -= run.size();
            }
        }
    }

    /// Drops every run (after a rebuild of the derived trees).
    pub fn clear(&self) {
        let mut state = self.state.lock().expect("event runs lock");
        state.runs.clear();
        state.bytes = 0;
    }

    /// (bytes kept, runs kept).
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock().expect("event runs lock");
        (
            state.bytes,
            state.runs.values().filter(|(run, _)| run.is_some()).count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::keys;
    use crate::index::records::fact_position;

    fn run(built_at: u64, events: &[(Instant, u64)]) -> Arc<Run> {
        let mut builder = RunBuilder::new(built_at);
        for (earliest, seq) in events {
            builder
                .push(*earliest, *seq, &EventValue::from_parts(0, "consult", &[]))
                .unwrap();
        }
        Arc::new(builder.finish())
    }

    fn write_to(entity: &str, seq: u64) -> Vec<Write> {
        vec![(Tree::Mentions, keys::mention(entity, 5, seq), Vec::new())]
    }

    #[test]
    fn a_run_is_kept_only_when_no_round_came_between() {
        let runs = EventRuns::new(1 << 20);
        let prefix = keys::entity("a");
        runs.touch(&write_to("a", 3), 3);

        // Quiet: kept, and used until a round writes to the prefix.
        let building = runs.start(Tree::Mentions, &prefix).unwrap();
        runs.keep(building, run(3, &[(5, 1), (5, 3)]));
        assert_eq!(runs.get(Tree::Mentions, &prefix).unwrap().built_at(), 3);
        runs.touch(&write_to("b", 4), 4);
        assert!(
            runs.get(Tree::Mentions, &prefix).is_some(),
            "another prefix"
        );
        runs.touch(&write_to("a", 5), 5);
        assert!(runs.get(Tree::Mentions, &prefix).is_none(), "its prefix");

        // A round on its way past the seq the run is exact for (it may
        // have written before the build registered): not kept.
        runs.touch(&write_to("b", 6), 6);
        let building = runs.start(Tree::Mentions, &prefix).unwrap();
        runs.keep(building, run(5, &[(5, 1)]));
        assert!(runs.get(Tree::Mentions, &prefix).is_none());

        // A round writing to the prefix during the build: not kept.
        let building = runs.start(Tree::Mentions, &prefix).unwrap();
        runs.touch(&write_to("a", 7), 7);
        runs.keep(building, run(7, &[(5, 1)]));
        assert!(runs.get(Tree::Mentions, &prefix).is_none());
    }

    #[test]
    fn a_narrowed_visit_leaves_out_only_events_of_another_value() {
        // 600 events: cameo_root cycles through 3 codes (one event in 7
        // has none); avg_tone is distinct per event, too many values to
        // post.
        let encoded: Vec<(Instant, u64, Vec<u8>)> = (0..600u64)
            .map(|n| {
                let mut labels = std::collections::BTreeMap::new();
                if n % 7 != 0 {
                    labels.insert("cameo_root".to_string(), format!("0{}", n % 3));
                }
                labels.insert("avg_tone".to_string(), format!("{n}.5"));
                (
                    (n / 4) as Instant,
                    n + 1,
                    EventValue::encode(0, "x", Some(&labels)),
                )
            })
            .collect();
        let mut builder = RunBuilder::new(600);
        for (earliest, seq, bytes) in &encoded {
            builder
                .push(*earliest, *seq, &EventValue::decode(bytes).unwrap())
                .unwrap();
        }
        let run = builder.finish();
        let visit = |only: Option<(usize, &str)>| {
            let mut seen = Vec::new();
            run.visit((20, 100), only, &mut |_, seq, value| {
                let root = match value.fact("cameo_root")? {
                    Fact::Value(root) => Some(root.to_string()),
                    _ => None,
                };
                seen.push((seq, root));
                Ok(seen.len() < 1000)
            })
            .unwrap();
            seen
        };
        let every = visit(None);
        assert_eq!(every.len(), 81 * 4);
        let root = fact_position("cameo_root").unwrap();
        let narrowed = visit(Some((root, "01")));
        let expected: Vec<_> = every
            .iter()
            .filter(|(_, root)| root.as_deref() == Some("01"))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(narrowed, expected);
        assert!(visit(Some((root, "19"))).is_empty(), "a value no event has");
        // No postings for a fact of many values: every event is visited.
        let tone = fact_position("avg_tone").unwrap();
        assert_eq!(visit(Some((tone, "30.5"))), every);
    }

    #[test]
    fn a_run_visits_its_window_in_order_and_the_budget_holds() {
        let events: Vec<(Instant, u64)> = (0..100).map(|n| (n / 3, n as u64 + 1)).collect();
        let whole = run(100, &events);
        let mut seen = Vec::new();
        whole
            .visit((10, 12), None, &mut |earliest, seq, value| {
                assert_eq!(value.kind, "consult");
                seen.push((earliest, seq));
                Ok(true)
            })
            .unwrap();
        let expected: Vec<(Instant, u64)> = events
            .iter()
            .copied()
            .filter(|(earliest, _)| (10..=12).contains(earliest))
            .collect();
        assert_eq!(seen, expected);

        let runs = EventRuns::new(whole.size() * 5);
        for entity in ["a", "b", "c", "d", "e", "f"] {
            let building = runs.start(Tree::Mentions, &keys::entity(entity)).unwrap();
            runs.keep(building, run(100, &events));
        }
        let (bytes, kept) = runs.usage();
        assert!(
            bytes <= whole.size() * 5 && kept < 6,
            "{bytes} bytes in {kept} runs"
        );
        assert!(
            runs.get(Tree::Mentions, &keys::entity("f")).is_some(),
            "the newest stays"
        );
        assert!(EventRuns::new(0).start(Tree::Mentions, b"a").is_none());
    }
}
