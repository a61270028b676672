use std::os::unix::fs::PermissionsExt;

use petri_domain::{Job, JobId, JobSpec, Origin, RunKey, SecretUse};

use super::*;

const VALUE: &str = "hf_TheValueNobodyMaySee42";

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn set(s: &Secrets, name: &str, kind: SecretKind, value: &str, user: &str) -> SecretInfo {
    s.set(
        name,
        kind,
        SecretValue::new(value.as_bytes().to_vec()),
        user,
        false,
    )
    .unwrap()
    .0
}

fn code(e: SecretsError) -> ErrorCode {
    ErrorBody::from(e).code
}

#[test]
fn a_value_is_encrypted_at_rest_and_comes_back_with_the_key() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    let info = set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    assert_eq!(info.owner, "ada");
    let file = home.path().join("secrets/HF_TOKEN.secret");
    let stored = fs::read(&file).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(!text.contains(VALUE), "{text}");
    assert!(!text.contains(&BASE64.encode(VALUE)), "{text}");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A daemon started later reads the names, and the value with the key.
    let again = Secrets::open(home.path()).unwrap();
    assert_eq!(again.info("HF_TOKEN"), Some(info));
    assert_eq!(
        again.reveal("HF_TOKEN").unwrap().1.as_bytes(),
        VALUE.as_bytes()
    );
}

#[test]
fn a_wrong_key_fails_clearly() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    let key = home.path().join("secrets/key");
    fs::write(&key, [7u8; 32]).unwrap();
    let err = Secrets::open(home.path())
        .unwrap()
        .reveal("HF_TOKEN")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be decrypted with the key"), "{err}");
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(!err.contains(VALUE));
}

#[test]
fn clear_metadata_cannot_be_edited_to_take_a_secret() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    let file = home.path().join("secrets/HF_TOKEN.secret");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("\"ada\"", "\"eve\"");
    fs::write(&file, text).unwrap();
    let again = Secrets::open(home.path()).unwrap();
    let err = again.reveal("HF_TOKEN").unwrap_err();
    assert!(matches!(err, SecretsError::Undecryptable { .. }), "{err}");
}

#[test]
fn only_the_owner_or_an_admin_replaces_or_removes() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    let first = set(&s, "token", SecretKind::Value, "one", "ada");
    let value = || SecretValue::new(b"two".to_vec());
    let err = s
        .set("token", SecretKind::Value, value(), "eve", false)
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
    assert_eq!(
        code(s.remove("token", "eve", false).unwrap_err()),
        ErrorCode::Forbidden
    );
    // An admin may; the secret stays its owner's.
    let (replaced, new) = s
        .set("token", SecretKind::Value, value(), "root", true)
        .unwrap();
    assert!(!new);
    assert_eq!(replaced.owner, "ada");
    assert_eq!(replaced.created_at_ms, first.created_at_ms);
    assert_eq!(s.reveal("token").unwrap().1.as_bytes(), b"two");
    assert_eq!(s.list("eve", false), Vec::new());
    assert_eq!(s.list("ada", false).len(), 1);
    s.remove("token", "ada", false).unwrap();
    assert_eq!(
        code(s.remove("token", "ada", false).unwrap_err()),
        ErrorCode::SecretNotFound
    );
    assert!(!home.path().join("secrets/token.secret").exists());
}

#[test]
fn bad_names_and_values_are_refused_and_change_nothing() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    let try_set = |name: &str, kind, value: Vec<u8>| {
        code(
            s.set(name, kind, SecretValue::new(value), "ada", false)
                .unwrap_err(),
        )
    };
    for name in ["../escape", ".hidden", "a/b", "", "key secret"] {
        assert_eq!(
            try_set(name, SecretKind::Value, b"v".to_vec()),
            ErrorCode::InvalidSecret
        );
    }
    let big = vec![b'x'; MAX_SECRET_BYTES + 1];
    assert_eq!(
        try_set("big", SecretKind::File, big),
        ErrorCode::InvalidSecret
    );
    assert_eq!(
        try_set("empty", SecretKind::Value, Vec::new()),
        ErrorCode::InvalidSecret
    );
    assert_eq!(
        try_set("nul", SecretKind::Value, b"a\0b".to_vec()),
        ErrorCode::InvalidSecret
    );
    let bad64 = SecretRequest {
        value: "not base64!".into(),
        kind: SecretKind::File,
    };
    assert_eq!(
        code(s.put("f", bad64, "ada", false).unwrap_err()),
        ErrorCode::InvalidSecret
    );
    assert!(s.list("ada", true).is_empty());
    assert!(!home.path().join("secrets").exists(), "nothing was made");
}

#[test]
fn a_value_never_prints() {
    let v = SecretValue::new(VALUE.as_bytes().to_vec());
    assert!(!format!("{v:?}").contains(VALUE));
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    let (info, value) = s.reveal("HF_TOKEN").unwrap();
    assert!(!format!("{info:?} {value:?} {s:?}").contains(VALUE));
}

fn spec(uses: &str) -> JobSpec {
    JobSpec::from_yaml(&format!("command: [env]\nsecrets: {uses}")).unwrap()
}

#[test]
fn admission_wants_existing_secrets_of_the_submitter_in_variables() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    set(&s, "dotted.value", SecretKind::Value, VALUE, "ada");
    set(&s, "kaggle.json", SecretKind::File, "{}", "ada");
    assert!(s.admit(&spec("[HF_TOKEN, kaggle.json]"), "ada").is_ok());
    assert_eq!(
        s.admit(&spec("[nope]"), "ada").unwrap_err().code,
        ErrorCode::SecretNotFound
    );
    assert_eq!(
        s.admit(&spec("[HF_TOKEN]"), "eve").unwrap_err().code,
        ErrorCode::Forbidden
    );
    // A value goes into the variable of its name, which must be one.
    assert_eq!(
        s.admit(&spec("[dotted.value]"), "ada").unwrap_err().code,
        ErrorCode::InvalidSpec
    );
    assert!(
        s.admit(&spec("[{name: dotted.value, env: DOTTED}]"), "ada")
            .is_ok()
    );
    // Two secrets in one variable.
    let twice = spec("[kaggle.json, {name: HF_TOKEN, env: KAGGLE_JSON}]");
    assert_eq!(
        s.admit(&twice, "ada").unwrap_err().code,
        ErrorCode::InvalidSpec
    );
}

fn job(spec: JobSpec, user: &str) -> Job {
    Job {
        id: JobId::new(),
        number: 1,
        name: "j".into(),
        state: petri_domain::JobState::Running,
        queue: "default".into(),
        priority: 0,
        origin: Origin::Submission,
        user: user.into(),
        spec,
        array_values: Default::default(),
        depends_on: Vec::new(),
        submitted_at_ms: 0,
        started_at_ms: None,
        finished_at_ms: None,
        exit_code: None,
        reason: None,
        attempts: 1,
        pending: None,
        runs: Vec::new(),
        pruned: None,
        remote: None,
    }
}

fn key(job: &Job) -> RunKey {
    RunKey {
        job: job.id,
        attempt: 1,
        target: "local".into(),
    }
}

#[test]
fn a_launch_gets_variables_and_private_files_that_go_when_it_ends() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    let json = "{\n  \"username\": \"ada\",\n  \"key\": \"0123456789abcdef\"\n}\n";
    set(&s, "kaggle.json", SecretKind::File, json, "ada");
    let hook = s.attempt_hook();
    let mut container = job(
        spec("[HF_TOKEN, {name: kaggle.json, env: KAGGLE_CONFIG}]"),
        "ada",
    );
    container.spec.image = Some("petri/python:3.11".into());
    let extras = hook.launch(&container, 1).unwrap();
    assert!(!format!("{extras:?}").contains(VALUE));
    let env: BTreeMap<_, _> = extras.env.iter().cloned().collect();
    assert_eq!(env["HF_TOKEN"], VALUE);
    let path = PathBuf::from(&env["KAGGLE_CONFIG"]);
    assert_eq!(path, s.run_dir(container.id).join("kaggle.json"));
    assert_eq!(fs::read_to_string(&path).unwrap(), json);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(extras.mounts.len(), 1);
    assert!(extras.mounts[0].read_only);
    assert_eq!(extras.mounts[0].target, s.run_dir(container.id));
    // The value, and the file's lines of more than three characters, without their blanks.
    let mask: Vec<String> = extras
        .mask
        .iter()
        .map(|m| String::from_utf8(m.clone()).unwrap())
        .collect();
    assert!(mask.contains(&VALUE.to_string()), "{mask:?}");
    assert!(
        mask.contains(&"\"key\": \"0123456789abcdef\"".to_string()),
        "{mask:?}"
    );
    assert!(!mask.iter().any(|m| m == "{" || m == "}"), "{mask:?}");
    // A re-adopting daemon masks the same, without writing anything.
    assert_eq!(hook.mask(&container), extras.mask);
    hook.ended(&key(&container));
    assert!(!s.run_dir(container.id).exists());

    // A local job gets no mount; after a restart, files of attempts that no longer run go.
    let local = job(spec("[kaggle.json]"), "ada");
    let gone = job(spec("[kaggle.json]"), "ada");
    assert!(hook.launch(&local, 1).unwrap().mounts.is_empty());
    hook.launch(&gone, 1).unwrap();
    hook.sweep(&[key(&local)]);
    assert!(s.run_dir(local.id).join("kaggle.json").exists());
    assert!(!s.run_dir(gone.id).exists());
}

#[test]
fn a_launch_fails_for_a_secret_gone_or_not_the_jobs_users() {
    let home = home();
    let s = Secrets::open(home.path()).unwrap();
    set(&s, "HF_TOKEN", SecretKind::Value, VALUE, "ada");
    let hook = s.attempt_hook();
    let err = hook.launch(&job(spec("[HF_TOKEN]"), "eve"), 1).unwrap_err();
    assert!(err.contains("belongs to ada"), "{err}");
    s.remove("HF_TOKEN", "ada", false).unwrap();
    let err = hook.launch(&job(spec("[HF_TOKEN]"), "ada"), 1).unwrap_err();
    assert!(err.contains("no secret `HF_TOKEN`"), "{err}");
}

#[test]
fn short_lines_are_not_masked_alone() {
    let m = hooks::masks(b"ab\nabcd\n  abcde  \r\n", SecretKind::File);
    assert_eq!(m, vec![b"abcd".to_vec(), b"abcde".to_vec()]);
    let m = hooks::masks(b"ab", SecretKind::Value);
    assert_eq!(m, vec![b"ab".to_vec()]);
    assert_eq!(SecretUse::named("x").variable(SecretKind::File), "X");
}

#[test]
fn a_sealed_credential_opens_under_its_label_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Secrets::open(dir.path()).unwrap();
    let sealed = s.seal("cluster hpc for ada", b"jwt-123").unwrap();
    assert!(!sealed.contains("jwt-123"));
    let again = Secrets::open(dir.path()).unwrap();
    assert_eq!(
        again.unseal("cluster hpc for ada", &sealed).unwrap(),
        b"jwt-123"
    );
    assert!(again.unseal("cluster hpc for eve", &sealed).is_err());
    assert!(again.unseal("cluster hpc for ada", "not base64!").is_err());
}
