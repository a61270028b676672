//! Beyond loopback, TLS: the daemon generates a certificate at first start, the CLI on another
//! home trusts it by its fingerprint (and refuses a wrong one, or none, saying why), plain HTTP
//! gets no answer there, and jobs still reach the tracking API on a plain loopback address.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use petri_domain::JobState;

use crate::helpers::{BIN, Server, petri};
use crate::{jobs, parse};

#[test]
fn an_address_beyond_loopback_is_served_with_tls_trusted_by_fingerprint() {
    let server = Server::start_on("", "0.0.0.0:0");
    let home = server.home();
    let addr = std::fs::read_to_string(home.join("daemon.addr")).unwrap();
    let addr = addr.trim();
    assert!(addr.starts_with("https://0.0.0.0:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap();
    let fingerprint = std::fs::read_to_string(home.join("tls/fingerprint")).unwrap();
    let fingerprint = fingerprint.trim().to_string();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    let key = std::fs::metadata(home.join("tls/key.pem")).unwrap();
    assert_eq!(
        key.permissions().mode() & 0o077,
        0,
        "the key is the daemon's alone"
    );
    let token = std::fs::read_to_string(home.join("token")).unwrap();

    // From another home (another machine, as far as the CLI knows).
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |url: &str, fp: Option<&str>| -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(["whoami", "--json"])
            .env_clear()
            .env("PETRI_HOME", elsewhere.path())
            .env("PETRI_SERVER", url)
            .env("PETRI_TOKEN", token.trim())
            .env("NO_COLOR", "1");
        if let Some(fp) = fp {
            cmd.env("PETRI_FINGERPRINT", fp);
        }
        cmd.output().unwrap()
    };
    let url = format!("https://127.0.0.1:{port}");
    let me: petri_domain::Me = parse(&remote(&url, Some(&fingerprint)));
    assert_eq!(me.credential, "owner");
    // Written as people copy it: upper case, with colons.
    let shouted = fingerprint
        .trim_start_matches("sha256:")
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_string())
        .collect::<Vec<_>>()
        .join(":");
    assert!(remote(&url, Some(&shouted)).status.success());
    // No fingerprint: a self-signed certificate is refused, and the CLI says it was the
    // certificate, not a missing daemon.
    let refused = remote(&url, None);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("certificate") && !err.contains("no Petri daemon"),
        "{err}"
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    let refused = remote(&url, Some(&wrong));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("fingerprint"),
        "{err}"
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = remote(&format!("http://127.0.0.1:{port}"), None);
    assert!(!plain.status.success());

    // A job reaches the tracking API over plain HTTP on loopback, with its own token.
    let script = "import os, urllib.request\n\
        uri = os.environ['MLFLOW_TRACKING_URI']\n\
        print('uri', uri)\n\
        req = urllib.request.Request(uri + '/api/2.0/mlflow/experiments/search?max_results=1', \
        headers={'Authorization': 'Bearer ' + os.environ['MLFLOW_TRACKING_TOKEN']})\n\
        print('status', urllib.request.urlopen(req).status)\n";
    let made = jobs(&petri(
        home,
        &["submit", "--json", "--", "python3", "-c", script],
    ));
    server.wait_state(&made[0], JobState::Succeeded);
    let log = String::from_utf8_lossy(&petri(home, &["logs", &made[0].number.to_string()]).stdout)
        .to_string();
    assert!(log.contains("uri http://127.0.0.1:"), "{log}");
    assert!(log.contains("status 200"), "{log}");
}
