//! A home that keeps everything: pages of jobs by cursor, range sweeps, retention of finished
//! jobs' files.

mod helpers;

use helpers::Fixture;
use petri_domain::sweep::SweepValues;
use petri_domain::{ErrorCode, JobState, ListOrder, ListQuery};

fn query(all: bool, limit: u32) -> ListQuery {
    ListQuery {
        all,
        limit: Some(limit),
        ..Default::default()
    }
}

/// Submits a held sweep of `n` jobs (they wait, so the list holds still).
async fn held_sweep(f: &Fixture, n: u32) -> Vec<petri_domain::Job> {
    let mut spec = f.script("true");
    spec.hold = true;
    spec.array
        .insert("i".into(), SweepValues::Range(format!("1..{n}")));
    f.client.submit(&[spec]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_each_other_without_gaps_or_repeats() {
    let f = Fixture::start("").await;
    let jobs = held_sweep(&f, 250).await;
    assert_eq!(jobs.len(), 250);

    // The active list, in the queue's order: 100, 100, 50.
    let mut q = query(false, 100);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = f.client.list(&q).await.unwrap();
        pages += 1;
        assert_eq!(page.limit, 100);
        seen.extend(page.jobs.iter().map(|j| j.number));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<u64> = jobs.iter().map(|j| j.number).collect();
    assert_eq!(seen, want, "every job once, oldest first");

    // Everything, newest first.
    let page = f.client.list(&query(true, 10)).await.unwrap();
    assert_eq!(page.jobs[0].number, 250);
    assert_eq!(page.jobs[9].number, 241);
    let next = page.next.clone().unwrap();
    let older = f
        .client
        .list(&ListQuery {
            after: Some(next.clone()),
            ..query(true, 10)
        })
        .await
        .unwrap();
    assert_eq!(older.jobs[0].number, 240);

    // A cursor of this list is refused by another (other filters, other order).
    for other in [
        ListQuery {
            after: Some(next.clone()),
            ..query(false, 10)
        },
        ListQuery {
            after: Some(next.clone()),
            order: Some(ListOrder::Oldest),
            ..query(true, 10)
        },
        ListQuery {
            after: Some(next.clone()),
            state: Some("held".into()),
            ..query(true, 10)
        },
    ] {
        let err = f.client.list(&other).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        assert!(err.to_string().contains("belongs to another list"), "{err}");
        assert!(
            err.to_string().contains(&next),
            "the cursor is named: {err}"
        );
    }
    // Nonsense, and a cursor that names no job.
    let tag = next.split_once('-').unwrap().1;
    for bad in ["nonsense".to_string(), format!("99999-{tag}")] {
        let err = f
            .client
            .list(&ListQuery {
                after: Some(bad.clone()),
                ..query(true, 10)
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        assert!(err.to_string().contains(&bad), "{err}");
    }

    // A page over the maximum is clamped and says so; a page of nothing is refused.
    let page = f.client.list(&query(true, 5000)).await.unwrap();
    assert_eq!(page.limit, 1000);
    assert_eq!(page.jobs.len(), 250);
    assert!(page.note.unwrap().contains("clamped to 1000"));
    let err = f.client.list(&query(true, 0)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));

    // Filters page the same way.
    let held = f
        .client
        .list(&ListQuery {
            state: Some("held".into()),
            ..query(true, 200)
        })
        .await
        .unwrap();
    assert_eq!(held.jobs.len(), 200);
    assert!(held.next.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_sweep_is_one_short_request_and_bad_ranges_are_refused() {
    let f = Fixture::start("").await;
    let mut spec = f.script("echo \"$lr\" > \"$PETRI_OUTPUT_DIR/lr\"");
    spec.array
        .insert("lr".into(), SweepValues::Range("0.1..0.3:0.1".into()));
    let jobs = f.client.submit(&[spec]).await.unwrap();
    let values: Vec<&str> = jobs.iter().map(|j| j.array_values["lr"].as_str()).collect();
    assert_eq!(values, ["0.1", "0.2", "0.3"]);
    for job in &jobs {
        let done = f.wait_done(job).await;
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
        let out = f.home().join("outputs").join(job.id.to_string()).join("lr");
        assert_eq!(
            std::fs::read_to_string(out).unwrap().trim(),
            job.array_values["lr"]
        );
    }

    for (range, says) in [
        ("1..10:0", "the step is 0"),
        ("1..1000000000", "at most 100000"),
        ("10..1", "never goes from 10 to 1"),
    ] {
        let mut spec = f.script("true");
        spec.array
            .insert("i".into(), SweepValues::Range(range.into()));
        let err = f.client.submit(&[spec]).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidSpec), "{range}: {err}");
        assert!(err.to_string().contains(says), "{range}: {err}");
    }
    assert_eq!(f.all_jobs().await.len(), 3, "nothing else was queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_the_oldest_files_keeps_the_record_and_spares_the_living() {
    // Room for about one job's files; no grace after a job ends; the timer off (gc runs it).
    let f =
        Fixture::start("[retention]\nmax_size = \"150KiB\"\nmin_age = \"0s\"\nevery = \"0s\"\n")
            .await;
    let writes = "head -c 100000 /dev/zero > \"$PETRI_OUTPUT_DIR/blob\"; echo written";
    let mut done = Vec::new();
    for _ in 0..3 {
        let job = f.submit(f.script(writes)).await;
        done.push(f.wait_done(&job).await);
    }
    let mut held = f.script(writes);
    held.hold = true;
    let held = f.submit(held).await;

    let usage = f.client.usage().await.unwrap();
    assert_eq!(usage.retention.max_size, 150 * 1024);
    assert!(usage.disk_total > 0);

    // A dry run says what would go and changes nothing.
    let dry = f.client.gc(true).await.unwrap().jobs.unwrap();
    assert!(dry.dry_run);
    let gone: Vec<u64> = dry.removed.iter().map(|j| j.number).collect();
    assert_eq!(gone, [done[0].number, done[1].number], "the oldest first");
    assert!(
        dry.removed
            .iter()
            .all(|j| j.why == "size" && j.bytes >= 100_000)
    );
    assert!(
        f.home()
            .join("outputs")
            .join(done[0].id.to_string())
            .exists()
    );

    let report = f.client.gc(false).await.unwrap().jobs.unwrap();
    assert_eq!(report.removed_jobs, 2);
    assert_eq!(report.kept_jobs, 1);
    for job in &done[..2] {
        assert!(!f.home().join("outputs").join(job.id.to_string()).exists());
        assert!(
            !f.home()
                .join("logs")
                .join(format!("{}.log", job.id))
                .exists()
        );
        let shown = f.client.job(&job.id.to_string()).await.unwrap();
        let pruned = shown.pruned.expect("the record notes what went");
        assert_eq!(pruned.why, "size");
        assert_eq!(
            shown.state,
            JobState::Succeeded,
            "the record stays as it was"
        );
        let err = f.client.log(&job.id.to_string(), 0).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::LogRemoved), "{err}");
    }
    // The newest finished job and the held one keep everything.
    let (log, _, _) = f.client.log(&done[2].id.to_string(), 0).await.unwrap();
    assert_eq!(log, b"written\n");
    assert!(
        f.client
            .job(&held.id.to_string())
            .await
            .unwrap()
            .pruned
            .is_none()
    );

    let usage = f.client.usage().await.unwrap();
    assert_eq!(usage.job_files.pruned_jobs, 2);
    assert_eq!(usage.job_files.jobs, 1);
    // A second pass finds nothing more to do.
    let again = f.client.gc(false).await.unwrap().jobs.unwrap();
    assert_eq!(again.removed_jobs, 0);
}

/// Only jobs that could start are walked by the scheduler's step: a job behind a dependency
/// named later in the same submission still waits for it, and a released job joins the line.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_behind_dependencies_and_holds_start_when_they_may() {
    let f = Fixture::start("").await;
    let mut report = f.script("test -f trained && touch reported");
    report.name = Some("report".into());
    report.after = vec!["train".into()];
    let mut train = f.script("sleep 0.3; touch trained");
    train.name = Some("train".into());
    let jobs = f.client.submit(&[report, train]).await.unwrap();
    assert!(
        jobs[0].number < jobs[1].number,
        "the dependant is numbered first"
    );
    let done = f.wait_done(&jobs[0]).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    assert!(f.work().join("reported").exists());

    // A held job with a dependant: neither starts until the release.
    let mut gate = f.script("touch gate-ran");
    gate.hold = true;
    let gate = f.submit(gate).await;
    let mut after = f.script("test -f gate-ran");
    after.after = vec![gate.id.to_string()];
    let after = f.submit(after).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waiting = f.client.job(&after.id.to_string()).await.unwrap();
    assert_eq!(waiting.state, JobState::Queued);
    assert!(waiting.pending.is_some(), "it says why it waits");
    f.client.release(&gate.id.to_string()).await.unwrap();
    assert_eq!(f.wait_done(&after).await.state, JobState::Succeeded);
}
