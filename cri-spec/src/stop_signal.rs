//! The signal StopContainer sends first: CRI's `stop_signal` (Kubernetes
//! 1.33's ContainerStopSignals, KEP-4960) over the image's `StopSignal`,
//! over SIGTERM; and back, for ContainerStatus.
//!
//! The daemon keeps the signal as text, a name (`SIGQUIT`) or, for the
//! real-time signals whose numbers depend on the C library, a number.

use cri_api::v1 as cri;

/// A `stop_signal` value the proto does not define.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stop_signal {0} is not a signal CRI defines")]
pub struct UnknownStopSignal(pub i32);

/// The signal a container is stopped with: the request's, else the
/// image's, else `SIGTERM`.
///
/// # Examples
///
/// ```
/// use cri_api::v1::Signal;
/// use cri_spec::stop_signal::resolve;
///
/// assert_eq!(resolve(Signal::Sigquit as i32, Some("SIGINT")).unwrap(), "SIGQUIT");
/// assert_eq!(resolve(Signal::RuntimeDefault as i32, Some("SIGINT")).unwrap(), "SIGINT");
/// assert_eq!(resolve(Signal::RuntimeDefault as i32, None).unwrap(), "SIGTERM");
/// ```
pub fn resolve(requested: i32, image: Option<&str>) -> Result<String, UnknownStopSignal> {
    let signal = cri::Signal::try_from(requested).map_err(|_| UnknownStopSignal(requested))?;
    Ok(match signal {
        cri::Signal::RuntimeDefault => image
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("SIGTERM")
            .to_string(),
        other => stored(other),
    })
}

/// How the daemon keeps `signal`: a name runc and `kill` know, the number
/// for real-time signals.
fn stored(signal: cri::Signal) -> String {
    match realtime_offset(signal) {
        Some(offset) => offset.to_string(),
        None => match signal {
            // Aliases Linux resolves to the canonical signal.
            cri::Signal::Sigcld => "SIGCHLD".into(),
            cri::Signal::Sigpoll => "SIGIO".into(),
            cri::Signal::Sigiot => "SIGABRT".into(),
            other => other.as_str_name().to_string(),
        },
    }
}

/// The number of a real-time signal (`SIGRTMIN+n`, `SIGRTMAX-n`).
fn realtime_offset(signal: cri::Signal) -> Option<i32> {
    let name = signal.as_str_name();
    if let Some(n) = name.strip_prefix("SIGRTMINPLUS") {
        return n.parse::<i32>().ok().map(|n| libc::SIGRTMIN() + n);
    }
    if let Some(n) = name.strip_prefix("SIGRTMAXMINUS") {
        return n.parse::<i32>().ok().map(|n| libc::SIGRTMAX() - n);
    }
    match signal {
        cri::Signal::Sigrtmin => Some(libc::SIGRTMIN()),
        cri::Signal::Sigrtmax => Some(libc::SIGRTMAX()),
        _ => None,
    }
}

/// The CRI value of a stored signal, for ContainerStatus; `RUNTIME_DEFAULT`
/// when it has no CRI name (an image may name anything).
///
/// # Examples
///
/// ```
/// use cri_api::v1::Signal;
/// use cri_spec::stop_signal::to_cri;
///
/// assert_eq!(to_cri("SIGQUIT"), Signal::Sigquit as i32);
/// assert_eq!(to_cri("quit"), Signal::Sigquit as i32);
/// assert_eq!(to_cri("SIGNOPE"), Signal::RuntimeDefault as i32);
/// ```
pub fn to_cri(stored: &str) -> i32 {
    let trimmed = stored.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return from_number(number) as i32;
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    cri::Signal::from_str_name(&name).unwrap_or(cri::Signal::RuntimeDefault) as i32
}

/// The CRI signal with this number on this machine.
fn from_number(number: i32) -> cri::Signal {
    (1..=65)
        .filter_map(|v| cri::Signal::try_from(v).ok())
        .find(|s| {
            realtime_offset(*s).or_else(|| standard_number(*s)) == Some(number)
                && !matches!(
                    s,
                    cri::Signal::Sigcld | cri::Signal::Sigpoll | cri::Signal::Sigiot
                )
        })
        .unwrap_or(cri::Signal::RuntimeDefault)
}

/// The number of a standard signal, through nix's names.
fn standard_number(signal: cri::Signal) -> Option<i32> {
    stored(signal)
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cri_signal_is_stored_as_something_the_kernel_knows() {
        for value in 1..=65 {
            let signal = cri::Signal::try_from(value).unwrap();
            let kept = resolve(value, None).unwrap();
            let number = kept.parse::<i32>().ok().or_else(|| standard_number(signal));
            assert!(
                number.is_some_and(|n| (1..=libc::SIGRTMAX()).contains(&n)),
                "{signal:?} stored as {kept}"
            );
        }
    }

    #[test]
    fn status_reports_what_was_asked_for() {
        for value in 1..=65 {
            let signal = cri::Signal::try_from(value).unwrap();
            let kept = resolve(value, None).unwrap();
            let back = cri::Signal::try_from(to_cri(&kept)).unwrap();
            let alias = matches!(
                signal,
                cri::Signal::Sigcld | cri::Signal::Sigpoll | cri::Signal::Sigiot
            );
            // SIGRTMAX-15 and SIGRTMIN+15 may be one number; either name
            // is right then, as long as the number is the same.
            let same_number = realtime_offset(back) == realtime_offset(signal);
            assert!(
                back == signal || alias || (same_number && realtime_offset(back).is_some()),
                "{signal:?} → {kept} → {back:?}"
            );
        }
    }

    #[test]
    fn a_value_outside_the_enum_is_refused() {
        assert_eq!(resolve(66, None), Err(UnknownStopSignal(66)));
        assert_eq!(resolve(-1, Some("SIGINT")), Err(UnknownStopSignal(-1)));
    }

    #[test]
    fn an_image_signal_without_a_cri_name_reads_as_runtime_default() {
        assert_eq!(to_cri("SIGWHATEVER"), cri::Signal::RuntimeDefault as i32);
        assert_eq!(to_cri("9"), cri::Signal::Sigkill as i32);
    }
}
