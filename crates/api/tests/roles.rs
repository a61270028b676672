//! Every route, walked as each role: the OpenAPI document's (read from the running daemon), and
//! the MLflow, Open Inference Protocol and notebook routes that are not in it. A viewer reads
//! (MLflow's dashboards too) and changes nothing; a member does not administer, and is refused (naming the owner) what is another
//! member's; an admin is refused nothing; nobody without a credential gets past 401.

mod helpers;

use helpers::Fixture;
use petri_domain::token::{Scope, TokenRequest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MIA: &str = "pt-mia";
const MAX: &str = "pt-max";
const VIC: &str = "pt-vic";

/// A daemon running as root runs jobs as their owner's Unix account: the walk's users get one
/// (kept for the next run).
fn unix_user(name: &str) {
    if !nix::unistd::geteuid().is_root() || nix::unistd::User::from_name(name).unwrap().is_some() {
        return;
    }
    let made = std::process::Command::new("useradd")
        .args(["--create-home", name])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// Who walks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Viewer,
    /// A member, walking another member's things.
    Other,
    /// The member whose things they are.
    Owner,
    Admin,
}

/// The things of Mia's the walk is about.
struct Things {
    job: String,
    notebook: Option<String>,
}

fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Routes only an admin may use.
fn admin_only(method: &Method, path: &str) -> bool {
    path == "/api/v1/gc"
        || path == "/api/v1/images/build"
        || path == "/api/v1/audit"
        || path.starts_with("/api/v1/quotas/")
        || (path.starts_with("/api/v1/users/") && !reads(method))
}

/// Routes about a thing of Mia's: refused to another member and a viewer, naming her.
fn mias(method: &Method, template: &str) -> bool {
    match template {
        "/api/v1/jobs/{id}/cancel" | "/api/v1/jobs/{id}/hold" | "/api/v1/jobs/{id}/release" => true,
        "/api/v1/jobs/{id}/log" | "/api/v1/jobs/{id}/log/stream" => true,
        "/api/v1/secrets/{name}" | "/api/v1/tokens/{token}" => true,
        "/api/v1/notebooks/{name}" => !reads(method),
        "/api/v1/notebooks/{name}/open" | "/api/v1/notebooks/{name}/stop" => true,
        _ => false,
    }
}

/// What `who` must get: `Some("role")` for a refusal by role, `Some("owner")` for one naming
/// Mia, `None` for anything but 403.
fn expected(who: Who, method: &Method, template: &str, path: &str) -> Option<&'static str> {
    let mlflow = path.starts_with("/api/2.0/mlflow");
    let mlflow_read = mlflow && (reads(method) || path.contains("/search"));
    let tokens = path.starts_with("/api/v1/tokens");
    let inference = path.starts_with("/v2");
    match who {
        Who::Admin => None,
        _ if admin_only(method, path) => Some("role"),
        // A viewer reads MLflow's API (the dashboards: gets and searches) but changes nothing
        // through it.
        Who::Viewer if mlflow && !mlflow_read => Some("role"),
        Who::Viewer if !reads(method) && !tokens && !inference && !mlflow_read => Some("role"),
        Who::Viewer | Who::Other if mias(method, template) => Some("owner"),
        _ => None,
    }
}

/// A route's path with its parameters filled in from Mia's things.
fn fill(template: &str, things: &Things) -> String {
    let nb = things.notebook.as_deref().unwrap_or("no-such-notebook");
    let mut path = template.to_string();
    let by_area = [
        ("/api/v1/jobs/{id}", "{id}", things.job.as_str()),
        ("/api/v1/pipeline-runs/{id}", "{id}", "999"),
        ("/api/v1/runs/{id}", "{id}", "no-such-run"),
        ("/api/v1/notebooks/{name}", "{name}", nb),
        ("/api/v1/secrets/{name}", "{name}", "MIA_KEY"),
        ("/api/v1/users/{name}", "{name}", MIA),
        ("/api/v1/pipelines/{name}", "{name}", "no-such-pipeline"),
        ("/api/v1/models/{name}", "{name}", "no-such-model"),
        ("/api/v1/deployments/{name}", "{name}", "no-such-deployment"),
    ];
    for (prefix, param, value) in by_area {
        if path.starts_with(prefix) {
            path = path.replacen(param, value, 1);
        }
    }
    path.replace("{token}", "mia-spare")
        .replace("{subject}", MIA)
        .replace("{digest}", "sha256:00")
        .replace("{version}", "1")
        .replace("{alias}", "prod")
        .replace("{key}", "loss")
        .replace("{upload}", "no-such-upload")
        .replace("{path}", "model.json")
}

async fn send(base: &str, token: Option<&str>, method: Method, path: &str) -> (StatusCode, String) {
    let mut rb = reqwest::Client::new().request(method.clone(), format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if !reads(&method) {
        // A body that parses where the owner decides after parsing (a secret's value).
        let body = if path.starts_with("/api/v1/secrets/") {
            json!({ "value": "x" })
        } else {
            json!({})
        };
        rb = rb.json(&body);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    // Streams (events, a running job's log) are not read to their end.
    let text = if resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("event-stream"))
    {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, text)
}

async fn token_for(f: &Fixture, user: &str, name: &str) -> String {
    let made = f
        .client
        .token_create(&TokenRequest {
            name: name.into(),
            scopes: vec![Scope::Admin],
            expires_in: None,
            user: Some(user.into()),
        })
        .await
        .unwrap();
    assert_eq!(made.info.user, user);
    made.token
}

/// The routes the OpenAPI document does not hold: MLflow's, the inference protocol's.
const OTHER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/2.0/mlflow/experiments/search"),
    (
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
    ),
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("POST", "/api/2.0/mlflow/runs/create"),
    ("POST", "/api/2.0/mlflow/runs/search"),
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("GET", "/api/2.0/mlflow/registered-models/search"),
    ("POST", "/api/2.0/mlflow/registered-models/create"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/no-such-model"),
    ("POST", "/v2/models/no-such-model/infer"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_route_as_each_role() {
    let image = helpers::docker_image();
    let toml = match &image {
        Some(i) => format!("[notebooks]\nimage = \"{i}\"\n"),
        None => String::new(),
    };
    let f = Fixture::start(&toml).await;
    for user in [MIA, MAX, VIC] {
        unix_user(user);
    }
    for (user, role) in [(MIA, "member"), (MAX, "member"), (VIC, "viewer")] {
        let (status, text) = send(
            &f.base,
            Some(&f.token),
            Method::PUT,
            &format!("/api/v1/users/{user}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "an empty body: {text}");
        let answer = reqwest::Client::new()
            .put(format!("{}/api/v1/users/{user}", f.base))
            .bearer_auth(&f.token)
            .json(&json!({ "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let mia = token_for(&f, MIA, "mia-t").await;
    let max = token_for(&f, MAX, "max-t").await;
    let vic = token_for(&f, VIC, "vic-t").await;
    // Only an admin makes a token for someone else.
    let as_max = petri_client::Client::new(f.base.clone(), Some(max.clone()));
    let refused = as_max
        .token_create(&TokenRequest {
            name: "sneaky".into(),
            scopes: vec![],
            expires_in: None,
            user: Some(MIA.into()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(petri_domain::ErrorCode::Forbidden));

    // Mia's things: a running job, a secret, a spare token, a notebook (with an engine).
    let as_mia = petri_client::Client::new(f.base.clone(), Some(mia.clone()));
    let job = as_mia
        .submit(&[f.script("sleep 600")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.user, MIA);
    let put = reqwest::Client::new()
        .put(format!("{}/api/v1/secrets/MIA_KEY", f.base))
        .bearer_auth(&mia)
        .json(&json!({ "value": "v4lue" }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    as_mia
        .token_create(&TokenRequest {
            name: "mia-spare".into(),
            scopes: vec![Scope::Read],
            expires_in: None,
            user: None,
        })
        .await
        .unwrap();
    let notebook = match &image {
        Some(_) => {
            let (status, text) = {
                let resp = reqwest::Client::new()
                    .post(format!("{}/api/v1/notebooks", f.base))
                    .bearer_auth(&mia)
                    .json(&json!({ "name": "mias-lab" }))
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.text().await.unwrap())
            };
            assert_eq!(status, StatusCode::CREATED, "{text}");
            let nb: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(nb["user"], MIA);
            helpers::wait_until("mia's notebook to run", || async {
                let nb: Value = f.get_json("/api/v1/notebooks/mias-lab").await;
                assert_ne!(nb["state"], "stopped", "{nb}");
                nb["state"] == "running"
            })
            .await;
            Some("mias-lab".to_string())
        }
        None => None,
    };
    // The notebooks' own address, from a sign-in link (before Mia's walk stops her notebook).
    let notebooks_base = match &notebook {
        Some(nb) => {
            let link = as_mia.notebook_link(nb).await.unwrap();
            link[..link.find("/notebooks/").unwrap()].to_string()
        }
        None => String::new(),
    };
    let things = Things {
        job: job.number.to_string(),
        notebook,
    };

    let mut early: Vec<String> = Vec::new();
    // The OpenAPI document, as the daemon serves it.
    let doc: Value = f.get_json("/api/v1/openapi.json").await;
    let mut routes: Vec<(Method, String, String)> = Vec::new();
    for (template, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, template.clone(), fill(template, &things)));
        }
    }
    assert!(routes.len() > 60, "{} routes", routes.len());
    for (method, path) in OTHER_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        routes.push((method, path.to_string(), path.to_string()));
    }
    // The notebooks' own address: a bearer token of another member, or a viewer, is refused;
    // Mia's own is let through.
    if let Some(nb) = &things.notebook {
        for (who, token, refused) in [
            (Who::Viewer, &vic, true),
            (Who::Other, &max, true),
            (Who::Owner, &mia, false),
        ] {
            let (status, text) = send(
                &notebooks_base,
                Some(token),
                Method::GET,
                &format!("/notebooks/{nb}/api/status"),
            )
            .await;
            if (status == StatusCode::FORBIDDEN) != refused {
                early.push(format!(
                    "{who:?} on the notebook's address: {status} {text}"
                ));
            }
        }
        let (status, _) = send(
            &notebooks_base,
            None,
            Method::GET,
            &format!("/notebooks/{nb}/lab"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A change by Mia to her own things goes last: she would cancel the job the others walk.
    let walkers = [
        (Who::Viewer, vic.as_str()),
        (Who::Other, max.as_str()),
        (Who::Admin, f.token.as_str()),
        (Who::Owner, mia.as_str()),
    ];
    let mut failures = early;
    for (method, _, path) in &routes {
        let (status, _) = send(&f.base, None, method.clone(), path).await;
        if status != StatusCode::UNAUTHORIZED {
            failures.push(format!("{method} {path} without a token: {status}"));
        }
    }
    for (who, token) in walkers {
        for (method, template, path) in &routes {
            // Mia and the admin do not revoke the walk's own credentials, nor remove what
            // others walk after them.
            if who == Who::Admin && mias(method, template) && !reads(method) {
                continue;
            }
            // Without an engine (outside CI) Mia has no notebook: nothing of hers to refuse
            // naming her (those routes answer 404); refusals by role are still checked.
            if path.contains("/no-such-notebook")
                && expected(who, method, template, path) == Some("owner")
            {
                continue;
            }
            let (status, text) = send(&f.base, Some(token), method.clone(), path).await;
            let want = expected(who, method, template, path);
            let forbidden = status == StatusCode::FORBIDDEN;
            let ok = match want {
                None => !forbidden,
                Some("owner") => forbidden && text.contains(&format!("belongs to {MIA}")),
                Some(_) => forbidden,
            };
            if !ok {
                failures.push(format!(
                    "{who:?} {method} {path}: {status} (wanted {}) {text}",
                    want.map_or("not 403".to_string(), |w| format!("403 by {w}"))
                ));
            }
        }
    }

    let _ = f.client.cancel(&job.id.to_string()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
