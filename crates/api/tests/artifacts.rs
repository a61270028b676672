//! The artifact store through the daemon: usage, an artifact's content (checked before it is
//! sent), and garbage collection as `petri gc [--dry-run]` asks for it.

mod helpers;

use std::os::unix::fs::PermissionsExt;

use helpers::Fixture;
use petri_artifacts::{ArtifactStore, Artifacts, Digest, GcPolicy};
use petri_client::Client;
use petri_domain::token::{Scope, TokenRequest};
use petri_domain::{ErrorBody, ErrorCode};
use petri_store::{ReadPool, Store};

/// No waiting period, and no collection but the ones the test asks for.
const SETTINGS: &str = "[artifacts]\ngrace = \"0s\"\ngc_every = \"0s\"\n";

/// What a pipeline step would do: store its outputs under the daemon's home, beside the daemon.
fn artifacts_of(f: &Fixture) -> Artifacts {
    let db = f.home().join("petri.db");
    Artifacts::new(
        ArtifactStore::open(&f.home().join("artifacts")).unwrap(),
        Store::open(&db).unwrap(),
        ReadPool::open(&db, 1).unwrap(),
        GcPolicy::default(),
    )
}

async fn get(f: &Fixture, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap()
}

async fn error_of(resp: reqwest::Response) -> (u16, ErrorBody) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_are_served_checked_and_collected() {
    let f = Fixture::start(SETTINGS).await;
    let a = artifacts_of(&f);
    let work = f.work();
    std::fs::write(work.join("model.bin"), b"weights").unwrap();
    std::fs::create_dir_all(work.join("split/data")).unwrap();
    std::fs::write(work.join("split/data/train.csv"), b"x\n1\n").unwrap();
    std::fs::write(work.join("split/rows"), b"1").unwrap();
    let model = a.put_path(&work.join("model.bin"), "model:iris/1").unwrap();
    let split = a
        .put_path(&work.join("split"), "pipeline:r1/split/data")
        .unwrap();
    let damaged = a
        .put_reader(&b"results"[..], "pipeline:r1/eval/report")
        .unwrap();
    let orphan = a.blobs().put_reader(&b"written, then a crash"[..]).unwrap();

    let usage = f.client.artifact_usage().await.unwrap();
    assert_eq!(usage.referenced.count, 5, "{usage:?}");
    assert_eq!(usage.unreferenced.count, 0);
    assert_eq!(usage.max_size, 20 << 30);

    // A file's bytes, checked; a folder's manifest.
    let resp = get(&f, &format!("/api/v1/artifacts/{}", model.digest)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/octet-stream"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"weights");
    assert_eq!(
        f.client
            .artifact_bytes(model.digest.as_str())
            .await
            .unwrap(),
        b"weights"
    );
    let manifest: serde_json::Value = get(&f, &format!("/api/v1/artifacts/{}", split.digest))
        .await
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["data/train.csv", "rows"]);

    // Digests that are not digests, and ones the store does not have.
    for bad in [
        "sha256:..%2F..%2Fetc%2Fpasswd",
        "sha256:abc",
        "..%2F..%2Fpetri.db",
    ] {
        let (status, body) = error_of(get(&f, &format!("/api/v1/artifacts/{bad}")).await).await;
        assert_eq!(
            (status, body.code),
            (400, ErrorCode::InvalidDigest),
            "{bad}"
        );
    }
    let unknown = Digest::from_sha256([3; 32]);
    let (status, body) = error_of(get(&f, &format!("/api/v1/artifacts/{unknown}")).await).await;
    assert_eq!((status, body.code), (404, ErrorCode::ArtifactNotFound));

    // A blob changed on disk is refused, and the message says which.
    let path = f
        .home()
        .join("artifacts/sha256")
        .join(&damaged.digest.hex()[..2])
        .join(damaged.digest.hex());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"resultz").unwrap();
    let (status, body) =
        error_of(get(&f, &format!("/api/v1/artifacts/{}", damaged.digest)).await).await;
    assert_eq!((status, body.code), (500, ErrorCode::ArtifactCorrupt));
    assert!(
        body.message.contains(damaged.digest.as_str()) && body.message.contains("not served"),
        "{}",
        body.message
    );

    // `petri gc --dry-run`: what would go, and nothing changes.
    a.release_prefix("pipeline:r1/").unwrap();
    let dry = f.client.gc(true).await.unwrap();
    assert!(dry.dry_run);
    let mut would: Vec<Digest> = dry.removed.iter().map(|r| r.digest.clone()).collect();
    would.sort();
    assert_eq!(
        would.len(),
        5,
        "the folder, its two files, the damaged file, the orphan"
    );
    assert!(would.contains(&split.digest) && would.contains(&orphan.digest));
    assert!(!would.contains(&model.digest));
    assert_eq!(
        f.client.artifact_usage().await.unwrap().unreferenced.count,
        2
    );
    assert_eq!(
        get(&f, &format!("/api/v1/artifacts/{}", split.digest))
            .await
            .status(),
        200
    );

    // `petri gc`: the same, done.
    let done = f.client.gc(false).await.unwrap();
    let mut removed: Vec<Digest> = done.removed.iter().map(|r| r.digest.clone()).collect();
    removed.sort();
    assert_eq!(removed, would);
    assert_eq!(done.kept.count, 1);
    let (status, _) = error_of(get(&f, &format!("/api/v1/artifacts/{}", split.digest)).await).await;
    assert_eq!(status, 404);
    let usage = f.client.artifact_usage().await.unwrap();
    assert_eq!((usage.referenced.count, usage.unreferenced.count), (1, 0));
    let again = f.client.gc(false).await.unwrap();
    assert!(again.removed.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn collecting_garbage_is_the_admins_business() {
    let f = Fixture::start(SETTINGS).await;
    let submitter = f
        .client
        .token_create(&TokenRequest {
            name: "dashboard".into(),
            scopes: vec![Scope::Submit],
            expires_in: None,
            user: None,
        })
        .await
        .unwrap();
    let as_submitter = Client::new(f.base.clone(), Some(submitter.token));
    assert!(as_submitter.artifact_usage().await.is_ok());
    let err = as_submitter.gc(true).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // A body with a mistyped field is refused; none at all collects.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/gc", f.base))
        .bearer_auth(&f.token)
        .header("content-type", "application/json")
        .body(r#"{"dryrun": true}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(resp).await;
    assert_eq!((status, body.code), (400, ErrorCode::MalformedSpec));
    assert!(body.message.contains("dry_run"), "{}", body.message);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/gc", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
