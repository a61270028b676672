//! Container jobs with the real Docker engine and Petri's default image.

mod helpers;

use helpers::{Fixture, containers_of};
use petri_domain::{ErrorCode, JobSpec, JobState, Mount};

fn container(f: &Fixture, image: &str, script: &str) -> JobSpec {
    JobSpec {
        image: Some(image.to_string()),
        ..f.script(script)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_job_fails_with_its_exit_code_and_leaves_its_files() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("").await;
    let job = f
        .submit(container(
            &f,
            &image,
            "echo data > out.txt; echo result > \"$PETRI_OUTPUT_DIR/result\"; \
             echo \"uid $(id -u)\"; python3 -c 'print(6 * 7)'; exit 3",
        ))
        .await;
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Failed, "{:?}", done.reason);
    assert_eq!(done.exit_code, Some(3));
    // The workdir and the output folder are the host's own folders.
    assert_eq!(
        std::fs::read_to_string(f.work().join("out.txt")).unwrap(),
        "data\n"
    );
    let output = f.home().join("outputs").join(job.id.to_string());
    assert_eq!(
        std::fs::read_to_string(output.join("result")).unwrap(),
        "result\n"
    );
    // The job ran as the daemon's user, and its output reached the job log.
    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    let log = String::from_utf8(log).unwrap();
    let uid = nix_uid();
    assert_eq!(log, format!("uid {uid}\n42\n"));
    // Nothing is left behind in the engine.
    assert_eq!(containers_of(f.home()), Vec::<String>::new());
}

fn nix_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_container_and_removes_it() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("kill_grace = \"2s\"\n").await;
    // The shell ignores SIGTERM at first: the grace period ends with SIGKILL.
    let job = f
        .submit(container(&f, &image, "echo up; trap '' TERM; sleep 300"))
        .await;
    f.wait_state(&job, |s| s == JobState::Running).await;
    helpers::wait_until("the container's first line", || async {
        f.client
            .log(&job.id.to_string(), 0)
            .await
            .is_ok_and(|(b, _, _)| !b.is_empty())
    })
    .await;
    assert_eq!(containers_of(f.home()).len(), 1);
    f.client.cancel(&job.id.to_string()).await.unwrap();
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.exit_code, Some(137));
    helpers::wait_until("the container to be removed", || async {
        containers_of(f.home()).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_cancelled_while_it_starts_is_stopped_once_it_runs() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("kill_grace = \"2s\"\n").await;
    // Containers start off the engine thread; a cancel may come before Docker has answered with
    // the container's pid. The stop waits for the pid and then reaches the container.
    let jobs = f
        .client
        .submit(&[
            container(&f, &image, "sleep 300"),
            container(&f, &image, "sleep 300"),
        ])
        .await
        .unwrap();
    for job in &jobs {
        f.wait_state(job, |s| s == JobState::Running).await;
        f.client.cancel(&job.id.to_string()).await.unwrap();
    }
    for job in &jobs {
        assert_eq!(f.wait_done(job).await.state, JobState::Cancelled);
    }
    helpers::wait_until("the containers to be removed", || async {
        containers_of(f.home()).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_container_specs_are_refused_and_change_nothing() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("").await;
    let refused = |spec: JobSpec| {
        let client = f.client.clone();
        async move { client.submit(&[spec]).await.unwrap_err().code().unwrap() }
    };
    let missing = container(&f, "petri/no-such-image:1", "true");
    assert_eq!(refused(missing).await, ErrorCode::ImageNotFound);
    let mut outside = container(&f, &image, "true");
    outside.mounts = vec![Mount {
        source: "/etc".into(),
        target: None,
        read_only: true,
    }];
    assert_eq!(refused(outside).await, ErrorCode::MountNotAllowed);
    let mut escape = container(&f, &image, "true");
    escape.mounts = vec![Mount {
        source: f.home().join("../../etc"),
        target: None,
        read_only: false,
    }];
    assert_eq!(refused(escape).await, ErrorCode::InvalidSpec);
    let jobs = f.all_jobs().await;
    assert!(jobs.is_empty());
    assert!(containers_of(f.home()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_inside_the_home_is_seen_by_the_job() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("").await;
    let data = f.home().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "hello").unwrap();
    let mut spec = container(
        &f,
        &image,
        "cat /data/in.txt > seen; touch /data/x 2>/dev/null || echo read-only",
    );
    spec.mounts = vec![Mount {
        source: data.clone(),
        target: Some("/data".into()),
        read_only: true,
    }];
    let job = f.submit(spec).await;
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        std::fs::read_to_string(f.work().join("seen")).unwrap(),
        "hello"
    );
    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    assert_eq!(String::from_utf8(log).unwrap(), "read-only\n");

    // A mount of the job's own workdir (read-only) replaces Petri's bind of it; Docker would
    // refuse two binds of one folder.
    let mut spec = container(&f, &image, "ls seen; touch y 2>/dev/null || echo read-only");
    spec.mounts = vec![Mount {
        source: f.work().to_path_buf(),
        target: None,
        read_only: true,
    }];
    let job = f.submit(spec).await;
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    assert_eq!(String::from_utf8(log).unwrap(), "seen\nread-only\n");
}
