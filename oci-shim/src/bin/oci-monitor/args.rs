//! Command line of `oci-monitor` (hand-parsed to keep the binary small).

use crate::failure::Failure;
use oci_shim::monitor::LogSizeMax;
use std::path::PathBuf;

/// What the daemon told the monitor to do.
#[derive(Debug)]
pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    pub runtime: PathBuf,
    pub runtime_args: Vec<String>,
    /// How long the runtime's `create` and `start` may take before the
    /// monitor kills them and reports failure.
    pub runtime_timeout: std::time::Duration,
    /// The most bytes the CRI log file may hold; `None` is unlimited.
    pub log_size_max: Option<LogSizeMax>,
    pub terminal: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Mount trees the runtime's `create` runs without (`mount_view`).
    pub hide_mounts: Vec<PathBuf>,
    /// Paths below them the container uses, put back for `create`.
    pub keep_mounts: Vec<PathBuf>,
}

pub const USAGE: &str = "usage: oci-monitor --id ID --bundle DIR --state-dir DIR --log-path FILE \
--runtime PATH [--runtime-arg ARG]... [--runtime-timeout SECONDS] [--log-size-max BYTES] \
[--terminal] [--stdin] [--stdin-once] [--hide-mounts DIR]... [--keep-mount PATH]...";

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, Failure> {
        let (mut id, mut bundle, mut state_dir, mut log_path, mut runtime) =
            (None, None, None, None, None);
        let mut args = Args {
            id: String::new(),
            bundle: PathBuf::new(),
            state_dir: PathBuf::new(),
            log_path: PathBuf::new(),
            runtime: PathBuf::new(),
            runtime_args: Vec::new(),
            runtime_timeout: std::time::Duration::from_secs(120),
            log_size_max: None,
            terminal: false,
            stdin: false,
            stdin_once: false,
            hide_mounts: Vec::new(),
            keep_mounts: Vec::new(),
        };
        while let Some(flag) = argv.next() {
            let mut value = || {
                argv.next()
                    .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--id" => id = Some(value()?),
                "--bundle" => bundle = Some(value()?),
                "--state-dir" => state_dir = Some(value()?),
                "--log-path" => log_path = Some(value()?),
                "--runtime" => runtime = Some(value()?),
                "--runtime-arg" => args.runtime_args.push(value()?),
                "--runtime-timeout" => {
                    let text = value()?;
                    let seconds = text.parse::<u64>().map_err(|_| {
                        Failure::Usage(format!(
                            "--runtime-timeout {text:?} is not a number of seconds"
                        ))
                    })?;
                    args.runtime_timeout = std::time::Duration::from_secs(seconds.max(1));
                }
                "--log-size-max" => {
                    let max = value()?.parse::<LogSizeMax>().map_err(Failure::Usage)?;
                    args.log_size_max = Some(max);
                }
                "--terminal" => args.terminal = true,
                "--stdin" => args.stdin = true,
                "--stdin-once" => args.stdin_once = true,
                "--hide-mounts" => args.hide_mounts.push(value()?.into()),
                "--keep-mount" => args.keep_mounts.push(value()?.into()),
                other => return Err(Failure::Usage(format!("unknown argument {other:?}"))),
            }
        }
        let missing = |name: &str| Failure::Usage(format!("missing {name}"));
        args.id = id.ok_or_else(|| missing("--id"))?;
        args.bundle = bundle.ok_or_else(|| missing("--bundle"))?.into();
        args.state_dir = state_dir.ok_or_else(|| missing("--state-dir"))?.into();
        args.log_path = log_path.ok_or_else(|| missing("--log-path"))?.into();
        args.runtime = runtime.ok_or_else(|| missing("--runtime"))?.into();
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, Failure> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn full_command_line() {
        let a = parse(
            "--id c1 --bundle /b --state-dir /s --log-path /l --runtime /r \
             --runtime-arg --root --runtime-arg /x --stdin --stdin-once",
        )
        .unwrap();
        assert_eq!(a.id, "c1");
        assert_eq!(a.runtime_args, ["--root", "/x"]);
        assert!(a.stdin && a.stdin_once && !a.terminal);
        assert_eq!(a.log_size_max, None);
        assert!(a.hide_mounts.is_empty());
    }

    #[test]
    fn runtime_view() {
        let a = parse(
            "--id c1 --bundle /b --state-dir /s --log-path /l --runtime /r \
             --hide-mounts /pins --hide-mounts /roots --keep-mount /pins/p --keep-mount /roots/c1",
        )
        .unwrap();
        assert_eq!(a.hide_mounts, [PathBuf::from("/pins"), "/roots".into()]);
        assert_eq!(
            a.keep_mounts,
            [PathBuf::from("/pins/p"), "/roots/c1".into()]
        );
    }

    #[test]
    fn log_size_max() {
        let base = "--id c1 --bundle /b --state-dir /s --log-path /l --runtime /r";
        let a = parse(&format!("{base} --log-size-max 65536")).unwrap();
        assert_eq!(a.log_size_max.map(LogSizeMax::bytes), Some(65536));
        for bad in ["100", "-1", "lots"] {
            let e = parse(&format!("{base} --log-size-max {bad}")).unwrap_err();
            assert!(e.to_string().contains("log_size_max"), "{e}");
        }
    }

    #[test]
    fn missing_and_unknown_are_errors() {
        assert!(parse("--id c1")
            .unwrap_err()
            .to_string()
            .contains("--bundle"));
        assert!(parse("--bogus").is_err());
        assert!(parse("--id")
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
    }
}
