//! Secrets from the CLI (`petri secret set|ls|rm`, `petri submit --secret`), given to a local and
//! a container job, and masked in their logs also after the daemon was killed with SIGKILL while
//! they ran.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use petri_domain::{Job, JobState, SecretInfo, SecretKind};

use crate::helpers::{Server, petri, petri_cmd, wait_until};
use crate::{jobs_one, parse};

pub const VALUE: &str = "hf_e2eQ7wV4nM2kX8pR5tZ1";
const FILE: &str = "{\n  \"username\": \"ada\",\n  \"key\": \"e2e0f9e8d7c6b5\"\n}\n";
/// What `echo "$HF_TOKEN"; cat "$KAGGLE_JSON"` leaves in a job's log: every secret masked.
pub const EXPECTED: &str = "***\n{\n  ***\n  ***\n}\n";

fn log_of(home: &Path, job: &Job) -> String {
    let out = petri(home, &["logs", &job.id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sets the secrets `HF_TOKEN` ([`VALUE`], from stdin, never as an argument) and `kaggle.json`
/// ([`FILE`], by its path) for the home's user; a job that names both sees `$HF_TOKEN` and
/// `$KAGGLE_JSON`, and its log shows [`EXPECTED`] for `echo "$HF_TOKEN"; cat "$KAGGLE_JSON"`.
pub fn set_both(home: &Path, work: &Path) {
    let mut set = petri_cmd(home)
        .args(["secret", "set", "HF_TOKEN"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(set.stdin.take().unwrap(), "{VALUE}").unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(work.join("kaggle.json"), FILE).unwrap();
    let file = work.join("kaggle.json");
    let out = petri(
        home,
        &[
            "secret",
            "set",
            "kaggle.json",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_from_the_cli_reach_jobs_masked_across_a_sigkill_of_the_daemon() {
    let mut server = Server::start("");
    let home = server.home().to_path_buf();
    let work = server.work();

    set_both(&home, &work);
    let listed: Vec<SecretInfo> = parse(&petri(&home, &["secret", "ls", "--json"]));
    let kinds: Vec<(&str, SecretKind)> = listed.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("HF_TOKEN", SecretKind::Value),
            ("kaggle.json", SecretKind::File)
        ]
    );
    let table = petri(&home, &["secret", "ls"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("kaggle.json"));
    assert!(!String::from_utf8_lossy(&table.stdout).contains(VALUE));

    // An unknown secret is refused, and nothing is queued.
    let refused = petri(&home, &["submit", "--secret", "NOPE", "--", "true"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("SECRET_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(server.client_jobs(&["--all"]).is_empty());

    let script = "echo \"before $HF_TOKEN\"; cat \"$KAGGLE_JSON\"; \
                  while [ ! -f go ]; do sleep 0.05; done; echo \"after $HF_TOKEN\"";
    let submit = |extra: &[&str]| -> Job {
        let mut args = vec![
            "submit",
            "--json",
            "--secret",
            "HF_TOKEN",
            "--secret",
            "kaggle.json",
            "--workdir",
            work.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--run", script]);
        crate::jobs(&petri(&home, &args)).remove(0)
    };
    let mut jobs = vec![submit(&[])];
    if let Some(image) = crate::containers::image() {
        jobs.push(submit(&["--image", &image]));
    }
    let expected_first = "before ***\n{\n  ***\n  ***\n}\n";
    for job in &jobs {
        server.wait_state(job, JobState::Running);
        wait_until("the job's first lines", Duration::from_secs(60), || {
            log_of(&home, job) == expected_first
        });
    }

    server.kill9();
    server.restart();
    std::fs::write(work.join("go"), "").unwrap();
    for job in &jobs {
        server.wait_state(job, JobState::Succeeded);
        assert_eq!(log_of(&home, job), format!("{expected_first}after ***\n"));
        let shown = petri(&home, &["show", "--json", &job.id.to_string()]);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(!text.contains(VALUE), "{text}");
        assert_eq!(jobs_one(&shown).spec.secrets.len(), 2);
        // The job's private copy of the file went with it.
        assert!(!home.join("run/secrets").join(job.id.to_string()).exists());
    }

    let out = petri(&home, &["secret", "rm", "HF_TOKEN"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<SecretInfo> = parse(&petri(&home, &["secret", "ls", "--json"]));
    assert_eq!(listed.len(), 1);
}
