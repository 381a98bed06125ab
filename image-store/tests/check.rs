//! The pull-time check (issue #17): it sees the logical reference, the top
//! manifest digest and the pull's authentication before anything else is
//! fetched; a refusal stores nothing; evidence is recorded per reference,
//! replaced by a re-pull, withdrawn by a refused re-pull and re-evaluated by
//! `recheck_evidence`; a replaced check is never joined. Against the fake
//! registry on loopback, so no fixtures are needed.

mod common;

use common::entries;
use common::fake_registry::{self, tiny, tiny_response};
use image_store::blob_store::sha256_digest;
use image_store::check::RegistryAuth;
use image_store::digest::Digest;
use image_store::{
    Credentials, Error, ImageReference, ImageStore, PullCheck, PullEvidence, PullRefusal,
    Registries, RegistriesConfig, RegistryConfig,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The logical registry the tests name; the fake registry is its mirror.
const LOGICAL: &str = "example.test";

/// Why [`Scripted`] refuses.
#[derive(Debug, thiserror::Error)]
#[error("refused: not on the list: {0}")]
struct NotListed(String);

/// A check that verifies or refuses as told, and remembers every call.
#[derive(Default)]
struct Scripted {
    /// References (`name:tag`) refused.
    refuse: Mutex<Vec<String>>,
    /// Each call: reference, digest, auth.
    calls: Mutex<Vec<(String, String, RegistryAuth)>>,
    /// A label put into every summary, to tell checks apart.
    label: &'static str,
    /// Held for this long in each call.
    delay: Duration,
}

impl Scripted {
    fn labelled(label: &'static str) -> Arc<Self> {
        Arc::new(Scripted {
            label,
            ..Default::default()
        })
    }

    fn refusing(self: &Arc<Self>, reference: &str) {
        self.refuse.lock().unwrap().push(reference.to_string());
    }

    fn calls(&self) -> Vec<(String, String, RegistryAuth)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl PullCheck for Scripted {
    async fn check(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        auth: &RegistryAuth,
    ) -> Result<PullEvidence, PullRefusal> {
        let call = (reference.to_string(), digest.to_string(), auth.clone());
        self.calls.lock().unwrap().push(call);
        tokio::time::sleep(self.delay).await;
        if self.refuse.lock().unwrap().contains(&reference.to_string()) {
            let detail = serde_json::json!({"refusedBy": self.label});
            return Err(PullRefusal::new(NotListed(reference.to_string()), detail));
        }
        Ok(PullEvidence {
            // Deliberately wrong: the store records the pull's own.
            reference: "somewhere.else/entirely".into(),
            digest: String::new(),
            verified: true,
            summary: format!("vouched for by {}", self.label),
            detail: serde_json::json!({"label": self.label}),
        })
    }
}

/// Requests the fake registry answered, by kind.
#[derive(Default)]
struct Counts {
    manifests: AtomicUsize,
    blobs: AtomicUsize,
}

/// A store whose `example.test` is only the fake registry serving
/// [`tiny`], and the fake's request counts.
async fn store() -> (tempfile::TempDir, ImageStore, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let seen = Arc::clone(&counts);
    let route = Arc::new(move |path: &str, _: &str| {
        if path.contains("/manifests/") {
            seen.manifests.fetch_add(1, Ordering::SeqCst);
        } else if path != "/v2/" {
            seen.blobs.fetch_add(1, Ordering::SeqCst);
        }
        tiny_response(path)
    });
    let address = fake_registry::serve_route(route, None).await;
    let registries = RegistriesConfig {
        registries: vec![RegistryConfig {
            prefix: LOGICAL.into(),
            mirrors: vec![address],
            insecure: true,
            mirrors_only: true,
            ..Default::default()
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store"), registries.load().unwrap())
        .await
        .unwrap();
    (dir, store, counts)
}

fn manifest_digest() -> String {
    sha256_digest(&tiny().manifest)
}

fn evidence_of(store: &ImageStore, reference: &str) -> Option<PullEvidence> {
    let image = store.status(reference).unwrap()?;
    image
        .evidence
        .into_iter()
        .find(|e| e.reference == reference)
}

#[tokio::test]
async fn a_refused_pull_fetches_nothing_past_the_top_manifest_and_stores_nothing() {
    let (dir, store, counts) = store().await;
    let check = Scripted::labelled("policy");
    let reference = format!("{LOGICAL}/app:v1");
    check.refusing(&reference);
    store.set_pull_check(Some(check.clone()));
    let credentials = Credentials {
        username: "me".into(),
        password: "pw".into(),
        ..Default::default()
    };
    let err = store.pull(&reference, Some(credentials)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::PolicyRefused { image, digest, .. }
            if *image == reference && digest.as_str() == manifest_digest()),
        "{text}"
    );
    assert!(
        text.contains(&reference) && text.contains("not on the list"),
        "{text}"
    );
    // The check saw the logical reference (not the mirror), D and the
    // pull's credentials.
    assert_eq!(
        check.calls(),
        [(
            reference.clone(),
            manifest_digest(),
            RegistryAuth::Basic {
                username: "me".into(),
                password: "pw".into()
            }
        )]
    );
    assert_eq!(counts.manifests.load(Ordering::SeqCst), 1);
    assert_eq!(counts.blobs.load(Ordering::SeqCst), 0, "nothing past D");
    assert!(store.list().is_empty());
    let root = dir.path().join("store");
    for sub in ["tmp", "layers", "images", "blobs/sha256", "blobs/sha512"] {
        assert!(entries(&root.join(sub)).is_empty(), "{sub}");
    }
}

#[tokio::test]
async fn evidence_is_recorded_per_reference_and_a_re_pull_replaces_it() {
    let (dir, store, _) = store().await;
    let first = Scripted::labelled("first");
    store.set_pull_check(Some(first.clone()));
    let (v1, v2) = (format!("{LOGICAL}/app:v1"), format!("{LOGICAL}/app:v2"));
    let image = store.pull(&v1, None).await.unwrap();
    assert_eq!(
        image.evidence,
        [PullEvidence {
            reference: v1.clone(),
            digest: manifest_digest(),
            verified: true,
            summary: "vouched for by first".into(),
            detail: serde_json::json!({"label": "first"}),
        }]
    );
    store.pull(&v2, None).await.unwrap();
    // Pulled again, under another check: checked again, its entry replaced,
    // the other reference's kept.
    let second = Scripted::labelled("second");
    store.set_pull_check(Some(second.clone()));
    let image = store.pull(&v1, None).await.unwrap();
    assert_eq!(second.calls().len(), 1, "a stored image is checked again");
    assert_eq!(image.evidence.len(), 2, "{:?}", image.evidence);
    assert_eq!(
        evidence_of(&store, &v1).unwrap().summary,
        "vouched for by second"
    );
    assert_eq!(
        evidence_of(&store, &v2).unwrap().summary,
        "vouched for by first"
    );
    // Without a check, pulls leave evidence as it is.
    store.set_pull_check(None);
    store.pull(&v1, None).await.unwrap();
    assert_eq!(
        evidence_of(&store, &v1).unwrap().summary,
        "vouched for by second"
    );
    // And it is on disk.
    drop(store);
    let reopened = ImageStore::open(dir.path().join("store"), Registries::default())
        .await
        .unwrap();
    assert_eq!(reopened.list()[0].evidence.len(), 2);
}

#[tokio::test]
async fn a_refused_re_pull_leaves_the_image_but_withdraws_its_verified_evidence() {
    let (_dir, store, _) = store().await;
    let check = Scripted::labelled("policy");
    store.set_pull_check(Some(check.clone()));
    let (v1, v2) = (format!("{LOGICAL}/app:v1"), format!("{LOGICAL}/app:v2"));
    store.pull(&v1, None).await.unwrap();
    store.pull(&v2, None).await.unwrap();
    check.refusing(&v1);
    let err = store.pull(&v1, None).await.unwrap_err();
    assert!(matches!(err, Error::PolicyRefused { .. }), "{err}");
    let stale = evidence_of(&store, &v1).expect("the image stays");
    assert!(!stale.verified);
    assert_eq!(stale.summary, format!("refused: not on the list: {v1}"));
    assert_eq!(stale.detail, serde_json::json!({"refusedBy": "policy"}));
    assert!(
        evidence_of(&store, &v2).unwrap().verified,
        "other references keep theirs"
    );
}

#[tokio::test]
async fn recheck_replaces_every_entry_with_the_new_checks_answer() {
    let (_dir, store, _) = store().await;
    store.set_pull_check(Some(Scripted::labelled("old")));
    let (v1, v2) = (format!("{LOGICAL}/app:v1"), format!("{LOGICAL}/app:v2"));
    let credentials = Credentials {
        registry_token: "t".into(),
        ..Default::default()
    };
    store.pull(&v1, Some(credentials)).await.unwrap();
    store.pull(&v2, None).await.unwrap();
    let new = Scripted::labelled("new");
    new.refusing(&v1);
    store.set_pull_check(Some(new.clone()));
    let report = store.recheck_evidence().await.unwrap();
    assert_eq!((report.replaced, report.changed, report.skipped), (2, 1, 0));
    assert!(!report.superseded);
    assert!(!evidence_of(&store, &v1).unwrap().verified);
    assert_eq!(
        evidence_of(&store, &v2).unwrap().summary,
        "vouched for by new"
    );
    // The store keeps no credentials: rechecks are anonymous.
    assert!(new
        .calls()
        .iter()
        .all(|(_, d, auth)| *d == manifest_digest() && *auth == RegistryAuth::Anonymous));
    // Without a check, nothing to do.
    store.set_pull_check(None);
    assert_eq!(store.recheck_evidence().await.unwrap().replaced, 0);
}

#[tokio::test]
async fn a_pull_under_a_replaced_check_is_not_joined_and_is_checked_again() {
    let (_dir, store, _) = store().await;
    let old = Arc::new(Scripted {
        label: "old",
        delay: Duration::from_millis(400),
        ..Default::default()
    });
    store.set_pull_check(Some(old.clone()));
    let reference = format!("{LOGICAL}/app:v1");
    let first = tokio::spawn({
        let (store, reference) = (store.clone(), reference.clone());
        async move { store.pull(&reference, None).await }
    });
    // The first pull is inside the old check (the manifest takes 100 ms).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = Scripted::labelled("new");
    store.set_pull_check(Some(new.clone()));
    let second = store.pull(&reference, None).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(old.calls().len(), 1);
    // The second pull's check, and the first one's again before recording.
    assert_eq!(new.calls().len(), 2, "{:?}", new.calls());
    for image in [first, second] {
        assert_eq!(image.evidence[0].summary, "vouched for by new");
    }
    assert_eq!(
        evidence_of(&store, &reference).unwrap().summary,
        "vouched for by new"
    );
}

#[tokio::test]
async fn set_evidence_replaces_the_same_digest_and_leaves_a_newer_pull_alone() {
    let (_dir, store, _) = store().await;
    store.set_pull_check(Some(Scripted::labelled("pull")));
    let v1 = format!("{LOGICAL}/app:v1");
    let image = store.pull(&v1, None).await.unwrap();
    let evidence = |digest: String, summary: &str| PullEvidence {
        reference: v1.clone(),
        digest,
        verified: false,
        summary: summary.into(),
        detail: serde_json::Value::Null,
    };
    assert!(store
        .set_evidence(&image.id, evidence(manifest_digest(), "re-evaluated"))
        .await
        .unwrap());
    assert_eq!(evidence_of(&store, &v1).unwrap().summary, "re-evaluated");
    let other = format!("sha256:{}", "e".repeat(64));
    assert!(!store
        .set_evidence(&image.id, evidence(other, "about another digest"))
        .await
        .unwrap());
    assert_eq!(evidence_of(&store, &v1).unwrap().summary, "re-evaluated");
    let unknown = format!("sha256:{}", "0".repeat(64));
    assert!(!store
        .set_evidence(&unknown, evidence(manifest_digest(), "x"))
        .await
        .unwrap());
}

#[tokio::test]
async fn concurrent_pulls_with_the_same_credentials_share_one_check() {
    let (_dir, store, counts) = store().await;
    let check = Scripted::labelled("shared");
    store.set_pull_check(Some(check.clone()));
    let reference = format!("{LOGICAL}/app:v1");
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let (store, reference) = (store.clone(), reference.clone());
            tokio::spawn(async move { store.pull(&reference, None).await })
        })
        .collect();
    for pull in pulls {
        let image = pull.await.unwrap().unwrap();
        assert_eq!(image.evidence[0].summary, "vouched for by shared");
    }
    assert_eq!(check.calls().len(), 1, "one pull, one check");
    assert_eq!(counts.manifests.load(Ordering::SeqCst), 1);
}
