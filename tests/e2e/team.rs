//! Team mode as a shared workstation has it: the daemon runs as root, three Unix users made by
//! the test call it over its socket with no token, each as themselves. Their jobs run as them
//! and leave files they own; a member cannot read, cancel or open what is another's, and an admin
//! can; a member over quota waits with the reason; fair share lets a light user through a heavy
//! user's backlog; the audit log holds every change; a revoked token is refused.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use petri_domain::{AuditEntry, Job, JobState, Me};

use crate::helpers::{BIN, Server, petri, wait_until};
use crate::{jobs, parse};

const ANN: &str = "pt-ann";
const BEN: &str = "pt-ben";
const CAT: &str = "pt-cat";

/// Makes the test's Unix users (kept for the next run), or `None` when this is not root (a
/// failure under `CI=true`, where the test command runs as root).
fn users() -> Option<[u32; 3]> {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "team mode's test makes Unix users: it runs as root"
        );
        eprintln!("SKIPPED: team mode's test makes Unix users and needs root");
        return None;
    }
    let mut uids = [0; 3];
    for (i, name) in [ANN, BEN, CAT].iter().enumerate() {
        if nix::unistd::User::from_name(name).unwrap().is_none() {
            let made = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", name])
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "useradd {name}: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        uids[i] = nix::unistd::User::from_name(name)
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
    }
    Some(uids)
}

/// `petri ARGS` as the Unix user `user`: a clean environment, the home's socket found from
/// `PETRI_HOME`, no token anywhere.
fn as_user(home: &Path, user: &str, args: &[&str]) -> Output {
    as_user_with(home, user, args, None)
}

fn as_user_with(home: &Path, user: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--", BIN])
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", format!("/home/{user}"))
        .env("PETRI_HOME", home)
        .env("NO_COLOR", "1")
        .current_dir(format!("/home/{user}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        writeln!(input, "{text}").unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "petri failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A refusal naming the owner.
fn refused_for(out: &Output, owner: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should have been refused");
    assert!(
        err.contains(&format!("belongs to {owner}")) && err.contains("FORBIDDEN"),
        "{err}"
    );
}

fn submit(home: &Path, user: &str, args: &[&str]) -> Job {
    let mut all = vec!["submit", "--json"];
    all.extend_from_slice(args);
    let mut made = jobs(&as_user(home, user, &all));
    assert_eq!(made.len(), 1);
    made.remove(0)
}

fn job(home: &Path, job: &Job) -> Job {
    parse(&petri(home, &["show", "--json", &job.id.to_string()]))
}

#[test]
fn three_unix_users_share_one_daemon_running_as_root() {
    let Some([ann_uid, ben_uid, _]) = users() else {
        return;
    };
    // One cpu: one job runs at a time, so who goes next is the scheduler's choice.
    let server = Server::start("[capacity]\ncpus = 1\n");
    let home = server.home();
    assert!(home.join("petri.sock").exists());

    // Identity from the kernel: each is themselves, a member on first contact.
    for user in [ANN, BEN, CAT] {
        let me: Me = parse(&as_user(home, user, &["whoami", "--json"]));
        assert_eq!(me.name, user);
        assert_eq!(me.role.as_str(), "member");
        assert_eq!(me.credential, "socket");
        assert!(me.team);
    }
    let me: Me = parse(&petri(home, &["whoami", "--json"]));
    assert_eq!(me.role.as_str(), "admin");

    // Jobs run as their owner, and what they write is the owner's.
    let a = submit(
        home,
        ANN,
        &[
            "--",
            "sh",
            "-c",
            "id -u; echo $HOME; echo private > \"$PETRI_OUTPUT_DIR/out.txt\"",
        ],
    );
    assert_eq!(a.user, ANN);
    server.wait_state(&a, JobState::Succeeded);
    let log = ok(&as_user(home, ANN, &["logs", &a.number.to_string()]));
    assert!(log.contains(&ann_uid.to_string()), "{log}");
    assert!(log.contains(&format!("/home/{ANN}")), "{log}");
    let out_file = home.join("outputs").join(a.id.to_string()).join("out.txt");
    let meta = std::fs::metadata(&out_file).unwrap();
    assert_eq!(meta.uid(), ann_uid);
    assert_eq!(meta.mode() & 0o077, 0, "only its owner reads it");
    // Ben can read neither the log through Petri nor the file through Unix.
    refused_for(&as_user(home, BEN, &["logs", &a.number.to_string()]), ANN);
    let peek = Command::new("runuser")
        .args(["-u", BEN, "--", "cat", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!peek.status.success(), "ben read ann's output");
    // A job of Ben's cannot read Ann's output either.
    let b = submit(home, BEN, &["--", "cat", out_file.to_str().unwrap()]);
    server.wait_state(&b, JobState::Failed);
    let meta = std::fs::metadata(home.join("outputs").join(b.id.to_string())).unwrap();
    assert_eq!(meta.uid(), ben_uid);

    // Cancel: not another's job; an admin may. Ben sees the job, not the values of its
    // environment.
    let long = submit(
        home,
        ANN,
        &["--env", "WANDB_KEY=k3y-of-ann", "--", "sleep", "300"],
    );
    let seen_by_ben: Job = parse(&as_user(
        home,
        BEN,
        &["show", "--json", &long.number.to_string()],
    ));
    assert_eq!(seen_by_ben.user, ANN);
    assert!(
        !seen_by_ben.spec.env["WANDB_KEY"].contains("k3y"),
        "{:?}",
        seen_by_ben.spec.env
    );
    let seen_by_ann: Job = parse(&as_user(
        home,
        ANN,
        &["show", "--json", &long.number.to_string()],
    ));
    assert_eq!(seen_by_ann.spec.env["WANDB_KEY"], "k3y-of-ann");
    server.wait_state(&long, JobState::Running);
    refused_for(
        &as_user(home, BEN, &["cancel", &long.number.to_string()]),
        ANN,
    );
    refused_for(
        &as_user(home, BEN, &["hold", &long.number.to_string()]),
        ANN,
    );
    // Everyone sees the queue: names, owners, resources.
    let seen = ok(&as_user(home, BEN, &["ls", "--all"]));
    assert!(seen.contains(ANN) && seen.contains("USER"), "{seen}");
    let mine: petri_domain::JobPage =
        parse(&as_user(home, BEN, &["ls", "--all", "--mine", "--json"]));
    assert!(!mine.jobs.is_empty() && mine.jobs.iter().all(|j| j.user == BEN));
    assert!(ok(&petri(home, &["logs", &a.number.to_string()])).contains("/home/"));
    ok(&petri(home, &["cancel", &long.number.to_string()]));
    server.wait_state(&long, JobState::Cancelled);

    // Secrets: Ann's is hers; Ben neither lists it nor runs a job with it.
    ok(&as_user_with(
        home,
        ANN,
        &["secret", "set", "ANN_KEY"],
        Some("s3cr3t-of-ann"),
    ));
    let bens: Vec<serde_json::Value> = parse(&as_user(home, BEN, &["secret", "ls", "--json"]));
    assert!(bens.is_empty(), "{bens:?}");
    let stolen = as_user(home, BEN, &["submit", "--secret", "ANN_KEY", "--", "true"]);
    assert!(!stolen.status.success());
    assert!(String::from_utf8_lossy(&stolen.stderr).contains(&format!("belongs to {ANN}")));
    let with_secret = submit(home, ANN, &["--secret", "ANN_KEY", "--", "true"]);
    server.wait_state(&with_secret, JobState::Succeeded);

    // Roles: a member does not administer; a viewer does not submit.
    let denied = as_user(home, ANN, &["user", "quota", CAT, "--running", "1"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("member may not"));
    ok(&petri(home, &["user", "set-role", CAT, "viewer"]));
    let viewer = as_user(home, CAT, &["submit", "--", "true"]);
    assert!(!viewer.status.success());
    assert!(String::from_utf8_lossy(&viewer.stderr).contains("viewer"));
    ok(&petri(home, &["user", "set-role", CAT, "member"]));

    // Quotas: nonsense is refused; one running job for Cat makes the second wait, saying why.
    let bad = petri(home, &["user", "quota", CAT, "--cpus", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_QUOTA"));
    ok(&petri(home, &["user", "quota", CAT, "--running", "1"]));
    let c1 = submit(home, CAT, &["--cpus", "0.5", "--", "sleep", "300"]);
    let c2 = submit(home, CAT, &["--cpus", "0.5", "--", "sleep", "300"]);
    server.wait_state(&c1, JobState::Running);
    wait_until(
        "cat's second job to wait for the quota",
        Duration::from_secs(30),
        || {
            job(home, &c2)
                .pending
                .is_some_and(|p| p.reason.to_string().contains("quota"))
        },
    );
    let shown = ok(&as_user(home, CAT, &["show", &c2.number.to_string()]));
    assert!(shown.contains("quota"), "{shown}");
    ok(&as_user(
        home,
        CAT,
        &["cancel", &c1.number.to_string(), &c2.number.to_string()],
    ));
    server.wait_state(&c1, JobState::Cancelled);

    // Fair share: Ann queues a backlog; Ben's one job, queued after it, runs next.
    let backlog: Vec<Job> = parse(&as_user(
        home,
        ANN,
        &["submit", "--json", "--array", "i=1..4", "--", "sleep", "1"],
    ));
    server.wait_state(&backlog[0], JobState::Running);
    let light = submit(home, BEN, &["--", "true"]);
    server.wait_state(&light, JobState::Succeeded);
    let light = job(home, &light);
    let second = job(home, &backlog[1]);
    assert!(
        second
            .started_at_ms
            .is_none_or(|s| s >= light.started_at_ms.unwrap()),
        "ann's second job started before ben's"
    );
    for j in &backlog {
        server.wait_state(j, JobState::Succeeded);
    }

    // Tokens: Ann's token acts as Ann; Ben cannot revoke it; once revoked it is refused.
    let token = ok(&as_user(home, ANN, &["token", "create", "laptop"]))
        .trim()
        .to_string();
    let addr = std::fs::read_to_string(home.join("daemon.addr")).unwrap();
    let over_tcp = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PETRI_SERVER", addr.trim())
            .env("PETRI_TOKEN", &token)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let me: Me = parse(&over_tcp(&["whoami", "--json"]));
    assert_eq!((me.name.as_str(), me.credential.as_str()), (ANN, "token"));
    let via_tcp: Vec<Job> = parse(&over_tcp(&[
        "submit",
        "--json",
        "--workdir",
        "/tmp",
        "--",
        "true",
    ]));
    assert_eq!(via_tcp[0].user, ANN);
    refused_for(&as_user(home, BEN, &["token", "revoke", "laptop"]), ANN);
    ok(&as_user(home, ANN, &["token", "revoke", "laptop"]));
    let gone = over_tcp(&["ls"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("UNAUTHORIZED"));

    // The audit log: every change, who, from where; members may not read it.
    let audit: Vec<AuditEntry> = parse(&petri(home, &["audit", "--json", "--limit", "1000"]));
    let has = |user: &str, action: &str, status: Option<u16>| {
        audit.iter().any(|e| {
            e.user == user && e.action == action && (status.is_none() || e.status == status)
        })
    };
    for user in [ANN, BEN, CAT] {
        assert!(has(user, "user.join", None), "{user} joined");
        assert!(has(user, "job.submit", Some(201)), "{user} submitted");
    }
    assert!(has(BEN, "job.cancel", Some(403)));
    assert!(has("root", "job.cancel", Some(200)));
    assert!(has("root", "user.role", Some(200)));
    assert!(has("root", "quota.set", Some(200)));
    assert!(has(ANN, "secret.set", None));
    assert!(has(ANN, "secret.read", None));
    assert!(has(ANN, "token.create", Some(201)));
    assert!(has(ANN, "token.revoke", Some(200)));
    assert!(
        audit
            .iter()
            .any(|e| e.user == ANN && e.origin == format!("socket uid={ann_uid}"))
    );
    assert!(
        audit
            .iter()
            .any(|e| e.user == ANN && e.origin == "token laptop from 127.0.0.1"),
        "{audit:?}"
    );
    let by_ann: Vec<AuditEntry> = parse(&petri(
        home,
        &["audit", "--json", "--user", ANN, "--since", "1h"],
    ));
    assert!(!by_ann.is_empty() && by_ann.iter().all(|e| e.user == ANN));
    let denied = as_user(home, ANN, &["audit"]);
    assert!(!denied.status.success());
}
