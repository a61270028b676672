//! slurmrestd: the requests Petri makes and the answers it reads, behind a [`Dialect`] per
//! OpenAPI version (`v0.0.38` for Slurm 22.05; newer releases changed the shapes, so a version
//! is a dialect of its own, chosen by the cluster's `api_version`).
//!
//! Authentication is Slurm's JWT: `X-SLURM-USER-NAME` and `X-SLURM-USER-TOKEN` on every
//! request. slurmrestd answers errors as JSON with an `errors` list, usually with HTTP 500
//! (a bad token too, as "slurmctld config is unable to load"); a proxy in between may answer
//! anything, so a body that is not JSON is reported by its status and first words.

use std::time::Duration;

use serde_json::{Value, json};

use petri_domain::ClusterCapacity;

use crate::engine::{BatchJob, Credential, JobState, PingError};

/// What differs between slurmrestd's OpenAPI versions.
pub trait Dialect: Send + Sync {
    /// `v0.0.38`.
    fn version(&self) -> &'static str;
    fn submit_body(&self, job: &BatchJob) -> Value;
    /// The job id of a submission's answer.
    fn submitted_id(&self, answer: &Value) -> Option<u64>;
    fn jobs(&self, answer: &Value) -> Vec<JobState>;
    fn capacity(&self, nodes: &Value) -> ClusterCapacity;
    fn partitions(&self, answer: &Value) -> Vec<String>;
    fn release(&self, ping: &Value) -> Option<String>;
}

/// Slurm 22.05's `openapi/v0.0.38`.
pub struct V0038;

impl Dialect for V0038 {
    fn version(&self) -> &'static str {
        "v0.0.38"
    }

    fn submit_body(&self, job: &BatchJob) -> Value {
        let environment: serde_json::Map<String, Value> = job
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut props = json!({
            "name": job.name,
            "current_working_directory": job.workdir,
            "standard_output": job.output,
            // In v0.0.38 the environment is required, and it is all the job gets.
            "environment": environment,
            // A job of Petri is never requeued behind its back: an attempt is one run.
            "requeue": false,
        });
        let p = props.as_object_mut().expect("an object");
        if let Some(part) = &job.partition {
            p.insert("partition".into(), json!(part));
        }
        if let Some(c) = job.cpus {
            p.insert("cpus_per_task".into(), json!(c.ceil().max(1.0) as u32));
        }
        if let Some(m) = job.memory {
            p.insert("memory_per_node".into(), json!(m.div_ceil(1 << 20).max(1)));
        }
        if let Some(t) = job.time_limit_min {
            p.insert("time_limit".into(), json!(t));
        }
        if let Some(g) = job.gpus {
            p.insert("gres".into(), json!(format!("gpu:{g}")));
        }
        json!({ "script": job.script, "job": props })
    }

    fn submitted_id(&self, answer: &Value) -> Option<u64> {
        answer.get("job_id").and_then(Value::as_u64)
    }

    fn jobs(&self, answer: &Value) -> Vec<JobState> {
        let Some(jobs) = answer.get("jobs").and_then(Value::as_array) else {
            return Vec::new();
        };
        jobs.iter()
            .filter_map(|j| {
                let state = j.get("job_state")?.as_str()?.to_string();
                let ended = !matches!(state.as_str(), "PENDING" | "RUNNING");
                Some(JobState {
                    id: j.get("job_id")?.as_u64()?.to_string(),
                    ended: is_final(&state),
                    name: j.get("name").and_then(Value::as_str)?.to_string(),
                    exit_code: j
                        .get("exit_code")
                        .and_then(Value::as_i64)
                        .filter(|_| ended)
                        .map(|status| shell_code(status as i32)),
                    reason: j
                        .get("state_reason")
                        .and_then(Value::as_str)
                        .filter(|r| *r != "None")
                        .map(str::to_string),
                    state,
                })
            })
            .collect()
    }

    fn capacity(&self, nodes: &Value) -> ClusterCapacity {
        let mut c = ClusterCapacity::default();
        for n in nodes
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cpus = n.get("cpus").and_then(Value::as_u64).unwrap_or(0);
            let memory = n.get("real_memory").and_then(Value::as_u64).unwrap_or(0) << 20;
            let gpus = n
                .get("gres")
                .and_then(Value::as_str)
                .map(gres_gpus)
                .unwrap_or(0);
            c.add_node(cpus, memory, gpus);
        }
        c
    }

    fn partitions(&self, answer: &Value) -> Vec<String> {
        answer
            .get("partitions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("name")?.as_str().map(str::to_string))
            .collect()
    }

    fn release(&self, ping: &Value) -> Option<String> {
        ping.pointer("/meta/Slurm/release")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// The dialect of an OpenAPI version, or what is spoken.
pub fn dialect(version: &str) -> Result<Box<dyn Dialect>, String> {
    match version {
        "v0.0.38" => Ok(Box::new(V0038)),
        other => Err(format!(
            "slurmrestd's OpenAPI `{other}` is not spoken yet; Petri speaks v0.0.38 (Slurm 22.05): \
             start slurmrestd with `-s openapi/v0.0.38`"
        )),
    }
}

/// Whether Slurm is done with a job in this state.
fn is_final(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "SUSPENDED"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
    )
}

/// A wait status as Slurm keeps it (`exit_code`) as a shell's exit code.
fn shell_code(status: i32) -> i32 {
    let signal = status & 0x7f;
    if signal != 0 {
        128 + signal
    } else {
        (status >> 8) & 0xff
    }
}

/// GPUs in a node's `gres` (`gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:1,mps:100`).
fn gres_gpus(gres: &str) -> u64 {
    gres.split(',')
        .filter(|g| g.starts_with("gpu"))
        .filter_map(|g| {
            let g = g.split('(').next()?;
            g.rsplit(':').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A slurmrestd at `base`, spoken to in one dialect.
pub struct Api {
    http: reqwest::Client,
    base: String,
    dialect: Box<dyn Dialect>,
}

impl Api {
    pub fn new(base: &str, version: &str) -> Result<Api, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            dialect: dialect(version)?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/slurm/{}/{path}", self.base, self.dialect.version())
    }

    /// One request, its answer parsed; a body that is not JSON is an error naming the status
    /// and the body's first words.
    async fn send(
        &self,
        cred: &Credential,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-SLURM-USER-NAME", &cred.user)
            .header("X-SLURM-USER-TOKEN", &cred.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let answer = req
            .send()
            .await
            .map_err(|e| format!("slurmrestd at {} does not answer: {e}", self.base))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| format!("slurmrestd at {}: {e}", self.base))?;
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            let words: String = text.chars().take(200).collect();
            return Err(format!(
                "slurmrestd at {} answered HTTP {} with a body that is not JSON: {}",
                self.base,
                status.as_u16(),
                words.trim()
            ));
        };
        Ok((status, value))
    }

    /// A request whose answer must hold no error.
    async fn call(
        &self,
        cred: &Credential,
        method: reqwest::Method,
        path: &str,
    ) -> Result<Value, String> {
        let (status, value) = self.send(cred, method, path, None).await?;
        let errors = errors_of(&value);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        if !status.is_success() {
            return Err(format!(
                "slurmrestd at {} answered HTTP {}",
                self.base,
                status.as_u16()
            ));
        }
        Ok(value)
    }

    /// Submits; the job's id. An answer that holds an id *and* errors (Slurm 22.05 accepts a
    /// job it can never run with "Requested partition configuration not available now") is
    /// cancelled and refused.
    pub async fn submit(&self, cred: &Credential, job: &BatchJob) -> Result<u64, String> {
        let body = self.dialect.submit_body(job);
        let (status, value) = self
            .send(cred, reqwest::Method::POST, "job/submit", Some(&body))
            .await?;
        let errors = errors_of(&value);
        let id = self.dialect.submitted_id(&value).filter(|id| *id > 0);
        match (id, errors.is_empty()) {
            (Some(id), true) if status.is_success() => Ok(id),
            (Some(id), _) => {
                let _ = self.cancel(cred, id).await;
                Err(format!("Slurm cannot run it: {}", errors.join("; ")))
            }
            (None, _) if !errors.is_empty() => {
                Err(format!("Slurm refused it: {}", credential_words(&errors)))
            }
            (None, _) => Err(format!(
                "slurmrestd answered HTTP {} without a job id",
                status.as_u16()
            )),
        }
    }

    /// Every job the cluster still knows (Slurm without slurmdbd forgets ended ones after
    /// `MinJobAge`).
    pub async fn jobs(&self, cred: &Credential) -> Result<Vec<JobState>, String> {
        let v = self.call(cred, reqwest::Method::GET, "jobs").await?;
        Ok(self.dialect.jobs(&v))
    }

    /// Cancels (scancel: SIGTERM, then SIGKILL after the cluster's `KillWait`).
    pub async fn cancel(&self, cred: &Credential, id: u64) -> Result<(), String> {
        self.call(cred, reqwest::Method::DELETE, &format!("job/{id}"))
            .await
            .map(|_| ())
    }

    /// The release (`22.05.8`); an error tells a refused credential from the rest.
    pub async fn ping(&self, cred: &Credential) -> Result<String, PingError> {
        let v = self
            .call(cred, reqwest::Method::GET, "ping")
            .await
            .map_err(|e| {
                let words = credential_words(std::slice::from_ref(&e));
                if words != e {
                    PingError::Refused(words)
                } else if e.contains("does not answer") {
                    PingError::Unreachable(e)
                } else {
                    PingError::Other(e)
                }
            })?;
        Ok(self.dialect.release(&v).unwrap_or_default())
    }

    pub async fn capacity(&self, cred: &Credential) -> Result<ClusterCapacity, String> {
        let v = self.call(cred, reqwest::Method::GET, "nodes").await?;
        Ok(self.dialect.capacity(&v))
    }

    pub async fn partitions(&self, cred: &Credential) -> Result<Vec<String>, String> {
        let v = self.call(cred, reqwest::Method::GET, "partitions").await?;
        Ok(self.dialect.partitions(&v))
    }
}

fn errors_of(v: &Value) -> Vec<String> {
    v.get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let error = e.get("error").and_then(Value::as_str).unwrap_or("");
            let description = e.get("description").and_then(Value::as_str).unwrap_or("");
            match (error, description) {
                ("", d) => d.to_string(),
                (e, "") => e.to_string(),
                (e, d) => format!("{e} ({d})"),
            }
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// slurmrestd says a refused JWT in its own words ("slurmctld config is unable to load");
/// this says what it means.
fn credential_words(errors: &[String]) -> String {
    let joined = errors.join("; ");
    if joined.contains("unable to load") || joined.contains("Authentication failure") {
        format!(
            "the cluster refused the credential (an expired or wrong token? make a new one with \
             `scontrol token` and add it again with `petri cluster add`): {joined}"
        )
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_read_as_shell_codes() {
        assert_eq!(shell_code(0), 0);
        assert_eq!(shell_code(3 << 8), 3);
        assert_eq!(shell_code(9), 137);
        assert_eq!(shell_code(15), 143);
    }

    #[test]
    fn gpus_are_counted_in_every_gres_form() {
        assert_eq!(gres_gpus(""), 0);
        assert_eq!(gres_gpus("gpu:2"), 2);
        assert_eq!(gres_gpus("gpu:a100:4(S:0-1)"), 4);
        assert_eq!(gres_gpus("gpu:1,mps:100"), 1);
    }

    #[test]
    fn a_v0038_job_body_says_everything_the_spec_asked() {
        let body = V0038.submit_body(&BatchJob {
            name: "petri-1".into(),
            script: "#!/bin/sh\ntrue\n".into(),
            partition: Some("gpu".into()),
            workdir: "/shared/w".into(),
            output: "/shared/log".into(),
            environment: vec![("A".into(), "b".into())],
            cpus: Some(1.5),
            memory: Some(512 << 20),
            time_limit_min: Some(3),
            gpus: Some(1),
            ..BatchJob::default()
        });
        let job = &body["job"];
        assert_eq!(job["partition"], "gpu");
        assert_eq!(job["cpus_per_task"], 2);
        assert_eq!(job["memory_per_node"], 512);
        assert_eq!(job["time_limit"], 3);
        assert_eq!(job["gres"], "gpu:1");
        assert_eq!(job["environment"]["A"], "b");
        assert_eq!(body["script"], "#!/bin/sh\ntrue\n");
    }

    #[test]
    fn a_v0038_job_list_reads_states_and_exit_codes() {
        let answer = json!({"jobs": [
            {"job_id": 7, "name": "a", "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode"},
            {"job_id": 8, "name": "b", "job_state": "RUNNING", "exit_code": 0, "state_reason": "None"},
            {"job_id": 9, "name": "c", "job_state": "PENDING", "exit_code": 0, "state_reason": "Resources"},
        ]});
        let jobs = V0038.jobs(&answer);
        assert_eq!(jobs[0].exit_code, Some(3));
        assert!(jobs[0].ended);
        assert_eq!(jobs[1].exit_code, None);
        assert_eq!(jobs[1].reason, None);
        assert!(!jobs[1].ended);
        assert!(!jobs[1].view().waiting);
        let pending = jobs[2].view();
        assert!(pending.waiting && !jobs[2].ended);
        assert_eq!(pending.reason.as_deref(), Some("Resources"));
    }

    #[test]
    fn an_unknown_version_is_refused_with_what_is_spoken() {
        let err = dialect("v0.0.40").err().unwrap();
        assert!(err.contains("v0.0.38"), "{err}");
    }
}
