//! The reqwest clients sessions use, shared by every pull: one per TLS
//! material and timeouts, so that a registry with its own CA or client
//! certificate gets a client of its own, and pulls of the same registry
//! reuse connections. Clients are built on first use and kept, per tokio
//! runtime (a client's pooled connections are tasks of the runtime that
//! made them, and die with it); past [`MAX_CLIENTS`] kinds (reloads of
//! changed files, runtimes gone) the cache starts over. Outside a runtime
//! a client is built each time.

use crate::progress;
use crate::tls::RegistryTls;
use reqwest::Client;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The most clients kept; sessions holding one keep it past a reset.
const MAX_CLIENTS: usize = 32;

/// What a client is built from, and where its connections run.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Key {
    /// The runtime the client's connections are tasks of.
    runtime: tokio::runtime::Id,
    /// The TLS material's fingerprint, if any.
    tls: Option<[u8; 32]>,
    /// The stall window the timeouts derive from.
    window: Duration,
}

fn cache() -> &'static Mutex<HashMap<Key, Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<Key, Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// The client for endpoints with `tls` (or the platform's defaults), with
/// the connect and read timeouts of the stall `window`.
pub(crate) fn client(tls: Option<&RegistryTls>, window: Duration) -> reqwest::Result<Client> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return build(tls, window);
    };
    let key = Key {
        runtime: runtime.id(),
        tls: tls.map(RegistryTls::fingerprint),
        window,
    };
    let lock = || cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(client) = lock().get(&key) {
        return Ok(client.clone());
    }
    // Built outside the lock: it reads the platform's roots.
    let client = build(tls, window)?;
    let mut clients = lock();
    if clients.len() >= MAX_CLIENTS {
        clients.clear();
    }
    Ok(clients.entry(key).or_insert(client).clone())
}

fn build(tls: Option<&RegistryTls>, window: Duration) -> reqwest::Result<Client> {
    let builder = Client::builder()
        .connect_timeout(progress::connect_timeout(window))
        .read_timeout(progress::read_timeout(window))
        .user_agent(concat!(
            "cri-server-image-store/",
            env!("CARGO_PKG_VERSION")
        ));
    match tls {
        Some(tls) => tls.apply(builder),
        None => builder,
    }
    .build()
}
