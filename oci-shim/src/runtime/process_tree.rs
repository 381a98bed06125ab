//! Finding and killing a process and all its descendants on the host.
//!
//! An exec that timed out must leave nothing behind. Children orphaned by a
//! killed parent re-parent to the container's init and escape a naive
//! "kill the pid" — so the whole tree is frozen with SIGSTOP first (a stopped
//! process cannot fork), re-scanned until no new member appears, then killed.
//! This kernel has no `/proc/PID/task/TID/children`, so parents come from
//! `/proc/PID/stat`.

use std::collections::{BTreeSet, HashMap};

/// The parent pid in a `/proc/PID/stat` line (the field after the
/// parenthesised command name, which may itself contain `)` and spaces).
pub(crate) fn parse_ppid(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// The kernel calls tree killing makes, behind a trait so the order of
/// operations can be checked against a recording double.
pub(crate) trait Syscall {
    /// Every process's children, from the process table.
    fn children(&self) -> HashMap<i32, Vec<i32>>;
    /// kill(2); errors (the process already gone) are irrelevant here.
    fn kill(&self, pid: i32, signal: i32);
}

/// The real host.
pub(crate) struct HostSyscall;

impl Syscall for HostSyscall {
    fn children(&self) -> HashMap<i32, Vec<i32>> {
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return children;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
        children
    }

    fn kill(&self, pid: i32, signal: i32) {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
}

/// `root` and every live descendant.
pub(crate) fn tree_of(sys: &dyn Syscall, root: i32) -> BTreeSet<i32> {
    let children = sys.children();
    let mut tree = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if tree.insert(p) {
            todo.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    tree
}

/// Freezes then kills `root` and all its descendants; returns how many.
/// Blocking (scans /proc): call from a blocking thread.
pub(crate) fn kill_tree(sys: &dyn Syscall, root: i32) -> usize {
    let mut stopped = BTreeSet::new();
    for _ in 0..100 {
        let fresh: Vec<i32> = tree_of(sys, root).difference(&stopped).copied().collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            sys.kill(pid, libc::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for &pid in &stopped {
        sys.kill(pid, libc::SIGKILL);
    }
    stopped.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A process table where 11 forks 13 after the first scan, recording signals.
    struct Recording {
        scans: RefCell<usize>,
        calls: RefCell<Vec<(i32, i32)>>,
    }

    impl Syscall for Recording {
        fn children(&self) -> HashMap<i32, Vec<i32>> {
            let mut scans = self.scans.borrow_mut();
            *scans += 1;
            let mut m = HashMap::from([(1, vec![10, 99]), (10, vec![11]), (11, vec![12])]);
            if *scans > 1 {
                m.get_mut(&11).unwrap().push(13);
            }
            m
        }
        fn kill(&self, pid: i32, signal: i32) {
            self.calls.borrow_mut().push((pid, signal));
        }
    }

    #[test]
    fn everything_is_stopped_before_anything_is_killed() {
        let rec = Recording {
            scans: RefCell::new(0),
            calls: RefCell::new(Vec::new()),
        };
        assert_eq!(kill_tree(&rec, 10), 4);
        let calls = rec.calls.into_inner();
        let first_kill = calls.iter().position(|c| c.1 == libc::SIGKILL).unwrap();
        let stopped: BTreeSet<i32> = calls[..first_kill].iter().map(|c| c.0).collect();
        let killed: BTreeSet<i32> = calls[first_kill..].iter().map(|c| c.0).collect();
        assert!(calls[..first_kill].iter().all(|c| c.1 == libc::SIGSTOP));
        assert!(calls[first_kill..].iter().all(|c| c.1 == libc::SIGKILL));
        assert_eq!(stopped, BTreeSet::from([10, 11, 12, 13]));
        assert_eq!(
            killed, stopped,
            "the late fork (13) and nothing outside the tree (99)"
        );
    }

    #[test]
    fn ppid_after_odd_command_names() {
        assert_eq!(parse_ppid("42 (a) b) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn kills_grandchildren_too() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 100 & sleep 100 & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tree_of(&HostSyscall, root).len() < 3 {
            assert!(std::time::Instant::now() < deadline, "tree never formed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let grandchildren: Vec<i32> = tree_of(&HostSyscall, root)
            .into_iter()
            .filter(|&p| p != root)
            .collect();
        assert_eq!(kill_tree(&HostSyscall, root), 3);
        child.wait().unwrap();
        // Orphaned sleeps re-parent to us (or init) and get reaped there;
        // they must at least no longer be running.
        std::thread::sleep(std::time::Duration::from_millis(100));
        for p in grandchildren {
            let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            assert!(
                state.is_empty() || state.contains(") Z"),
                "{p} survived: {state}"
            );
        }
    }
}
