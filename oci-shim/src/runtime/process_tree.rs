//! Finding and killing a process and all its descendants on the host.
//!
//! An exec that timed out must leave nothing behind. Children orphaned by a
//! killed parent re-parent to the container's init and escape a naive
//! "kill the pid" — so the whole tree is frozen with SIGSTOP first (a stopped
//! process cannot fork), re-scanned until no new member appears, then killed.
//! This kernel has no `/proc/PID/task/TID/children`, so parents come from
//! `/proc/PID/stat`.
//!
//! Killing is not the end: a killed process becomes a zombie until its
//! parent reaps it. The exec'd process itself is reaped by the runtime or,
//! failing that, by the reaper the runtime runs under (`oci-monitor reap`);
//! its descendants, re-parented inside the container when their parent
//! dies, by the PID namespace's init (the pod's pause ignores SIGCHLD, so
//! the kernel reaps them at once).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The fields of a `/proc/PID/stat` line after the parenthesised command
/// name, which may itself contain `)` and spaces: the state (field 3)
/// comes first.
pub(crate) fn fields_after_comm(stat: &str) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_ascii_whitespace())
}

/// The parent pid in a `/proc/PID/stat` line.
pub(crate) fn parse_ppid(stat: &str) -> Option<i32> {
    fields_after_comm(stat)?.nth(1)?.parse().ok()
}

/// The state letter in a `/proc/PID/stat` line (`R`, `S`, `Z`...).
pub(crate) fn parse_state(stat: &str) -> Option<char> {
    fields_after_comm(stat)?.next()?.chars().next()
}

/// The kernel calls tree killing makes, behind a trait so the order of
/// operations can be checked against a recording double.
pub(crate) trait Syscall {
    /// Every process's children, from the process table.
    fn children(&self) -> HashMap<i32, Vec<i32>>;
    /// kill(2); errors (the process already gone) are irrelevant here.
    fn kill(&self, pid: i32, signal: i32);
    /// The process's state letter; `None` once it is gone (reaped).
    fn state(&self, pid: i32) -> Option<char>;
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

    fn state(&self, pid: i32) -> Option<char> {
        parse_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
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

/// Freezes then kills `root` and all its descendants; returns their pids.
/// Blocking (scans /proc): call from a blocking thread.
pub(crate) fn kill_tree(sys: &dyn Syscall, root: i32) -> BTreeSet<i32> {
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
    stopped
}

/// Waits until every process of `pids` has died (gone, or a zombie left for
/// its parent to reap), for at most `timeout`; returns those still alive.
/// SIGKILL takes effect when a process next leaves the kernel, so a killed
/// tree is dead within milliseconds unless a process is stuck in an
/// uninterruptible sleep. A pid reused meanwhile only makes this wait the
/// whole `timeout`. Blocking: call from a blocking thread.
pub(crate) fn wait_dead(sys: &dyn Syscall, pids: &BTreeSet<i32>, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| sys.state(p).is_some_and(|s| s != 'Z'))
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A process table where 11 forks 13 after the first scan, recording signals.
    struct Recording {
        scans: RefCell<usize>,
        calls: RefCell<Vec<(i32, i32)>>,
        looks: RefCell<HashMap<i32, usize>>,
    }

    fn recording() -> Recording {
        Recording {
            scans: RefCell::new(0),
            calls: RefCell::new(Vec::new()),
            looks: RefCell::new(HashMap::new()),
        }
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
        fn state(&self, pid: i32) -> Option<char> {
            let killed = self.calls.borrow().contains(&(pid, libc::SIGKILL));
            let mut looks = self.looks.borrow_mut();
            let n = looks.entry(pid).or_insert(0);
            *n += 1;
            match (killed, *n) {
                (false, _) => Some('S'),
                // Still dying at the first look; then reaped (even pids) or
                // a zombie (odd ones): dead either way.
                (true, 1) => Some('R'),
                (true, _) => (pid % 2 != 0).then_some('Z'),
            }
        }
    }

    #[test]
    fn everything_is_stopped_before_anything_is_killed() {
        let rec = recording();
        assert_eq!(kill_tree(&rec, 10).len(), 4);
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
    fn waits_until_the_killed_are_dead_or_zombies() {
        let rec = recording();
        let killed = kill_tree(&rec, 10);
        assert!(wait_dead(&rec, &killed, Duration::from_secs(5)).is_empty());
        // 99 was never killed: it stays alive, and the wait gives up.
        let started = Instant::now();
        let alive = wait_dead(&rec, &BTreeSet::from([10, 99]), Duration::from_millis(50));
        assert_eq!(alive, [99]);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn state_after_odd_command_names() {
        assert_eq!(parse_state("42 (a) b) Z 7 42 42 0"), Some('Z'));
        assert_eq!(parse_state("1 (init) S 0 1 1"), Some('S'));
        assert_eq!(parse_state("garbage"), None);
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
        let killed = kill_tree(&HostSyscall, root);
        assert_eq!(killed.len(), 3);
        assert!(wait_dead(&HostSyscall, &killed, std::time::Duration::from_secs(5)).is_empty());
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
