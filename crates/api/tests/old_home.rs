//! A home written by an older Petri opens and its jobs go on: `fixtures/v5.db` was made by the
//! release before stored records were versioned (schema 5, the spec stored in the API's wire
//! format; see `fixtures/make-v5-db.sh`). Every later migration must keep this test green.

mod helpers;

use helpers::Fixture;
use petri_domain::{ByteSize, JobState, Millis, Origin};

const FIXTURE: &[u8] = include_bytes!("fixtures/v5.db");
/// Where the fixture's waiting jobs run (their workdir, recorded in the database).
const WORK: &str = "/tmp/petri-fixture-v5";

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_5_home_opens_and_its_jobs_run_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("petri.db"), FIXTURE).unwrap();
    let work = std::path::Path::new(WORK);
    std::fs::create_dir_all(work).unwrap();
    for f in ["held.txt", "after.txt", "waits.txt"] {
        let _ = std::fs::remove_file(work.join(f));
    }
    let f = Fixture::start_in(dir).await;

    let all = f.all_jobs().await;
    let states: Vec<(u64, &str, JobState)> = all
        .iter()
        .map(|j| (j.number, j.name.as_str(), j.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, "ok", JobState::Succeeded),
            (2, "fails", JobState::Failed),
            (3, "sized", JobState::Succeeded),
            (4, "sweep", JobState::Succeeded),
            (5, "sweep", JobState::Succeeded),
            (6, "long", JobState::Cancelled),
            (7, "held", JobState::Held),
            (8, "after-held", JobState::Queued),
            (9, "waits", JobState::Held),
        ]
    );
    // The old wire format's units, read from the stored spec.
    let sized = f.client.job("3").await.unwrap();
    assert_eq!(sized.spec.resources.memory, Some(ByteSize(1 << 30)));
    assert_eq!(sized.spec.timeout, Some(Millis(3_600_000)));
    assert_eq!(
        (sized.spec.retries.max, sized.spec.retries.backoff),
        (2, Millis(30_000))
    );
    assert_eq!(sized.origin, Origin::Submission);
    assert_eq!(f.client.job("2").await.unwrap().exit_code, Some(3));
    let sweep = f.client.job("5").await.unwrap();
    assert_eq!(
        sweep.array_values.get("lr").map(String::as_str),
        Some("0.01")
    );
    let runs = f.client.job("1").await.unwrap().runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].target, "local");
    assert_eq!(f.client.job("8").await.unwrap().depends_on, vec![all[6].id]);

    // Their lifecycle goes on: released, run, and the dependant after them.
    f.client.release("7").await.unwrap();
    let held = f.wait_done(&all[6]).await;
    assert_eq!(held.state, JobState::Succeeded, "{held:#?}");
    let after = f.wait_done(&all[7]).await;
    assert_eq!(after.state, JobState::Succeeded, "{after:#?}");
    f.client.release("9").await.unwrap();
    let waits = f.wait_done(&all[8]).await;
    assert_eq!(waits.state, JobState::Succeeded, "{waits:#?}");
    assert_eq!(
        std::fs::read_to_string(work.join("waits.txt")).unwrap(),
        "hi\n"
    );
    assert!(work.join("held.txt").exists() && work.join("after.txt").exists());
    // New jobs take the next numbers.
    let next = f.submit(f.script("true")).await;
    assert_eq!(next.number, 10);
    assert_eq!(f.wait_done(&next).await.state, JobState::Succeeded);
}

/// A database from a newer Petri is refused with a clear message, and left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_home_from_a_newer_petri_is_refused_and_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("petri.db");
    std::fs::write(&db, FIXTURE).unwrap();
    set_user_version(&db, 9999);
    let before = std::fs::read(&db).unwrap();
    let settings = petri_daemon::Settings::load(Some(dir.path())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = petri_api::run(settings, listener, async {})
        .await
        .expect_err("a newer database is refused");
    let text = err.to_string();
    assert!(
        text.contains("newer Petri") && text.contains("upgrade"),
        "{text}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// Sets `PRAGMA user_version` in a database file without SQLite (the header's bytes 60..64).
fn set_user_version(db: &std::path::Path, version: u32) {
    let mut bytes = std::fs::read(db).unwrap();
    bytes[60..64].copy_from_slice(&version.to_be_bytes());
    std::fs::write(db, bytes).unwrap();
}
