use clap::Args;
use petri_client::Client;
use petri_domain::Origin;
use petri_domain::job::format_ms;

use crate::output;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Job number or id.
    pub id: String,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: ShowArgs) -> anyhow::Result<()> {
    let job = client.job(&args.id).await?;
    if args.json {
        return output::print_json(&job);
    }
    let now = output::now_ms();
    println!("Job #{}  {}", job.number, job.name);
    println!("  id         {}", job.id);
    println!("  state      {}", job.state);
    if let Some(p) = &job.pending {
        println!("  waiting    {}", p.message);
        if let Some(n) = p.position {
            println!("  position   {n} in line");
        }
        // On a shared machine, fair share decides among jobs of the same priority: say where
        // this job's user stands.
        if let Ok(shares) = client.shares().await
            && shares.len() > 1
            && let Some(mine) = shares.iter().find(|s| s.user == job.user)
        {
            let less = shares
                .iter()
                .filter(|s| s.waiting > 0 && s.usage_hours < mine.usage_hours)
                .count();
            println!(
                "  fair share {} used {:.2} machine-hours lately (decayed); among waiting jobs of \
                 the same priority, those of users who used less go first ({less} such user{} \
                 waiting)",
                job.user,
                mine.usage_hours,
                if less == 1 { "" } else { "s" }
            );
        }
    }
    if let Some(r) = &job.reason {
        println!("  reason     {r}");
    }
    if let Some(code) = job.exit_code {
        println!("  exit code  {code}");
    }
    println!("  queue      {} (priority {})", job.queue, job.priority);
    let origin = match &job.origin {
        Origin::Submission => "submitted".to_string(),
        Origin::Notebook { id } => format!("the server of notebook {id}"),
        Origin::PipelineStep { run, step } => format!("step `{step}` of pipeline run {run}"),
        Origin::Deployment { id } => format!("a replica of deployment {id}"),
    };
    if job.user.is_empty() {
        println!("  origin     {origin}");
    } else {
        println!("  origin     {origin}, for {}", job.user);
    }
    println!("  command    {}", output::shell_words(&job.spec.argv()));
    // The job's tracking run, once it has logged something (`petri run show` shows it).
    let run = job.id.0.simple().to_string();
    if client
        .call(
            petri_client::Method::GET,
            &format!("/api/2.0/mlflow/runs/get?run_id={run}"),
            None,
        )
        .await
        .is_ok()
    {
        println!("  run        {run} (petri run show {})", job.number);
    }
    if let Some(w) = &job.spec.workdir {
        println!("  workdir    {}", w.display());
    }
    let r = &job.spec.resources;
    println!(
        "  resources  {} cpu{}{}",
        r.cpus.unwrap_or(1.0),
        if r.cpus.unwrap_or(1.0) == 1.0 {
            ""
        } else {
            "s"
        },
        r.memory
            .map(|m| format!(", {m} memory"))
            .unwrap_or_default()
    );
    if !job.array_values.is_empty() {
        let values: Vec<String> = job
            .array_values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  sweep      {}", values.join(" "));
    }
    if !job.depends_on.is_empty() {
        let deps: Vec<String> = job.depends_on.iter().map(|d| d.to_string()).collect();
        println!("  after      {}", deps.join(", "));
    }
    if let Some(t) = job.spec.timeout {
        println!("  timeout    {t}");
    }
    if job.spec.retries.max > 0 {
        println!(
            "  retries    up to {} (backoff {})",
            job.spec.retries.max, job.spec.retries.backoff
        );
    }
    println!("  submitted  {}", format_ms(job.submitted_at_ms));
    if let Some(s) = job.started_at_ms {
        println!("  started    {}", format_ms(s));
    }
    if let Some(f) = job.finished_at_ms {
        println!("  finished   {}", format_ms(f));
    }
    if let Some(p) = &job.pruned {
        println!(
            "  files      log and outputs ({}) removed by retention ({}) on {}",
            petri_domain::ByteSize(p.bytes),
            p.why,
            format_ms(p.at_ms)
        );
    }
    if !job.runs.is_empty() {
        let mut t = output::new_table(&[
            "ATTEMPT", "TARGET", "HANDLE", "STARTED", "TIME", "EXIT", "OUTCOME",
        ]);
        for run in &job.runs {
            // A container id is long: its first 12 digits, as `docker ps` shows it.
            let handle = run.handle.as_deref().unwrap_or_default();
            t.add_row(vec![
                run.attempt.to_string(),
                run.target.clone(),
                handle.get(..12).unwrap_or(handle).to_string(),
                format_ms(run.started_at_ms),
                output::short_duration(run.finished_at_ms.unwrap_or(now) - run.started_at_ms),
                run.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                run.outcome.as_str().to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}
