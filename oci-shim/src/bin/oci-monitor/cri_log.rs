//! The container log in the CRI format kubelet reads:
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n`.
//!
//! Output is written as it arrives rather than buffered into whole lines, so
//! the monitor's memory does not grow with line length: each complete line is
//! an `F` entry, and a read that ends mid-line writes the piece as a `P`
//! (partial) entry; the line's remainder comes later, ending in `F`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Which stream a chunk came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct CriLog {
    path: PathBuf,
    file: File,
    entry: Vec<u8>,
    /// Whether the last entry of each stream was a `P` that still needs its `F`.
    open_partial: [bool; 2],
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl CriLog {
    pub fn open(path: PathBuf) -> io::Result<CriLog> {
        let file = open(&path)?;
        Ok(CriLog {
            path,
            file,
            entry: Vec::with_capacity(256),
            open_partial: [false; 2],
        })
    }

    /// Reopens the file by path (after the daemon rotated it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open(&self.path)?;
        Ok(())
    }

    /// Logs one chunk read from `stream` at time `now_nanos`.
    pub fn write_chunk(&mut self, stream: Stream, chunk: &[u8], now_nanos: u64) -> io::Result<()> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (text, full, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            self.write_entry(stream, text, full, now_nanos)?;
            rest = next;
        }
        Ok(())
    }

    /// Ends a dangling partial line when its stream closes.
    pub fn finish(&mut self, stream: Stream, now_nanos: u64) -> io::Result<()> {
        if self.open_partial[stream as usize] {
            self.write_entry(stream, b"", true, now_nanos)?;
        }
        Ok(())
    }

    fn write_entry(&mut self, stream: Stream, text: &[u8], full: bool, now: u64) -> io::Result<()> {
        self.entry.clear();
        crate::timestamp::write_rfc3339_nanos(&mut self.entry, now);
        self.entry.push(b' ');
        self.entry.extend_from_slice(stream.name().as_bytes());
        self.entry
            .extend_from_slice(if full { b" F " } else { b" P " });
        self.entry.extend_from_slice(text);
        self.entry.push(b'\n');
        self.open_partial[stream as usize] = !full;
        // One write per entry: with O_APPEND, entries never interleave.
        self.file.write_all(&self.entry)?;
        // A long line must not keep a large buffer alive.
        if self.entry.capacity() > 4096 {
            self.entry = Vec::with_capacity(256);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(chunks: &[(Stream, &str)], finish: bool) -> String {
        let dir = std::env::temp_dir().join(format!("cri-log-test-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join(format!("{}.log", chunks.len() + finish as usize * 100));
        let _ = std::fs::remove_file(&path);
        let mut log = CriLog::open(path.clone()).unwrap();
        for (s, c) in chunks {
            log.write_chunk(*s, c.as_bytes(), 0).unwrap();
        }
        if finish {
            log.finish(Stream::Stdout, 0).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_owned() + "\n")
            .collect()
    }

    #[test]
    fn lines_and_partials() {
        assert_eq!(
            log_of(
                &[(Stream::Stdout, "a\nb\nhel"), (Stream::Stdout, "lo\n")],
                false
            ),
            "stdout F a\nstdout F b\nstdout P hel\nstdout F lo\n"
        );
        assert_eq!(
            log_of(&[(Stream::Stderr, "x\n\n")], false),
            "stderr F x\nstderr F \n"
        );
        assert_eq!(
            log_of(&[(Stream::Stdout, "tail")], true),
            "stdout P tail\nstdout F \n"
        );
    }
}
