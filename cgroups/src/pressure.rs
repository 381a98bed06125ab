//! Pressure stall information (PSI) of a cgroup: how long its tasks waited
//! for CPU, memory or I/O. Only cgroup v2 has it; on a hybrid host the
//! unified tree at `/sys/fs/cgroup/unified` carries it when runc placed the
//! cgroup there too.

use std::path::Path;

/// One line of a `*.pressure` file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    /// Total stall time, microseconds (as the kernel counts it).
    pub total_us: u64,
    /// Percentage of the last 10 s.
    pub avg10: f64,
    /// Percentage of the last 60 s.
    pub avg60: f64,
    /// Percentage of the last 300 s.
    pub avg300: f64,
}

/// A whole `*.pressure` file: `some` (at least one task stalled) and `full`
/// (all stalled).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiStats {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled at once.
    pub full: PsiLine,
}

/// The three resources' pressure; `None` where the file is absent (cgroup
/// v1, PSI disabled, no such cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    /// `cpu.pressure`.
    pub cpu: Option<PsiStats>,
    /// `memory.pressure`.
    pub memory: Option<PsiStats>,
    /// `io.pressure`.
    pub io: Option<PsiStats>,
}

impl Pressure {
    /// Reads the pressure files of the v2 cgroup directory `dir`.
    pub fn read(dir: &Path) -> Pressure {
        let dir = crate::dir::CgroupDir::open(dir);
        Pressure::from_files(|name| dir.read(name).as_deref().and_then(parse))
    }

    /// The pressure from a v2 cgroup's files, each as `file` reads and
    /// [`parse`]s it.
    pub(crate) fn from_files(mut file: impl FnMut(&'static str) -> Option<PsiStats>) -> Pressure {
        Pressure {
            cpu: file("cpu.pressure"),
            memory: file("memory.pressure"),
            io: file("io.pressure"),
        }
    }
}

/// Parses a pressure file; `None` unless its `some` line is well formed.
/// The root's `cpu.pressure` of old kernels has no `full` line: zero then.
///
/// # Examples
///
/// ```
/// let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\n\
///             full avg10=0.00 avg60=0.00 avg300=0.00 total=6\n";
/// let psi = cgroups::pressure::parse(text).unwrap();
/// assert_eq!(psi.some.total_us, 12345);
/// assert_eq!(psi.some.avg10, 1.5);
/// assert_eq!(psi.full.total_us, 6);
/// ```
pub fn parse(text: &str) -> Option<PsiStats> {
    let mut stats = PsiStats::default();
    let mut some = false;
    for line in text.lines() {
        let Some((kind, fields)) = line.split_once(' ') else {
            continue;
        };
        let parsed = parse_line(fields)?;
        match kind {
            "some" => (stats.some, some) = (parsed, true),
            "full" => stats.full = parsed,
            _ => {}
        }
    }
    some.then_some(stats)
}

fn parse_line(fields: &str) -> Option<PsiLine> {
    let mut line = PsiLine::default();
    for field in fields.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        match key {
            "total" => line.total_us = value.parse().ok()?,
            "avg10" => line.avg10 = value.parse().ok()?,
            "avg60" => line.avg60 = value.parse().ok()?,
            "avg300" => line.avg300 = value.parse().ok()?,
            _ => {}
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_read_as_unknown() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("full avg10=0 avg60=0 avg300=0 total=1"), None);
        assert_eq!(parse("some avg10=x avg60=0 avg300=0 total=1"), None);
        assert_eq!(parse("some total=-1"), None);
    }

    #[test]
    fn reads_a_directory_and_misses_absent_files() {
        let dir = std::env::temp_dir().join(format!("psi-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
        )
        .unwrap();
        let pressure = Pressure::read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(pressure.cpu, None);
        assert_eq!(
            pressure.memory.map(|m| (m.some.total_us, m.full.total_us)),
            Some((7, 3))
        );
    }
}
