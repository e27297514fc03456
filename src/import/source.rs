//! Reading an import file as it is published: plain text, gzip or zip
//! (each entry in turn), told apart by their first bytes, and streamed: at
//! no point is more than a buffer of the file in memory.
//!
//! The bytes read from the file itself (compressed, for `.gz` and `.zip`)
//! are counted as they go, so a progress bar can show how far the file is.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.read.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        self.inner.seek(position)
    }
}

/// The size of a file in bytes (what its progress counts up to).
pub fn size(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// Calls `read` with the text of `path` (of each entry of a zip, in
/// turn), counting the file's bytes into `progress`.
pub fn with_text(
    path: &Path,
    progress: Arc<AtomicU64>,
    read: &mut dyn FnMut(&mut dyn BufRead) -> io::Result<()>,
) -> io::Result<()> {
    let file = Counting {
        inner: File::open(path)?,
        read: progress,
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let magic = buffered.fill_buf()?.get(..4).map(<[u8]>::to_vec);
    match magic.as_deref() {
        Some([0x1f, 0x8b, ..]) => {
            let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
            read(&mut BufReader::with_capacity(256 * 1024, decoder))
        }
        Some([b'P', b'K', 3, 4]) => {
            let mut archive = zip::ZipArchive::new(buffered.into_inner())
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            for index in 0..archive.len() {
                let entry = archive
                    .by_index(index)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                if entry.is_file() {
                    read(&mut BufReader::with_capacity(256 * 1024, entry))?;
                }
            }
            Ok(())
        }
        _ => read(&mut buffered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        with_text(path, Arc::default(), &mut |text| {
            for line in text.lines() {
                lines.push(line?);
            }
            Ok(())
        })
        .unwrap();
        lines
    }

    #[test]
    fn plain_gzip_and_zip_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let text = "first\tline\nsecond\tline\n";
        let plain = dir.path().join("rows.tsv");
        std::fs::write(&plain, text).unwrap();

        let gz = dir.path().join("rows.tsv.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();

        let zipped = dir.path().join("rows.zip");
        let mut writer = zip::ZipWriter::new(File::create(&zipped).unwrap());
        writer
            .start_file("rows.tsv", zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(text.as_bytes()).unwrap();
        writer.finish().unwrap();

        for path in [&plain, &gz, &zipped] {
            assert_eq!(lines_of(path), ["first\tline", "second\tline"], "{path:?}");
        }
    }
}
