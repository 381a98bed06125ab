//! Feeds arbitrary bytes to user resolution as CreateContainer does with an
//! image's `/etc/passwd` and `/etc/group`: the input is split into a user
//! spec, a passwd text and a group text. Nothing may panic; a numeric user
//! keeps its uid, and the supplementary groups never repeat or hold the
//! primary gid.

#![no_main]

use cri_spec::image_config::resolve_user_with;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let user = parts.next().unwrap_or_default();
    let passwd = parts.next().unwrap_or_default();
    let group = parts.next().unwrap_or_default().to_owned();
    let Ok(resolved) = resolve_user_with(user, passwd, &mut || Ok(group.clone())) else {
        return;
    };
    if let Ok(uid) = user.split(':').next().unwrap_or_default().parse::<u32>() {
        assert_eq!(resolved.uid, uid);
    }
    assert!(!resolved.additional_gids.contains(&resolved.gid));
    let mut unique = resolved.additional_gids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), resolved.additional_gids.len());
});
