//! Ray's Jobs REST API (on the dashboard's port): the requests Petri makes and the answers it
//! reads. A job is an entrypoint (`/bin/sh` on the attempt's script on the shared path) with
//! Petri's id as its `submission_id`, its environment as `runtime_env.env_vars`, and its cpus,
//! GPUs and memory as `entrypoint_num_cpus`, `entrypoint_num_gpus` and `entrypoint_memory`.
//!
//! Authentication is Ray's token mode (`RAY_AUTH_MODE=token`): `Authorization: Bearer`. Ray
//! answers errors as plain text (a Python traceback for a refused submission, `Unauthorized:`
//! or `Forbidden:` for a missing or wrong token), not JSON.

use std::time::Duration;

use serde_json::{Value, json};

use petri_domain::ClusterCapacity;

use crate::engine::{BatchJob, Credential, JobState, PingError};

/// A Ray cluster's Jobs API at `base` (`http://head:8265`).
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// What went wrong with one request.
enum Failure {
    /// Nothing answered.
    Unreachable(String),
    /// An answer that is not a success: its status and its first words.
    Status(u16, String),
    Other(String),
}

impl Failure {
    fn words(self, base: &str) -> String {
        match self {
            Failure::Unreachable(m) | Failure::Other(m) => m,
            Failure::Status(401 | 403, text) => refused(base, &text),
            Failure::Status(code, text) => {
                format!("Ray at {base} answered HTTP {code}: {}", last_line(&text))
            }
        }
    }
}

fn refused(base: &str, text: &str) -> String {
    format!(
        "Ray at {base} refused the token (`{}`): give the cluster's token (`RAY_AUTH_TOKEN`, or \
         ~/.ray/auth_token on its head) with `petri cluster add`",
        last_line(text)
    )
}

/// The line of a plain-text error body that says what happened (a traceback ends with it).
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != ".")
        .unwrap_or("");
    line.chars().take(300).collect()
}

impl Api {
    pub fn new(base: &str) -> Result<Api, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn send(
        &self,
        cred: &Credential,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&cred.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let answer = req.send().await.map_err(|e| {
            Failure::Unreachable(format!("Ray at {} does not answer: {e}", self.base))
        })?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| Failure::Other(format!("Ray at {}: {e}", self.base)))?;
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16(), text));
        }
        serde_json::from_str(&text).map_err(|_| {
            let words: String = text.chars().take(200).collect();
            Failure::Other(format!(
                "Ray at {} answered HTTP {} with a body that is not JSON: {}",
                self.base,
                status.as_u16(),
                words.trim()
            ))
        })
    }

    async fn call(
        &self,
        cred: &Credential,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        self.send(cred, method, path, body)
            .await
            .map_err(|f| f.words(&self.base))
    }

    /// Submits under the job's name as its `submission_id`. Ray refuses a second submission
    /// of one id: that is the same attempt submitted before (a daemon that died before it
    /// wrote down the answer), so it counts as submitted.
    pub async fn submit(&self, cred: &Credential, job: &BatchJob) -> Result<String, String> {
        let body = submit_body(job);
        match self
            .send(cred, reqwest::Method::POST, "/api/jobs/", Some(&body))
            .await
        {
            Ok(v) => Ok(v
                .get("submission_id")
                .and_then(Value::as_str)
                .unwrap_or(&job.name)
                .to_string()),
            Err(Failure::Status(_, text)) if text.contains("already exists") => {
                Ok(job.name.clone())
            }
            Err(Failure::Status(code, text)) if code != 401 && code != 403 => {
                Err(format!("Ray refused it: {}", last_line(&text)))
            }
            Err(f) => Err(f.words(&self.base)),
        }
    }

    /// Every job submitted to the cluster (Ray keeps them while its head lives).
    pub async fn jobs(&self, cred: &Credential) -> Result<Vec<JobState>, String> {
        let v = self
            .call(cred, reqwest::Method::GET, "/api/jobs/", None)
            .await?;
        Ok(jobs_of(&v))
    }

    /// Stops a job (SIGTERM to its entrypoint's process group, SIGKILL after Ray's grace).
    pub async fn stop(&self, cred: &Credential, id: &str) -> Result<(), String> {
        self.call(
            cred,
            reqwest::Method::POST,
            &format!("/api/jobs/{id}/stop"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The job's log so far, without the lines Ray adds to it; while it runs (`!ended`), up to
    /// its last whole line.
    pub async fn logs(&self, cred: &Credential, id: &str, ended: bool) -> Result<String, String> {
        let v = self
            .call(
                cred,
                reqwest::Method::GET,
                &format!("/api/jobs/{id}/logs"),
                None,
            )
            .await?;
        let all = v.get("logs").and_then(Value::as_str).unwrap_or("");
        Ok(job_output(all, id, ended))
    }

    /// Ray's release (`2.60.0`).
    pub async fn ping(&self, cred: &Credential) -> Result<String, PingError> {
        // With token authentication on, every route asks for the token (the version too).
        match self
            .send(cred, reqwest::Method::GET, "/api/version", None)
            .await
        {
            Ok(v) => Ok(v
                .get("ray_version")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()),
            Err(Failure::Status(401 | 403, text)) => {
                Err(PingError::Refused(refused(&self.base, &text)))
            }
            Err(Failure::Unreachable(m)) => Err(PingError::Unreachable(m)),
            Err(f) => Err(PingError::Other(f.words(&self.base))),
        }
    }

    /// The live nodes' resources (`CPU`, `memory`, `GPU`).
    pub async fn capacity(&self, cred: &Credential) -> Result<ClusterCapacity, String> {
        let v = self
            .call(
                cred,
                reqwest::Method::GET,
                "/api/v0/nodes?limit=10000",
                None,
            )
            .await?;
        Ok(capacity_of(&v))
    }
}

fn submit_body(job: &BatchJob) -> Value {
    let env: serde_json::Map<String, Value> = job
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let metadata: serde_json::Map<String, Value> = job
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut body = json!({
        "entrypoint": format!("/bin/sh {}", quote(&job.script_file)),
        "submission_id": job.name,
        "runtime_env": { "env_vars": env },
        "metadata": metadata,
        // Ray reserves one cpu for an entrypoint only when asked; a job of Petri asks what
        // its spec says, one cpu at least, as it would here.
        "entrypoint_num_cpus": job.cpus.unwrap_or(1.0),
    });
    let b = body.as_object_mut().expect("an object");
    if let Some(g) = job.gpus {
        b.insert("entrypoint_num_gpus".into(), json!(g));
    }
    if let Some(m) = job.memory {
        b.insert("entrypoint_memory".into(), json!(m));
    }
    body
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn jobs_of(v: &Value) -> Vec<JobState> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|j| j.get("type").and_then(Value::as_str) == Some("SUBMISSION"))
        .filter_map(|j| {
            let id = j.get("submission_id")?.as_str()?.to_string();
            let state = j.get("status")?.as_str()?.to_string();
            let ended = matches!(state.as_str(), "STOPPED" | "SUCCEEDED" | "FAILED");
            let exit_code = match state.as_str() {
                "SUCCEEDED" => Some(0),
                "STOPPED" => Some(143),
                "FAILED" => j
                    .get("driver_exit_code")
                    .and_then(Value::as_i64)
                    .map(|c| c as i32),
                _ => None,
            };
            let reason = j
                .get("message")
                .and_then(Value::as_str)
                .and_then(|m| m.lines().next())
                .filter(|m| !m.is_empty() && ended && state != "SUCCEEDED")
                .map(|m| m.chars().take(300).collect());
            Some(JobState {
                name: id.clone(),
                id,
                state,
                ended,
                exit_code,
                reason,
            })
        })
        .collect()
}

fn capacity_of(v: &Value) -> ClusterCapacity {
    let mut c = ClusterCapacity::default();
    for n in v
        .pointer("/data/result/result")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|n| n.get("state").and_then(Value::as_str) == Some("ALIVE"))
    {
        let res = |k: &str| {
            n.pointer(&format!("/resources_total/{k}"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        let (cpus, memory, gpus) = (res("CPU") as u64, res("memory") as u64, res("GPU") as u64);
        c.add_node(cpus, memory, gpus);
    }
    c
}

/// What the job wrote. Ray's log holds its own lines too: `… INFO job_manager.py:… -- Runtime
/// env is setting up.` first, and `Running entrypoint for job ID: …`, which its supervisor
/// flushes whenever it does (often after the job's first lines). They are left out wherever
/// they are; while the job runs, a last line not ended yet waits for the next round.
fn job_output(log: &str, id: &str, ended: bool) -> String {
    let mark = format!("Running entrypoint for job {id}: ");
    let is_rays = |line: &str| {
        line.starts_with(&mark)
            || (line.starts_with(|c: char| c.is_ascii_digit())
                && line.contains("\tINFO job_manager.py:"))
    };
    let mut out = String::with_capacity(log.len());
    for line in log.split_inclusive('\n') {
        if !line.ends_with('\n') && !ended {
            break;
        }
        if !is_rays(line) {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_body_says_everything_the_spec_asked() {
        let body = submit_body(&BatchJob {
            name: "01J".into(),
            script_file: "/shared/petri/01J.1/job's.sh".into(),
            environment: vec![("A".into(), "b".into())],
            cpus: Some(0.5),
            memory: Some(1 << 30),
            gpus: Some(1),
            labels: vec![("petri.job".into(), "01J".into())],
            ..BatchJob::default()
        });
        assert_eq!(
            body["entrypoint"],
            r"/bin/sh '/shared/petri/01J.1/job'\''s.sh'"
        );
        assert_eq!(body["submission_id"], "01J");
        assert_eq!(body["runtime_env"]["env_vars"]["A"], "b");
        assert_eq!(body["entrypoint_num_cpus"], 0.5);
        assert_eq!(body["entrypoint_num_gpus"], 1);
        assert_eq!(body["entrypoint_memory"], 1u64 << 30);
        assert_eq!(body["metadata"]["petri.job"], "01J");
    }

    #[test]
    fn a_job_list_reads_states_and_exit_codes() {
        let v = json!([
            {"type": "SUBMISSION", "submission_id": "a", "status": "FAILED", "driver_exit_code": 3,
             "message": "Job entrypoint command failed with exit code 3, last available logs:\nx"},
            {"type": "SUBMISSION", "submission_id": "b", "status": "RUNNING", "message": "running"},
            {"type": "SUBMISSION", "submission_id": "c", "status": "STOPPED"},
            {"type": "DRIVER", "submission_id": null, "job_id": "01000000", "status": "SUCCEEDED"},
        ]);
        let jobs = jobs_of(&v);
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].exit_code, Some(3));
        assert!(jobs[0].ended);
        assert_eq!(
            jobs[0].reason.as_deref(),
            Some("Job entrypoint command failed with exit code 3, last available logs:")
        );
        assert!(!jobs[1].ended);
        assert_eq!(jobs[1].reason, None);
        assert_eq!(jobs[2].exit_code, Some(143));
    }

    #[test]
    fn the_log_is_the_jobs_own_lines() {
        let log = "2026-12-03 09:45:45,203\tINFO job_manager.py:581 -- Runtime env is setting up.\n\
                   hello\nRunning entrypoint for job 01J: /bin/sh '/s/job.sh'\nworld\npart";
        assert_eq!(job_output(log, "01J", false), "hello\nworld\n");
        assert_eq!(job_output(log, "01J", true), "hello\nworld\npart");
        // Another job's mark is the job's own words.
        assert_eq!(
            job_output("Running entrypoint for job 02K: x\n", "01J", true),
            "Running entrypoint for job 02K: x\n"
        );
    }

    #[test]
    fn capacity_counts_live_nodes() {
        let v = json!({"data": {"result": {"result": [
            {"state": "ALIVE", "resources_total": {"CPU": 2.0, "memory": 1e9, "GPU": 1.0}},
            {"state": "ALIVE", "resources_total": {"CPU": 8.0, "memory": 4e9}},
            {"state": "DEAD", "resources_total": {"CPU": 64.0}},
        ]}}});
        let c = capacity_of(&v);
        assert_eq!((c.nodes, c.cpus, c.gpus), (2, 10, 1));
        assert_eq!(c.max_node_cpus, 8);
        assert_eq!(c.max_node_memory, 4_000_000_000);
    }

    #[test]
    fn plain_text_errors_say_their_last_line() {
        let tb = "Traceback (most recent call last):\n  File x\nValueError: Job with submission_id \
                  x already exists.\n.\n";
        assert_eq!(
            last_line(tb),
            "ValueError: Job with submission_id x already exists."
        );
    }
}
