//! The container log in the CRI format kubelet reads:
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n`.
//!
//! Output is written as it arrives rather than buffered into whole lines, so
//! the monitor's memory does not grow with line length: each complete line is
//! an `F` entry, and a read that ends mid-line writes the piece as a `P`
//! (partial) entry; the line's remainder comes later, ending in `F`.
//!
//! # The size cap (`log_size_max`)
//!
//! What conmon does (`src/ctr_logging.c`, `write_k8s_log` and
//! `reopen_k8s_file`): before each entry, if it would take the file past the
//! cap, the entry goes into a new, empty file instead, and writing goes on
//! there. The old content is dropped, not kept: the cap bounds the disk a
//! container's log takes, and kubelet's own rotation (`containerLogMaxSize`)
//! is the way to keep history. Here, as there:
//!
//! - The cut falls only between entries, so every entry in the file is whole
//!   and the file always holds the latest output.
//! - The new file is made under a temporary name and renamed over the path
//!   (conmon's `<log>.tmp` with `O_TRUNC`, then `rename`), never truncated
//!   in place: a reader following the file (kubelet for `kubectl logs -f`)
//!   keeps a whole old file and sees the path replaced, so it reopens from
//!   the start; under an in-place truncation it would read on from its old
//!   offset, into the middle of some later entry. The temporary name is
//!   hidden (`.<name>.next`) because kubelet deletes `<log>.*tmp` files it
//!   finds while rotating, which could make the rename fail.
//! - An entry too long for even an empty file (a line longer than the cap
//!   less the 41 bytes of timestamp, stream, tag and newline) is split into
//!   `P` entries that fit, as a line longer than one read already is, so the
//!   file never exceeds the cap (conmon writes such an entry whole and lets
//!   the file overshoot). A cut may then fall between the pieces of one
//!   line and the new file start with its continuation: still well-formed
//!   entries, as when conmon cuts between a line's `P` and `F`. Only a cap
//!   smaller than one entry with one byte of text (42 bytes; the monitor
//!   refuses anything below 8192) leaves a file of one entry over the cap.
//! - When the new file cannot be made (directory gone, no inodes), the
//!   current one is truncated in place instead: the cap holds.
//! - A reopen (after kubelet rotated the file) counts the size of the file it
//!   opened: the cap applies to each file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes of an entry besides its text: the 30-byte timestamp, a space, the
/// 6-byte stream name, a space, the tag, a space, and the newline.
const ENTRY_OVERHEAD: u64 = 30 + 1 + 6 + 1 + 1 + 1 + 1;

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

/// A log file operation that failed.
#[derive(Debug)]
pub struct LogError {
    /// What we were doing: `open`, `write`, `start a new file`...
    pub op: &'static str,
    /// The log file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "log {}: {}: {}",
            self.path.display(),
            self.op,
            self.source
        )
    }
}

/// The CRI log of one container, optionally capped in size.
pub struct CriLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file: its size when opened, plus what we wrote.
    size: u64,
    /// The most bytes one file may hold; `None` is unlimited.
    max: Option<u64>,
    entry: Vec<u8>,
    /// Whether the last entry of each stream was a `P` that still needs its `F`.
    open_partial: [bool; 2],
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// An empty file put in place of `path` by rename (see the module comment).
fn replace_with_empty(path: &Path) -> io::Result<File> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let tmp = path.with_file_name(format!(".{}.next", name.to_string_lossy()));
    // A leftover of a monitor killed between create and rename.
    let _ = std::fs::remove_file(&tmp);
    // O_EXCL: never write through whatever else sits at the name.
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&tmp)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(file)
}

impl CriLog {
    /// Opens (appending to) the log at `path`, capped at `max` bytes per file.
    pub fn open(path: PathBuf, max: Option<u64>) -> Result<CriLog, LogError> {
        let (file, size) = open(&path).map_err(|source| LogError {
            op: "open",
            path: path.clone(),
            source,
        })?;
        Ok(CriLog {
            path,
            file,
            size,
            max,
            entry: Vec::with_capacity(256),
            open_partial: [false; 2],
        })
    }

    /// Reopens the file by path (after the daemon rotated it).
    pub fn reopen(&mut self) -> Result<(), LogError> {
        (self.file, self.size) = open(&self.path).map_err(|e| self.error("reopen", e))?;
        Ok(())
    }

    /// Logs one chunk read from `stream` at time `now_nanos`.
    pub fn write_chunk(
        &mut self,
        stream: Stream,
        chunk: &[u8],
        now_nanos: u64,
    ) -> Result<(), LogError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (text, full, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            self.write_line(stream, text, full, now_nanos)?;
            rest = next;
        }
        Ok(())
    }

    /// Ends a dangling partial line when its stream closes.
    pub fn finish(&mut self, stream: Stream, now_nanos: u64) -> Result<(), LogError> {
        if self.open_partial[stream as usize] {
            self.write_entry(stream, b"", true, now_nanos)?;
        }
        Ok(())
    }

    fn error(&self, op: &'static str, source: io::Error) -> LogError {
        LogError {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Writes one line (or piece of one), split into `P` entries where it
    /// is too long for even an empty file.
    fn write_line(
        &mut self,
        stream: Stream,
        text: &[u8],
        full: bool,
        now: u64,
    ) -> Result<(), LogError> {
        let room = match self.max {
            None => usize::MAX,
            Some(max) => usize::try_from(max.saturating_sub(ENTRY_OVERHEAD))
                .unwrap_or(usize::MAX)
                .max(1),
        };
        let mut rest = text;
        while rest.len() > room {
            let (piece, tail) = rest.split_at(room);
            self.write_entry(stream, piece, false, now)?;
            rest = tail;
        }
        self.write_entry(stream, rest, full, now)
    }

    fn write_entry(
        &mut self,
        stream: Stream,
        text: &[u8],
        full: bool,
        now: u64,
    ) -> Result<(), LogError> {
        self.entry.clear();
        crate::timestamp::write_rfc3339_nanos(&mut self.entry, now);
        self.entry.push(b' ');
        self.entry.extend_from_slice(stream.name().as_bytes());
        self.entry
            .extend_from_slice(if full { b" F " } else { b" P " });
        self.entry.extend_from_slice(text);
        self.entry.push(b'\n');
        let len = self.entry.len() as u64;
        // An empty file takes the entry whatever its size: only a cap below
        // one entry of one byte gets here with an entry over it.
        if self
            .max
            .is_some_and(|max| self.size > 0 && self.size + len > max)
        {
            self.start_new_file()?;
        }
        let written = self.append_entry();
        // A long line must not keep a large buffer alive.
        if self.entry.capacity() > 4096 {
            self.entry = Vec::with_capacity(256);
        }
        written?;
        self.open_partial[stream as usize] = !full;
        Ok(())
    }

    /// One write per entry; one that fails half-way is cut off again, so
    /// that the next entry does not run on from a torn one.
    fn append_entry(&mut self) -> Result<(), LogError> {
        match self.file.write_all(&self.entry) {
            Ok(()) => {
                self.size += self.entry.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Only ever shrink: what is below `size` is whole entries.
                if self.file.metadata().is_ok_and(|m| m.len() > self.size) {
                    let _ = self.file.set_len(self.size);
                }
                Err(self.error("write", e))
            }
        }
    }

    /// Drops the file's content for the cap: a new empty file renamed over
    /// the path, or, failing that, this one truncated in place.
    fn start_new_file(&mut self) -> Result<(), LogError> {
        match replace_with_empty(&self.path) {
            Ok(file) => self.file = file,
            Err(e) => {
                eprintln!(
                    "oci-monitor: log {}: start a new file: {e}; truncating in place",
                    self.path.display()
                );
                // O_APPEND: the next write lands at the new end, offset 0.
                self.file
                    .set_len(0)
                    .map_err(|e| self.error("truncate", e))?;
            }
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test's log file in a directory of its own.
    struct TestLog {
        dir: tempfile::TempDir,
        log: CriLog,
    }

    impl TestLog {
        fn new(max: Option<u64>) -> TestLog {
            let dir = tempfile::tempdir().unwrap();
            let log = CriLog::open(dir.path().join("0.log"), max).unwrap();
            TestLog { dir, log }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("0.log")
        }

        fn write(&mut self, stream: Stream, text: &str) {
            self.log.write_chunk(stream, text.as_bytes(), 0).unwrap();
        }

        fn text(&self) -> String {
            std::fs::read_to_string(self.path()).unwrap()
        }

        /// The entries without their timestamps, checking each one's form.
        fn entries(&self) -> Vec<String> {
            let text = self.text();
            assert!(text.is_empty() || text.ends_with('\n'), "torn: {text:?}");
            text.lines().map(check_entry).collect()
        }
    }

    fn check_entry(line: &str) -> String {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert_eq!(ts, "1970-01-01T00:00:00.000000000Z", "in {line:?}");
        let mut words = rest.splitn(3, ' ');
        assert!(
            matches!(words.next(), Some("stdout" | "stderr")),
            "{line:?}"
        );
        assert!(matches!(words.next(), Some("P" | "F")), "{line:?}");
        assert!(words.next().is_some(), "{line:?}");
        rest.to_owned()
    }

    fn log_of(chunks: &[(Stream, &str)], finish: bool) -> String {
        let mut t = TestLog::new(None);
        for (s, c) in chunks {
            t.write(*s, c);
        }
        if finish {
            t.log.finish(Stream::Stdout, 0).unwrap();
        }
        t.entries().iter().map(|e| format!("{e}\n")).collect()
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

    /// `n` entries of `stdout F <9 bytes>` are 50 bytes each.
    fn line(i: usize) -> String {
        format!("line-{i:04}\n")
    }

    #[test]
    fn the_entry_that_would_overflow_starts_a_new_file() {
        // Room for three 50-byte entries.
        let mut t = TestLog::new(Some(170));
        for i in 0..3 {
            t.write(Stream::Stdout, &line(i));
        }
        assert_eq!(t.text().len(), 150);
        t.write(Stream::Stderr, &line(3));
        assert_eq!(t.entries(), ["stderr F line-0003"]);
        for i in 4..9 {
            t.write(Stream::Stdout, &line(i));
        }
        // 3 + 3 + 3: the file holds the last three, never more than 170 bytes.
        assert_eq!(
            t.entries(),
            [
                "stdout F line-0006",
                "stdout F line-0007",
                "stdout F line-0008"
            ]
        );
    }

    #[test]
    fn exactly_full_is_allowed() {
        let mut t = TestLog::new(Some(150));
        for i in 0..3 {
            t.write(Stream::Stdout, &line(i));
        }
        assert_eq!(t.text().len(), 150);
        t.write(Stream::Stdout, &line(3));
        assert_eq!(t.entries(), ["stdout F line-0003"]);
    }

    #[test]
    fn many_writes_never_exceed_the_cap_and_keep_the_latest() {
        let mut t = TestLog::new(Some(1000));
        for i in 0..500 {
            // Odd sizes and chunk boundaries that fall mid-line.
            let text = format!(
                "{}{}",
                "x".repeat(i % 37),
                if i % 3 == 0 { "" } else { "\n" }
            );
            t.write(Stream::Stdout, &text);
            assert!(t.text().len() <= 1000);
        }
        t.write(Stream::Stdout, "the end\n");
        let entries = t.entries();
        assert_eq!(entries.last().unwrap(), "stdout F the end");
    }

    #[test]
    fn partial_lines_stay_partial_across_a_new_file() {
        let mut t = TestLog::new(Some(100));
        t.write(Stream::Stdout, "line-0000\n");
        t.write(Stream::Stdout, "hel");
        // Two entries (50 + 44 bytes) fill 94 of 100: the rest of the line
        // goes into a new file, still closing the partial with F.
        t.write(Stream::Stdout, "lo\n");
        assert_eq!(t.entries(), ["stdout F lo"]);
        t.write(Stream::Stderr, "tail");
        assert_eq!(t.entries(), ["stdout F lo", "stderr P tail"]);
        // The closing empty F (41 bytes) no longer fits beside them (88).
        t.log.finish(Stream::Stderr, 0).unwrap();
        assert_eq!(t.entries(), ["stderr F "]);
        // Closed: a second finish writes nothing.
        t.log.finish(Stream::Stderr, 0).unwrap();
        assert_eq!(t.entries(), ["stderr F "]);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_split_into_fitting_partials() {
        // 41 bytes of overhead leave 19 bytes of text per 60-byte entry.
        let mut t = TestLog::new(Some(60));
        // The first piece goes into the file there is now: keep it by a link.
        let first = t.dir.path().join("first");
        std::fs::hard_link(t.path(), &first).unwrap();
        let long = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"; // 46 bytes
        t.write(Stream::Stdout, &format!("{long}\n"));
        // Pieces of 19, 19 and 8 bytes, each filling a file of its own.
        let first = std::fs::read_to_string(first).unwrap();
        assert_eq!(first.len(), 60);
        assert_eq!(
            check_entry(first.trim_end()),
            "stdout P abcdefghijklmnopqrs"
        );
        assert_eq!(t.entries(), ["stdout F CDEFGHIJ"]);
        // The line was closed with F: the next one (43 bytes, not fitting
        // beside the 49) starts a file of its own.
        t.write(Stream::Stdout, "x\n");
        assert_eq!(t.entries(), ["stdout F x"]);
    }

    #[test]
    fn reopen_caps_each_file_on_its_own() {
        let mut t = TestLog::new(Some(170));
        for i in 0..3 {
            t.write(Stream::Stdout, &line(i));
        }
        // kubelet rotates: rename, then ReopenContainerLog.
        let rotated = t.path().with_extension("log.20240101-000000");
        std::fs::rename(t.path(), &rotated).unwrap();
        t.log.reopen().unwrap();
        for i in 3..6 {
            t.write(Stream::Stdout, &line(i));
        }
        assert_eq!(t.text().len(), 150, "a fresh file has the whole cap");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().len(), 150);
        t.write(Stream::Stdout, &line(6));
        assert_eq!(t.entries(), ["stdout F line-0006"]);
        // The rotated file is kubelet's: never touched again.
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().len(), 150);
    }

    #[test]
    fn reopen_of_an_existing_file_counts_what_it_holds() {
        let mut t = TestLog::new(Some(170));
        t.write(Stream::Stdout, &line(0));
        t.write(Stream::Stdout, &line(1));
        // A reopen that finds the same file (kubelet gave the rotation up).
        t.log.reopen().unwrap();
        t.write(Stream::Stdout, &line(2));
        t.write(Stream::Stdout, &line(3));
        assert_eq!(t.entries(), ["stdout F line-0003"]);
    }

    #[test]
    fn a_reader_of_the_old_file_keeps_it_whole() {
        let mut t = TestLog::new(Some(120));
        t.write(Stream::Stdout, &line(0));
        t.write(Stream::Stdout, &line(1));
        let follower = File::open(t.path()).unwrap();
        t.write(Stream::Stdout, &line(2));
        let old = std::io::read_to_string(follower).unwrap();
        assert_eq!(old.lines().count(), 2, "{old:?}");
        assert_eq!(t.entries(), ["stdout F line-0002"]);
        // No temporary file is left beside the log.
        let names: Vec<_> = std::fs::read_dir(t.dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn when_no_new_file_can_be_made_the_file_is_truncated_in_place() {
        let mut t = TestLog::new(Some(120));
        // A directory at the temporary name: neither removed nor replaced.
        let blocker = t.dir.path().join(".0.log.next");
        std::fs::create_dir_all(blocker.join("x")).unwrap();
        let same = t.dir.path().join("same");
        std::fs::hard_link(t.path(), &same).unwrap();
        for i in 0..3 {
            t.write(Stream::Stdout, &line(i));
        }
        assert_eq!(t.entries(), ["stdout F line-0002"]);
        // The same file, cut to the new entry (at offset 0, not after a hole).
        assert_eq!(std::fs::read_to_string(same).unwrap(), t.text());
        assert_eq!(t.text().len(), 50);
    }

    #[test]
    fn a_failed_write_is_a_typed_error() {
        let mut log = CriLog::open(PathBuf::from("/dev/full"), Some(8192)).unwrap();
        let e = log.write_chunk(Stream::Stdout, b"x\n", 0).unwrap_err();
        assert_eq!(
            (e.op, e.source.raw_os_error()),
            ("write", Some(libc::ENOSPC))
        );
        assert!(e.to_string().starts_with("log /dev/full: write: "), "{e}");
    }

    #[test]
    fn without_a_cap_nothing_is_dropped() {
        let mut t = TestLog::new(None);
        for i in 0..1000 {
            t.write(Stream::Stdout, &line(i));
        }
        assert_eq!(t.entries().len(), 1000);
    }
}
