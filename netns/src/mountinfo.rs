//! Just enough of `/proc/self/mountinfo` to answer "is this directory a mount
//! point, and does it propagate?" (also what `image-store` asks of the
//! directory of root filesystems).
//!
//! Format (proc(5)): `id parent major:minor root mount-point options
//! [optional-fields...] - fstype source super-options`, where paths escape
//! space, tab, newline and backslash as `\ooo` octal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One mount, reduced to what the pin directory needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// True if it has a `shared:` or `master:` tag, i.e. mount events cross
    /// into or out of other mount namespaces.
    pub propagates: bool,
}

/// Parses every well-formed line; malformed lines are skipped because one odd
/// line must not hide the others (the kernel never writes them anyway).
///
/// # Examples
///
/// ```
/// let table = "44 43 0:4 net:[1] /run/a\\040b rw shared:2 - nsfs nsfs rw\n";
/// let mounts = netns::mountinfo::parse(table);
/// assert_eq!(mounts[0].mount_point, std::path::Path::new("/run/a b"));
/// assert!(mounts[0].propagates);
/// ```
pub fn parse(text: &str) -> Vec<MountEntry> {
    // Not `lines()`: it would also eat a trailing '\r', which the kernel does
    // not escape in paths.
    text.split('\n').filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    let _options = fields.next()?;
    let mut propagates = false;
    let mut saw_separator = false;
    for tag in fields.by_ref() {
        if tag == "-" {
            saw_separator = true;
            break;
        }
        propagates |= tag.starts_with("shared:") || tag.starts_with("master:");
    }
    if !saw_separator {
        return None;
    }
    Some(MountEntry {
        mount_point: unescape(mount_point),
        propagates,
    })
}

/// The topmost mount at exactly `path`: later lines are mounted later, so the
/// last match is the one a lookup of `path` sees.
pub(crate) fn top_mount_at<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|e| e.mount_point == path)
}

fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal_triplet(&bytes[i + 1..i + 4]) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

fn is_octal_triplet(b: &[u8]) -> bool {
    // The first digit is at most 3 so the value fits a byte.
    b.len() == 3
        && (b'0'..=b'3').contains(&b[0])
        && b[1..].iter().all(|c| (b'0'..=b'7').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
43 27 254:0 /tmp/exp/d2 /tmp/exp/d2 rw,relatime shared:1 - ext4 /dev/vda rw
44 43 0:4 net:[4026532177] /tmp/exp/d2/a rw shared:2 - nsfs nsfs rw
70 44 0:6 /null /tmp/exp/d2/a rw,relatime - devtmpfs devtmpfs rw
80 27 0:6 /x /run/with\\040space rw master:7 - tmpfs tmpfs rw
";

    #[test]
    fn reads_mount_points_and_propagation() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 5);
        let d2 = top_mount_at(&entries, Path::new("/tmp/exp/d2")).unwrap();
        assert!(d2.propagates);
        let root = top_mount_at(&entries, Path::new("/")).unwrap();
        assert!(!root.propagates);
        let spaced = top_mount_at(&entries, Path::new("/run/with space")).unwrap();
        assert!(spaced.propagates, "master: counts as propagating");
        let stacked = entries
            .iter()
            .filter(|e| e.mount_point == Path::new("/tmp/exp/d2/a"));
        assert_eq!(stacked.count(), 2);
        // The top of the stack is the later line, which is private.
        assert!(
            !top_mount_at(&entries, Path::new("/tmp/exp/d2/a"))
                .unwrap()
                .propagates
        );
        assert!(top_mount_at(&entries, Path::new("/nowhere")).is_none());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse("garbage\n1 2 3\n1 2 3:4 / /x rw shared:1\n").is_empty());
    }

    fn escape(path: &[u8]) -> String {
        let mut s = String::new();
        for &b in path {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\\') || !b.is_ascii() {
                s.push_str(&format!("\\{b:03o}"));
            } else {
                s.push(b as char);
            }
        }
        s
    }

    proptest! {
        #[test]
        fn escaped_paths_round_trip(path in proptest::collection::vec(1u8..=255, 1..64)) {
            let line = format!("1 0 0:1 / {} rw shared:3 - tmpfs t rw", escape(&path));
            let entries = parse(&line);
            prop_assert_eq!(entries.len(), 1);
            prop_assert_eq!(&entries[0].mount_point, &PathBuf::from(OsString::from_vec(path)));
            prop_assert!(entries[0].propagates);
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text);
        }
    }
}
