//! The derived trees on disk: sorted runs, each written once and never
//! changed, merged in the background.
//!
//! Derived writes go to an in-memory table. When it passes its budget it is
//! written out, sorted, as a run file (`index/run-LO-HI.idx`); runs are
//! numbered in the order they were written, and a later run's value for a
//! key wins over an earlier one's. When four runs of one level sit side by
//! side, a background thread merges them into one run of the next level, so
//! every byte is rewritten a few times at most and a read looks at a handful
//! of runs.
//!
//! Nothing here is durable on its own, and nothing needs to be: every
//! derived tree is a function of the log, and the `meta` tree's indexed seq
//! travels with the writes it covers. After a crash the runs on disk hold a
//! prefix of the derived writes (whole flushes, in order), and opening the
//! index catches up the rest from the log. A clean close writes the table
//! out, so a reopen replays nothing.
//!
//! A run file is a sequence of blocks (entries `varint klen, varint vlen,
//! key, value`, about 16 KiB, each followed by its CRC-32), then a meta
//! section (each block's first key, offset and length; a Bloom filter of the
//! keys), then a fixed footer (magic, the run numbers it covers, its level,
//! where the meta section is, its CRC-32). A damaged block reads as
//! `Error::DataLoss`; a run whose footer or meta section is damaged is
//! dropped at open with every other run, and the index is rebuilt from the
//! log.

use super::Pair;
use crate::error::{Error, Result};
use prost::encoding::{decode_varint, encode_varint};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

const MAGIC: &[u8; 8] = b"annrun01";
const FOOTER_BYTES: u64 = 48;
const BLOCK_BYTES: usize = 16 * 1024;
/// Runs of one level merged at a time.
const FAN_IN: usize = 4;
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_HASHES: u64 = 7;
/// Bookkeeping bytes counted per table entry, besides its key and value.
const ENTRY_OVERHEAD: usize = 64;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

fn damaged(path: &Path, what: &str) -> Error {
    Error::DataLoss(format!("index run {} is damaged: {what}", path.display()))
}

/// A stable 64-bit hash of a key (FNV-1a, then a SplitMix64 finish): the
/// Bloom filters are stored, so the hash must never change.
fn key_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Which keys a run may hold: no false negatives, about 1 % false positives.
struct Bloom {
    bits: Vec<u8>,
}

impl Bloom {
    fn build(hashes: &[u64]) -> Bloom {
        let bytes = (hashes.len() * BLOOM_BITS_PER_KEY).div_ceil(8).max(8);
        let mut bloom = Bloom {
            bits: vec![0; bytes],
        };
        for hash in hashes {
            for bit in bloom.positions(*hash) {
                bloom.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        bloom
    }

    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> {
        let count = self.bits.len() as u64 * 8;
        let step = (hash >> 32) | 1;
        (0..BLOOM_HASHES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) % count) as usize)
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

/// Where one block of a run is.
struct BlockRef {
    first: Vec<u8>,
    offset: u64,
    len: u32,
}

/// One run file, open for reading.
struct Run {
    /// The flush numbers it covers.
    lo: u64,
    hi: u64,
    level: u32,
    path: PathBuf,
    file: File,
    blocks: Vec<BlockRef>,
    bloom: Bloom,
}

impl Run {
    fn name(lo: u64, hi: u64) -> String {
        format!("run-{lo:012}-{hi:012}.idx")
    }

    fn open(path: &Path) -> Result<Run> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size < FOOTER_BYTES {
            return Err(damaged(path, "shorter than its footer"));
        }
        let mut footer = [0u8; FOOTER_BYTES as usize];
        file.read_exact_at(&mut footer, size - FOOTER_BYTES)?;
        if &footer[..8] != MAGIC {
            return Err(damaged(path, "no run footer"));
        }
        let number = |at: usize| u64::from_be_bytes(footer[at..at + 8].try_into().expect("8"));
        let (lo, hi) = (number(8), number(16));
        let level = u32::from_be_bytes(footer[24..28].try_into().expect("4"));
        let (meta_offset, meta_len) = (number(28), number(36));
        let checksum = u32::from_be_bytes(footer[44..48].try_into().expect("4"));
        if meta_offset.checked_add(meta_len) != Some(size - FOOTER_BYTES) {
            return Err(damaged(path, "the footer points outside the file"));
        }
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut meta, meta_offset)?;
        if crc32fast::hash(&meta) != checksum {
            return Err(damaged(path, "its block index fails its checksum"));
        }
        let bad = |_| damaged(path, "its block index does not decode");
        let mut cursor = meta.as_slice();
        let count = decode_varint(&mut cursor).map_err(bad)? as usize;
        let mut blocks = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let len = decode_varint(&mut cursor).map_err(bad)? as usize;
            if cursor.len() < len {
                return Err(damaged(path, "its block index is cut short"));
            }
            let first = cursor[..len].to_vec();
            cursor = &cursor[len..];
            let offset = decode_varint(&mut cursor).map_err(bad)?;
            let len = decode_varint(&mut cursor).map_err(bad)? as u32;
            blocks.push(BlockRef { first, offset, len });
        }
        let bloom = Bloom {
            bits: cursor.to_vec(),
        };
        if bloom.bits.is_empty() {
            return Err(damaged(path, "no Bloom filter"));
        }
        Ok(Run {
            lo,
            hi,
            level,
            path: path.to_path_buf(),
            file,
            blocks,
            bloom,
        })
    }

    fn read_block(&self, index: usize) -> Result<Vec<u8>> {
        let block = &self.blocks[index];
        let len = block.len as usize;
        let mut buffer = vec![0u8; len + 4];
        self.file
            .read_exact_at(&mut buffer, block.offset)
            .map_err(|error| damaged(&self.path, &format!("block at {}: {error}", block.offset)))?;
        let checksum = u32::from_be_bytes(buffer[len..].try_into().expect("4"));
        buffer.truncate(len);
        if crc32fast::hash(&buffer) != checksum {
            return Err(damaged(
                &self.path,
                &format!("block at {} fails its checksum", block.offset),
            ));
        }
        Ok(buffer)
    }

    /// The entries of one block, in key order.
    fn entries(&self, block: &[u8]) -> Result<Vec<(usize, usize, usize)>> {
        let mut entries = Vec::new();
        let mut cursor = block;
        while !cursor.is_empty() {
            let bad = |_| damaged(&self.path, "a block entry does not decode");
            let key_len = decode_varint(&mut cursor).map_err(bad)? as usize;
            let value_len = decode_varint(&mut cursor).map_err(bad)? as usize;
            let start = block.len() - cursor.len();
            if cursor.len() < key_len + value_len {
                return Err(damaged(&self.path, "a block entry is cut short"));
            }
            entries.push((start, key_len, value_len));
            cursor = &cursor[key_len + value_len..];
        }
        Ok(entries)
    }

    fn get(&self, key: &[u8], hash: u64) -> Result<Option<Vec<u8>>> {
        if !self.bloom.may_contain(hash) {
            return Ok(None);
        }
        let after = self
            .blocks
            .partition_point(|block| block.first.as_slice() <= key);
        if after == 0 {
            return Ok(None);
        }
        let block = self.read_block(after - 1)?;
        for (start, key_len, value_len) in self.entries(&block)? {
            let found = &block[start..start + key_len];
            if found == key {
                let value = &block[start + key_len..start + key_len + value_len];
                return Ok(Some(value.to_vec()));
            }
            if found > key {
                break;
            }
        }
        Ok(None)
    }

    /// Adds the entries with `from <= key < to` to `out`, over what is there.
    fn scan(&self, from: &[u8], to: &[u8], out: &mut Table) -> Result<()> {
        let start = self
            .blocks
            .partition_point(|block| block.first.as_slice() <= from)
            .saturating_sub(1);
        for index in start..self.blocks.len() {
            if self.blocks[index].first.as_slice() >= to {
                break;
            }
            let block = self.read_block(index)?;
            for (start, key_len, value_len) in self.entries(&block)? {
                let key = &block[start..start + key_len];
                if key >= to {
                    return Ok(());
                }
                if key >= from {
                    let value = &block[start + key_len..start + key_len + value_len];
                    out.insert(key.to_vec(), value.to_vec());
                }
            }
        }
        Ok(())
    }
}

/// Reads a run from start to end.
struct RunReader {
    run: Arc<Run>,
    next_block: usize,
    pending: std::vec::IntoIter<Pair>,
}

impl RunReader {
    fn new(run: Arc<Run>) -> RunReader {
        RunReader {
            run,
            next_block: 0,
            pending: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> Result<Option<Pair>> {
        loop {
            if let Some(pair) = self.pending.next() {
                return Ok(Some(pair));
            }
            if self.next_block == self.run.blocks.len() {
                return Ok(None);
            }
            let block = self.run.read_block(self.next_block)?;
            self.next_block += 1;
            let pairs: Vec<Pair> = self
                .run
                .entries(&block)?
                .into_iter()
                .map(|(start, key_len, value_len)| {
                    (
                        block[start..start + key_len].to_vec(),
                        block[start + key_len..start + key_len + value_len].to_vec(),
                    )
                })
                .collect();
            self.pending = pairs.into_iter();
        }
    }
}

/// Writes one run file: entries in ascending key order, each key once.
struct RunWriter {
    /// The flush numbers the run covers.
    lo: u64,
    hi: u64,
    out: BufWriter<File>,
    temporary: PathBuf,
    offset: u64,
    block: Vec<u8>,
    block_first: Vec<u8>,
    blocks: Vec<BlockRef>,
    hashes: Vec<u64>,
}

impl RunWriter {
    fn create(dir: &Path, lo: u64, hi: u64) -> Result<RunWriter> {
        let temporary = dir.join(format!("{}.tmp", Run::name(lo, hi)));
        let file = File::create(&temporary)?;
        Ok(RunWriter {
            lo,
            hi,
            out: BufWriter::with_capacity(1 << 20, file),
            temporary,
            offset: 0,
            block: Vec::with_capacity(BLOCK_BYTES * 2),
            block_first: Vec::new(),
            blocks: Vec::new(),
            hashes: Vec::new(),
        })
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.block.is_empty() {
            self.block_first = key.to_vec();
        }
        encode_varint(key.len() as u64, &mut self.block);
        encode_varint(value.len() as u64, &mut self.block);
        self.block.extend_from_slice(key);
        self.block.extend_from_slice(value);
        self.hashes.push(key_hash(key));
        if self.block.len() >= BLOCK_BYTES {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.out.write_all(&self.block)?;
        self.out
            .write_all(&crc32fast::hash(&self.block).to_be_bytes())?;
        self.blocks.push(BlockRef {
            first: std::mem::take(&mut self.block_first),
            offset: self.offset,
            len: self.block.len() as u32,
        });
        self.offset += self.block.len() as u64 + 4;
        self.block.clear();
        Ok(())
    }

    /// Ends the file, makes it durable under its final name, and opens it.
    fn finish(mut self, level: u32) -> Result<Run> {
        self.end_block()?;
        let (lo, hi) = (self.lo, self.hi);
        let mut meta = Vec::new();
        encode_varint(self.blocks.len() as u64, &mut meta);
        for block in &self.blocks {
            encode_varint(block.first.len() as u64, &mut meta);
            meta.extend_from_slice(&block.first);
            encode_varint(block.offset, &mut meta);
            encode_varint(u64::from(block.len), &mut meta);
        }
        meta.extend_from_slice(&Bloom::build(&self.hashes).bits);
        let mut footer = Vec::with_capacity(FOOTER_BYTES as usize);
        footer.extend_from_slice(MAGIC);
        footer.extend_from_slice(&lo.to_be_bytes());
        footer.extend_from_slice(&hi.to_be_bytes());
        footer.extend_from_slice(&level.to_be_bytes());
        footer.extend_from_slice(&self.offset.to_be_bytes());
        footer.extend_from_slice(&(meta.len() as u64).to_be_bytes());
        footer.extend_from_slice(&crc32fast::hash(&meta).to_be_bytes());
        self.out.write_all(&meta)?;
        self.out.write_all(&footer)?;
        let file = self
            .out
            .into_inner()
            .map_err(|error| Error::Storage(format!("writing an index run: {error}")))?;
        file.sync_all()?;
        let dir = self
            .temporary
            .parent()
            .expect("a run lives in a directory")
            .to_path_buf();
        let path = dir.join(Run::name(lo, hi));
        fs::rename(&self.temporary, &path)?;
        File::open(&dir)?.sync_all()?;
        Run::open(&path)
    }

    fn abandon(self) {
        let _ = fs::remove_file(&self.temporary);
    }
}

struct State {
    /// Writes not yet in a run.
    table: Table,
    table_bytes: usize,
    /// A table being written out as a run (still read until it is one).
    frozen: Option<Arc<Table>>,
    /// Oldest first: a later run's value for a key wins.
    runs: Vec<Arc<Run>>,
    next_number: u64,
    /// Bumped by `clear`, so that a merge begun before it is thrown away.
    epoch: u64,
}

struct Shared {
    dir: PathBuf,
    state: RwLock<State>,
    /// Held by whoever freezes, writes out or clears the table.
    control: Mutex<()>,
    /// The thread writing out the frozen table, if any.
    flusher: Mutex<Option<JoinHandle<Result<()>>>>,
    /// The thread merging runs, if any.
    merger: Mutex<Option<JoinHandle<()>>>,
    stop: AtomicBool,
    table_budget: usize,
}

/// A table frozen to be written out as run `number`.
struct Frozen {
    table: Arc<Table>,
    number: u64,
    epoch: u64,
}

/// The derived trees: one ordered key space (the caller prefixes each key
/// with its tree).
pub struct Runs {
    shared: Arc<Shared>,
}

impl Runs {
    /// Opens the runs in `dir`. Leftovers of an interrupted write or merge
    /// are removed; if any run is damaged, every run is, and the caller's
    /// catch-up from the log rebuilds the index.
    pub fn open(dir: &Path, table_budget: usize) -> Result<Runs> {
        fs::create_dir_all(dir)?;
        let mut runs = Vec::new();
        let mut sound = true;
        for item in fs::read_dir(dir)? {
            let path = item?.path();
            match path.extension().and_then(|extension| extension.to_str()) {
                Some("tmp") => fs::remove_file(&path)?,
                Some("idx") => match Run::open(&path) {
                    Ok(run) => runs.push(run),
                    Err(error) => {
                        tracing::warn!(%error, "dropping the index runs; the index is rebuilt from the log");
                        sound = false;
                    }
                },
                _ => {}
            }
        }
        // A merge that was interrupted after writing its result but before
        // removing its inputs leaves runs covered by another.
        runs.sort_by_key(|run| (run.lo, std::cmp::Reverse(run.hi)));
        let mut kept: Vec<Run> = Vec::new();
        for run in runs {
            match kept.last() {
                Some(last) if run.hi <= last.hi => fs::remove_file(&run.path)?,
                Some(last) if run.lo <= last.hi => {
                    tracing::warn!(path = %run.path.display(), "index runs overlap; the index is rebuilt from the log");
                    sound = false;
                    kept.push(run);
                }
                _ => kept.push(run),
            }
        }
        if !sound {
            for run in kept.drain(..).rev() {
                fs::remove_file(&run.path)?;
            }
            for item in fs::read_dir(dir)? {
                let path = item?.path();
                if path.extension().is_some_and(|extension| extension == "idx") {
                    fs::remove_file(&path)?;
                }
            }
        }
        let next_number = kept.last().map_or(1, |run| run.hi + 1);
        let runs = Runs {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                state: RwLock::new(State {
                    table: Table::new(),
                    table_bytes: 0,
                    frozen: None,
                    runs: kept.into_iter().map(Arc::new).collect(),
                    next_number,
                    epoch: 0,
                }),
                control: Mutex::new(()),
                flusher: Mutex::new(None),
                merger: Mutex::new(None),
                stop: AtomicBool::new(false),
                table_budget,
            }),
        };
        merge_in_background(&runs.shared);
        Ok(runs)
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.shared.state.read().expect("runs lock poisoned")
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (frozen, runs) = {
            let state = self.state();
            if let Some(value) = state.table.get(key) {
                return Ok(Some(value.clone()));
            }
            (state.frozen.clone(), state.runs.clone())
        };
        if let Some(value) = frozen.as_ref().and_then(|table| table.get(key)) {
            return Ok(Some(value.clone()));
        }
        let hash = key_hash(key);
        for run in runs.iter().rev() {
            if let Some(value) = run.get(key, hash)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The entries with `from <= key < to`, ascending.
    pub fn scan(&self, from: &[u8], to: &[u8]) -> Result<Vec<Pair>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let range = (Bound::Included(from), Bound::Excluded(to));
        let (recent, frozen, runs) = {
            let state = self.state();
            let recent: Vec<Pair> = state
                .table
                .range::<[u8], _>(range)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            (recent, state.frozen.clone(), state.runs.clone())
        };
        let mut merged = Table::new();
        for run in &runs {
            run.scan(from, to, &mut merged)?;
        }
        if let Some(frozen) = frozen {
            for (key, value) in frozen.range::<[u8], _>(range) {
                merged.insert(key.clone(), value.clone());
            }
        }
        merged.extend(recent);
        Ok(merged.into_iter().collect())
    }

    /// Adds writes to the table. They are written out by `flush` or
    /// `flush_if_full`, which the caller must call only once the log entries
    /// they derive from are durable: a run must never hold what a crash
    /// could take from the log.
    pub fn write(&self, writes: impl IntoIterator<Item = Pair>) {
        let mut state = self.shared.state.write().expect("runs lock poisoned");
        for (key, value) in writes {
            state.table_bytes += key.len() + value.len() + ENTRY_OVERHEAD;
            state.table.insert(key, value);
        }
    }

    /// Starts writing the table out as a run, in the background, once it
    /// has passed its budget. One table is written out at a time: if the
    /// previous one is still being written, this waits for it (and reports
    /// its failure).
    pub fn flush_if_full(&self) -> Result<()> {
        if self.state().table_bytes < self.shared.table_budget {
            return Ok(());
        }
        let _control = self.shared.control.lock().expect("control lock poisoned");
        wait_for_flush(&self.shared)?;
        let Some(frozen) = freeze(&self.shared) else {
            return Ok(());
        };
        let shared = Arc::clone(&self.shared);
        let flusher = std::thread::Builder::new()
            .name("annals-index-flush".into())
            .spawn(move || write_out(&shared, frozen))?;
        *self.shared.flusher.lock().expect("flusher lock poisoned") = Some(flusher);
        Ok(())
    }

    /// Writes the whole table out as a run, durably, before returning.
    pub fn flush(&self) -> Result<()> {
        let _control = self.shared.control.lock().expect("control lock poisoned");
        wait_for_flush(&self.shared)?;
        match freeze(&self.shared) {
            Some(frozen) => write_out(&self.shared, frozen),
            None => Ok(()),
        }
    }

    /// Drops everything: the table and every run, newest first, so that a
    /// crash part-way leaves a prefix of the flushes (which the caller's
    /// catch-up extends).
    pub fn clear(&self) -> Result<()> {
        let _control = self.shared.control.lock().expect("control lock poisoned");
        stop_merging(&self.shared);
        let waited = wait_for_flush(&self.shared);
        let runs = {
            let mut state = self.shared.state.write().expect("runs lock poisoned");
            state.epoch += 1;
            state.table.clear();
            state.table_bytes = 0;
            state.frozen = None;
            std::mem::take(&mut state.runs)
        };
        for run in runs.iter().rev() {
            fs::remove_file(&run.path)?;
        }
        self.shared.stop.store(false, Ordering::SeqCst);
        if let Err(error) = waited {
            tracing::warn!(%error, "an index write-out failed before the index was cleared");
        }
        Ok(())
    }

    #[cfg(test)]
    fn run_count(&self) -> usize {
        self.state().runs.len()
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        stop_merging(&self.shared);
        if let Err(error) = self.flush() {
            tracing::error!(%error, "writing out the index failed; the next open catches it up from the log");
        }
    }
}

/// Waits for the table being written out, if any.
fn wait_for_flush(shared: &Shared) -> Result<()> {
    let flusher = shared.flusher.lock().expect("flusher lock poisoned").take();
    match flusher {
        Some(flusher) => flusher
            .join()
            .map_err(|_| Error::Storage("the index write-out thread panicked".into()))?,
        None => Ok(()),
    }
}

/// Freezes the table for writing out (it stays readable until it is a run).
fn freeze(shared: &Shared) -> Option<Frozen> {
    let mut state = shared.state.write().expect("runs lock poisoned");
    if state.table.is_empty() {
        return None;
    }
    let table = Arc::new(std::mem::take(&mut state.table));
    state.table_bytes = 0;
    state.frozen = Some(Arc::clone(&table));
    let number = state.next_number;
    state.next_number += 1;
    Some(Frozen {
        table,
        number,
        epoch: state.epoch,
    })
}

/// Writes a frozen table out as a run and puts the run in its place.
fn write_out(shared: &Arc<Shared>, frozen: Frozen) -> Result<()> {
    let Frozen {
        table,
        number,
        epoch,
    } = frozen;
    let written = (|| {
        let mut writer = RunWriter::create(&shared.dir, number, number)?;
        for (key, value) in table.iter() {
            writer.add(key, value)?;
        }
        writer.finish(0)
    })();
    let mut state = shared.state.write().expect("runs lock poisoned");
    match written {
        Ok(run) if state.epoch == epoch => {
            state.runs.push(Arc::new(run));
            state.frozen = None;
        }
        Ok(run) => {
            fs::remove_file(&run.path)?;
        }
        Err(error) => {
            // Keep the writes readable (later writes win over them); the
            // next write-out takes them along.
            if state.epoch == epoch {
                let mut table = Arc::unwrap_or_clone(table);
                table.append(&mut state.table);
                state.table_bytes = table
                    .iter()
                    .map(|(key, value)| key.len() + value.len() + ENTRY_OVERHEAD)
                    .sum();
                state.table = table;
                state.frozen = None;
            }
            return Err(error);
        }
    }
    drop(state);
    merge_in_background(shared);
    Ok(())
}

fn stop_merging(shared: &Shared) {
    shared.stop.store(true, Ordering::SeqCst);
    if let Some(merger) = shared.merger.lock().expect("merger lock poisoned").take() {
        let _ = merger.join();
    }
}

/// Starts a merge if one is due and none is running.
fn merge_in_background(shared: &Arc<Shared>) {
    let mut merger = shared.merger.lock().expect("merger lock poisoned");
    if merger
        .as_ref()
        .is_some_and(|running| !running.is_finished())
    {
        return;
    }
    if let Some(finished) = merger.take() {
        let _ = finished.join();
    }
    let due_now = due(&shared.state.read().expect("runs lock poisoned").runs).is_some();
    if shared.stop.load(Ordering::SeqCst) || !due_now {
        return;
    }
    let merging = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("annals-merge".into())
        .spawn(move || loop {
            match merge_once(&merging) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(error) => {
                    tracing::error!(%error, "merging index runs failed; they stay as they are");
                    break;
                }
            }
        });
    match spawned {
        Ok(handle) => *merger = Some(handle),
        Err(error) => tracing::error!(%error, "could not start merging index runs"),
    }
}

/// The runs to merge next: the first `FAN_IN` of a stretch of runs of one
/// level.
fn due(runs: &[Arc<Run>]) -> Option<Vec<Arc<Run>>> {
    let mut start = 0;
    while start < runs.len() {
        let level = runs[start].level;
        let end = start
            + runs[start..]
                .iter()
                .take_while(|run| run.level == level)
                .count();
        if end - start >= FAN_IN {
            return Some(runs[start..start + FAN_IN].to_vec());
        }
        start = end;
    }
    None
}

/// Merges the runs that are due, if any. Returns whether it merged.
fn merge_once(shared: &Shared) -> Result<bool> {
    let (inputs, epoch) = {
        let state = shared.state.read().expect("runs lock poisoned");
        match due(&state.runs) {
            Some(inputs) => (inputs, state.epoch),
            None => return Ok(false),
        }
    };
    let lo = inputs[0].lo;
    let hi = inputs[inputs.len() - 1].hi;
    let level = inputs[0].level + 1;
    let mut writer = RunWriter::create(&shared.dir, lo, hi)?;
    let mut readers: Vec<RunReader> = inputs.iter().cloned().map(RunReader::new).collect();
    let mut heads: Vec<Option<Pair>> = Vec::with_capacity(readers.len());
    for reader in &mut readers {
        heads.push(reader.next()?);
    }
    let mut written = 0u64;
    loop {
        // The smallest key; on a tie the newest run's value.
        let mut smallest: Option<usize> = None;
        for (position, head) in heads.iter().enumerate() {
            if let Some((key, _)) = head {
                let better = match smallest {
                    None => true,
                    Some(best) => key <= &heads[best].as_ref().expect("a head").0,
                };
                if better {
                    smallest = Some(position);
                }
            }
        }
        let Some(best) = smallest else { break };
        let (key, value) = heads[best].take().expect("a head");
        for (position, head) in heads.iter_mut().enumerate() {
            if position == best || head.as_ref().is_some_and(|(other, _)| *other == key) {
                *head = readers[position].next()?;
            }
        }
        writer.add(&key, &value)?;
        written += 1;
        if written.is_multiple_of(4096) && shared.stop.load(Ordering::SeqCst) {
            writer.abandon();
            return Ok(false);
        }
    }
    let merged = writer.finish(level)?;
    let mut state = shared.state.write().expect("runs lock poisoned");
    let start = state
        .runs
        .iter()
        .position(|run| Arc::ptr_eq(run, &inputs[0]));
    let in_place = state.epoch == epoch
        && start.is_some_and(|start| {
            state.runs.len() >= start + inputs.len()
                && state.runs[start..start + inputs.len()]
                    .iter()
                    .zip(&inputs)
                    .all(|(run, input)| Arc::ptr_eq(run, input))
        });
    if !in_place {
        drop(state);
        fs::remove_file(&merged.path)?;
        return Ok(false);
    }
    let start = start.expect("checked");
    state
        .runs
        .splice(start..start + inputs.len(), [Arc::new(merged)]);
    drop(state);
    for input in &inputs {
        fs::remove_file(&input.path)?;
    }
    tracing::debug!(lo, hi, level, "merged index runs");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u32) -> Vec<u8> {
        format!("key-{n:08}").into_bytes()
    }

    /// Waits (boundedly) for background merges to settle.
    fn settle(runs: &Runs) {
        wait_for_flush(&runs.shared).unwrap();
        for _ in 0..500 {
            let idle = runs
                .shared
                .merger
                .lock()
                .unwrap()
                .as_ref()
                .is_none_or(|merger| merger.is_finished());
            if idle && due(&runs.state().runs).is_none() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("merges did not settle");
    }

    #[test]
    fn reads_what_was_written_across_flushes_merges_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Table::new();
        {
            // A tiny budget: a run every few writes, merges along the way.
            let runs = Runs::open(dir.path(), 2_000).unwrap();
            for round in 0..40u32 {
                let writes: Vec<Pair> = (0..10u32)
                    .map(|i| {
                        let n = (i * 7919 + round * 31) % 150;
                        (key(n), format!("value-{round}-{i}").into_bytes())
                    })
                    .collect();
                expected.extend(writes.clone());
                runs.write(writes);
                runs.flush_if_full().unwrap();
            }
            settle(&runs);
            assert!(runs.run_count() < 10, "{} runs", runs.run_count());
            assert_eq!(
                runs.scan(b"", b"\xff").unwrap(),
                expected.clone().into_iter().collect::<Vec<_>>()
            );
        }
        let runs = Runs::open(dir.path(), 2_000).unwrap();
        for n in 0..160 {
            assert_eq!(
                runs.get(&key(n)).unwrap(),
                expected.get(&key(n)).cloned(),
                "key {n}"
            );
        }
        let window = runs.scan(&key(20), &key(40)).unwrap();
        let wanted: Vec<Pair> = expected
            .range(key(20)..key(40))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(window, wanted);
    }

    #[test]
    fn a_damaged_block_reads_as_data_loss_and_a_damaged_footer_drops_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let runs = Runs::open(dir.path(), usize::MAX).unwrap();
            runs.write((0..2_000).map(|n| (key(n), vec![7u8; 40])));
        }
        let path = fs::read_dir(dir.path())
            .unwrap()
            .map(|item| item.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "idx"))
            .expect("a run was written at close");
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        {
            let runs = Runs::open(dir.path(), usize::MAX).unwrap();
            assert!(matches!(runs.get(&key(1)), Err(Error::DataLoss(_))));
            assert!(matches!(runs.scan(b"", b"\xff"), Err(Error::DataLoss(_))));
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let runs = Runs::open(dir.path(), usize::MAX).unwrap();
        assert_eq!(runs.run_count(), 0);
        assert!(runs.scan(b"", b"\xff").unwrap().is_empty());
    }

    #[test]
    fn a_merge_interrupted_before_removing_its_inputs_is_tidied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let runs = Runs::open(dir.path(), 1).unwrap();
            for n in 0..(FAN_IN as u32) {
                runs.write([(key(0), format!("v{n}").into_bytes())]);
                runs.flush_if_full().unwrap();
            }
            settle(&runs);
            assert_eq!(runs.run_count(), 1);
        }
        // Put back an input the merge had removed: it is covered by the
        // merged run and must not win over it.
        let stale = dir.path().join(Run::name(1, 1));
        let mut writer = RunWriter::create(dir.path(), 1, 1).unwrap();
        writer.add(&key(0), b"v0").unwrap();
        writer.finish(0).unwrap();
        assert!(stale.exists());
        let runs = Runs::open(dir.path(), 1).unwrap();
        assert_eq!(runs.get(&key(0)).unwrap(), Some(b"v3".to_vec()));
        assert!(!stale.exists());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn the_bloom_filter_never_misses_a_key(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..200)) {
            let hashes: Vec<u64> = keys.iter().map(|key| key_hash(key)).collect();
            let bloom = Bloom::build(&hashes);
            for hash in hashes {
                prop_assert!(bloom.may_contain(hash));
            }
        }
    }
}
