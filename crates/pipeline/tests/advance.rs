//! `advance` driven through whole runs on plain data with a simulated clock: a tiny executor
//! plays the queue (each job takes a set time and succeeds or fails as the test says), the clock
//! jumps to the next event, and the test reads what started when and how the run ended.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use petri_pipeline::advance::{Item, ItemState, RunEnd, Settled, StepRecord};
use petri_pipeline::{Catalog, Decision, Plan, RunView, StepState, advance, validate};
use serde_json::{Value, json};

/// What a job does: how long it takes, and its outputs or why it failed.
type Behaviour = dyn Fn(&str, usize, &petri_domain::JobSpec, u32) -> (i64, Result<Value, String>);

struct Job {
    step: String,
    item: usize,
    ends_at: i64,
    result: Result<Value, String>,
}

struct Sim {
    plan: Plan,
    params: IndexMap<String, Value>,
    steps: BTreeMap<String, StepRecord>,
    now: i64,
    attempt: u32,
    not_before: i64,
    canceling: bool,
    running: Vec<Job>,
    /// (time, step, item, the job's command as rendered)
    started: Vec<(i64, String, usize, String)>,
    /// How many times each (step, item) started.
    starts: BTreeMap<(String, usize), u32>,
    end: Option<(RunEnd, Option<String>, IndexMap<String, Value>)>,
    /// Start time of each pipeline attempt after the first.
    retried_at: Vec<i64>,
}

impl Sim {
    fn new(yaml: &str) -> Sim {
        let plan = validate(yaml, &Catalog::default()).unwrap_or_else(|e| panic!("{e:?}"));
        let mut params = IndexMap::new();
        for (k, p) in &plan.spec.params {
            if let Some(v) = p.default_value() {
                params.insert(k.clone(), v.clone());
            }
        }
        Sim {
            plan,
            params,
            steps: BTreeMap::new(),
            now: 1_000_000,
            attempt: 1,
            not_before: 0,
            canceling: false,
            running: Vec::new(),
            started: Vec::new(),
            starts: BTreeMap::new(),
            end: None,
            retried_at: Vec::new(),
        }
    }

    fn decide(&self) -> Vec<Decision> {
        let view = RunView {
            id: "run-1",
            number: 1,
            plan: &self.plan,
            params: &self.params,
            steps: &self.steps,
            canceling: self.canceling,
            no_cache: false,
            stage: Path::new("/stage"),
            base: None,
            now_ms: self.now,
            attempt: self.attempt,
            not_before_ms: self.not_before,
        };
        advance(&view)
    }

    /// Applies decisions until there are none, then lets time pass to the next event; stops when
    /// the run ends or after `until` ms of simulated time.
    fn run(&mut self, behaviour: &Behaviour, until: i64) {
        let limit = self.now + until;
        while self.end.is_none() && self.now <= limit {
            let decisions = self.decide();
            if !decisions.is_empty() {
                for d in decisions {
                    self.apply(d, behaviour);
                }
                continue;
            }
            // Nothing to decide: the next job ends, or the backoff is over.
            let next_job = self.running.iter().map(|j| j.ends_at).min();
            let next = match (
                next_job,
                (self.not_before > self.now).then_some(self.not_before),
            ) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => panic!("the run is stuck: nothing runs and nothing is decided"),
            };
            self.now = next;
            let (done, still): (Vec<Job>, Vec<Job>) =
                self.running.drain(..).partition(|j| j.ends_at <= next);
            self.running = still;
            for j in done {
                let rec = self.steps.get_mut(&j.step).unwrap();
                rec.items.insert(
                    j.item,
                    match j.result {
                        Ok(outs) => Item {
                            state: ItemState::Succeeded,
                            outputs: serde_json::from_value(outs).unwrap(),
                            reason: None,
                        },
                        Err(why) => Item {
                            state: ItemState::Failed,
                            outputs: IndexMap::new(),
                            reason: Some(why),
                        },
                    },
                );
            }
        }
    }

    fn apply(&mut self, d: Decision, behaviour: &Behaviour) {
        match d {
            Decision::Start(s) => {
                let n = self.starts.entry((s.step.clone(), s.item)).or_default();
                *n += 1;
                let (took, result) = behaviour(&s.step, s.item, &s.job, *n);
                let command = s
                    .job
                    .command
                    .as_ref()
                    .map(|c| c.join(" "))
                    .or(s.job.run.clone())
                    .unwrap_or_default();
                self.started
                    .push((self.now, s.step.clone(), s.item, command));
                self.steps.entry(s.step.clone()).or_default().items.insert(
                    s.item,
                    Item {
                        state: ItemState::Submitted { running: true },
                        outputs: IndexMap::new(),
                        reason: None,
                    },
                );
                self.running.push(Job {
                    step: s.step,
                    item: s.item,
                    ends_at: self.now + took,
                    result,
                });
            }
            Decision::Settle { step, how, reason } => {
                self.steps.entry(step).or_default().settled = Some((how, reason));
            }
            Decision::CancelJobs { step, items } => {
                self.running
                    .retain(|j| !(j.step == step && items.contains(&j.item)));
                let rec = self.steps.get_mut(&step).unwrap();
                for i in items {
                    rec.items.get_mut(&i).unwrap().state = ItemState::Canceled;
                }
            }
            Decision::RetryRun {
                steps,
                not_before_ms,
                ..
            } => {
                for s in steps {
                    self.steps.remove(&s);
                }
                self.attempt += 1;
                self.not_before = not_before_ms;
                self.retried_at.push(not_before_ms);
            }
            Decision::StartChild { .. } => panic!("no nested pipelines here"),
            Decision::Finish {
                state,
                reason,
                outputs,
            } => self.end = Some((state, reason, outputs)),
        }
    }

    fn state(&self, step: &str) -> StepState {
        petri_pipeline::advance::step_state(&self.plan.steps[step], self.steps.get(step), None)
    }

    fn started_at(&self, step: &str) -> Vec<i64> {
        self.started
            .iter()
            .filter(|s| s.1 == step)
            .map(|s| s.0)
            .collect()
    }
}

fn ok_after(
    ms: i64,
) -> impl Fn(&str, usize, &petri_domain::JobSpec, u32) -> (i64, Result<Value, String>) {
    move |_, _, _, _| (ms, Ok(json!({})))
}

#[test]
fn a_diamond_runs_each_step_once_after_its_needs_in_simulated_time() {
    let mut sim = Sim::new(
        "name: diamond\nsteps:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n  c: {run: 'true', needs: [a]}\n  d: {run: 'true', needs: [b, c]}\n",
    );
    let t0 = sim.now;
    let durations = |step: &str, _: usize, _: &petri_domain::JobSpec, _: u32| {
        let ms = match step {
            "a" => 100,
            "b" => 500,
            _ => 200,
        };
        (ms, Ok(json!({})))
    };
    sim.run(&durations, 60_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Succeeded, "{reason:?}");
    // b and c start together when a ends; d waits for the slower of the two.
    assert_eq!(sim.started_at("a"), vec![t0]);
    assert_eq!(sim.started_at("b"), vec![t0 + 100]);
    assert_eq!(sim.started_at("c"), vec![t0 + 100]);
    assert_eq!(sim.started_at("d"), vec![t0 + 600]);
    assert!(sim.starts.values().all(|n| *n == 1), "{:?}", sim.starts);
}

#[test]
fn values_flow_into_later_commands_and_when_skips_what_follows() {
    let mut sim = Sim::new(
        r#"
name: values
params:
  threshold: {default: 0.9, type: number}
steps:
  train:
    run: "train"
    outputs: {accuracy: {type: value}}
  report:
    run: "echo ${{ steps.train.outputs.accuracy }}"
  deploy:
    needs: [report]
    when: ${{ steps.train.outputs.accuracy >= params.threshold }}
    run: "deploy"
  announce:
    needs: [deploy]
    run: "announce"
"#,
    );
    let b = |step: &str, _: usize, _: &petri_domain::JobSpec, _: u32| {
        let outs = if step == "train" {
            json!({"accuracy": "0.5"})
        } else {
            json!({})
        };
        (50, Ok(outs))
    };
    sim.run(&b, 60_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Succeeded, "{reason:?}");
    let report = sim.started.iter().find(|s| s.1 == "report").unwrap();
    assert_eq!(report.3, "echo 0.5");
    assert_eq!(sim.state("deploy"), StepState::Skipped);
    // What needs a skipped step is skipped too, and nothing of either ran.
    assert_eq!(sim.state("announce"), StepState::Skipped);
    assert!(sim.started_at("deploy").is_empty() && sim.started_at("announce").is_empty());
}

#[test]
fn for_each_fans_out_and_a_later_step_gathers_the_items_in_order() {
    let mut sim = Sim::new(
        r#"
name: sweep
steps:
  grid:
    run: "grid"
    outputs: {lrs: {type: value}}
  train:
    for_each: ${{ steps.grid.outputs.lrs }}
    run: "train --lr ${{ item }} --slot ${{ item_index }}"
    outputs: {loss: {type: value}}
  pick:
    run: "pick ${{ steps.train.outputs.loss }}"
"#,
    );
    let b = |step: &str, item: usize, _: &petri_domain::JobSpec, _: u32| match step {
        "grid" => (10, Ok(json!({"lrs": "[0.1, 0.01, 0.001]"}))),
        // Items end in reverse order; the gathered list keeps item order.
        "train" => (
            100 - item as i64 * 30,
            Ok(json!({"loss": format!("l{item}")})),
        ),
        _ => (10, Ok(json!({}))),
    };
    sim.run(&b, 60_000);
    assert_eq!(sim.end.as_ref().unwrap().0, RunEnd::Succeeded);
    let trains: Vec<&String> = sim
        .started
        .iter()
        .filter(|s| s.1 == "train")
        .map(|s| &s.3)
        .collect();
    assert_eq!(
        trains,
        [
            "train --lr 0.1 --slot 0",
            "train --lr 0.01 --slot 1",
            "train --lr 0.001 --slot 2"
        ]
    );
    let pick = sim.started.iter().find(|s| s.1 == "pick").unwrap();
    assert_eq!(pick.3, r#"pick ["l0","l1","l2"]"#);
}

#[test]
fn a_failed_step_lets_running_siblings_end_then_fails_the_run_with_its_reason() {
    let mut sim = Sim::new(
        "name: f\nsteps:\n  a: {run: 'true'}\n  slow: {run: 'true'}\n  after: {run: 'true', needs: [a, slow]}\n",
    );
    let b = |step: &str, _: usize, _: &petri_domain::JobSpec, _: u32| match step {
        "a" => (10, Err("exit code 3: boom".to_string())),
        _ => (1_000, Ok(json!({}))),
    };
    let t0 = sim.now;
    sim.run(&b, 60_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Failed);
    assert_eq!(reason.unwrap(), "step `a` failed: exit code 3: boom");
    // The run ended only when `slow` did; `after` never started.
    assert_eq!(sim.now, t0 + 1_000);
    assert_eq!(sim.state("slow"), StepState::Succeeded);
    assert_eq!(sim.state("after"), StepState::Skipped);
    assert!(sim.started_at("after").is_empty());
}

#[test]
fn pipeline_retries_rerun_only_the_failed_step_after_the_backoff() {
    let mut sim = Sim::new(
        "name: r\nretries: {max: 2, backoff: 30s}\nsteps:\n  prep: {run: 'true'}\n  flaky: {run: 'true', needs: [prep]}\n  last: {run: 'true', needs: [flaky]}\n",
    );
    // `flaky` fails on its first two attempts.
    let b = |step: &str, _: usize, _: &petri_domain::JobSpec, n: u32| match step {
        "flaky" if n <= 2 => (100, Err(format!("attempt {n} failed"))),
        _ => (100, Ok(json!({}))),
    };
    let t0 = sim.now;
    sim.run(&b, 600_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Succeeded, "{reason:?}");
    assert_eq!(sim.attempt, 3);
    assert_eq!(sim.started_at("prep"), vec![t0], "prep is not run again");
    // Each rerun waits the 30 s backoff after the failure.
    assert_eq!(
        sim.started_at("flaky"),
        vec![t0 + 100, t0 + 200 + 30_000, t0 + 300 + 60_000]
    );
    assert_eq!(sim.started_at("last"), vec![t0 + 400 + 60_000]);
}

#[test]
fn pipeline_retries_run_out_and_the_run_fails_with_the_last_reason() {
    let mut sim = Sim::new(
        "name: r\nretries: {max: 1}\nsteps:\n  bad: {run: 'false'}\n  next: {run: 'true', needs: [bad]}\n",
    );
    let b = |_: &str, _: usize, _: &petri_domain::JobSpec, n: u32| {
        (10, Err(format!("exit code 1 (attempt {n})")))
    };
    sim.run(&b, 600_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Failed);
    assert_eq!(
        reason.unwrap(),
        "step `bad` failed: exit code 1 (attempt 2)"
    );
    assert_eq!(sim.starts[&("bad".to_string(), 0)], 2);
    assert_eq!(sim.state("next"), StepState::Skipped);
}

#[test]
fn nothing_starts_during_a_backoff_even_when_asked_again_and_again() {
    let mut sim = Sim::new("name: r\nsteps:\n  a: {run: 'true'}\n");
    sim.not_before = sim.now + 5_000;
    for _ in 0..10 {
        assert!(sim.decide().is_empty());
        sim.now += 400;
    }
    sim.now = sim.not_before;
    assert!(matches!(sim.decide().as_slice(), [Decision::Start(_)]));
}

#[test]
fn cancel_stops_what_runs_and_settles_the_rest_as_canceled() {
    let mut sim =
        Sim::new("name: c\nsteps:\n  a: {run: 'sleep 100'}\n  b: {run: 'true', needs: [a]}\n");
    let slow = ok_after(100_000);
    // Let `a` start, then cancel.
    for d in sim.decide() {
        sim.apply(d, &slow);
    }
    sim.canceling = true;
    let ds = sim.decide();
    assert!(
        matches!(ds.as_slice(), [Decision::CancelJobs { step, items }] if step == "a" && items == &[0]),
        "{ds:?}"
    );
    for d in ds {
        sim.apply(d, &slow);
    }
    sim.run(&slow, 1_000);
    assert_eq!(sim.end.as_ref().unwrap().0, RunEnd::Canceled);
    assert_eq!(sim.state("a"), StepState::Canceled);
    assert_eq!(
        sim.steps["b"].settled.as_ref().map(|s| s.0),
        Some(Settled::Canceled)
    );
}

#[test]
fn an_expression_that_fails_at_run_time_fails_its_step_not_the_engine() {
    let mut sim = Sim::new(
        r#"
name: e
steps:
  a:
    run: "true"
    outputs: {n: {type: value}}
  b:
    run: "echo ${{ steps.a.outputs.n[5] }}"
"#,
    );
    let b = |_: &str, _: usize, _: &petri_domain::JobSpec, _: u32| (10, Ok(json!({"n": "[1]"})));
    sim.run(&b, 60_000);
    let (end, reason, _) = sim.end.clone().unwrap();
    assert_eq!(end, RunEnd::Failed);
    let reason = reason.unwrap();
    assert!(reason.starts_with("step `b` failed: `run`"), "{reason}");
    assert!(sim.started_at("b").is_empty());
}
