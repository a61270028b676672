//! `petri whoami`, `petri user ls|add|set-role|quota`, `petri audit`: who you are to the daemon,
//! the users of a shared machine with their roles and quotas, and the log of every change.

use clap::{Args, Subcommand};
use petri_client::Client;
use petri_domain::job::format_ms;
use petri_domain::{AuditQuery, ByteSize, Millis, Quota, Role};

use crate::output;

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List the users, their roles, quotas, and what each runs and has used lately.
    Ls(JsonArg),
    /// Add a Unix user of this machine as a Petri user (admins).
    Add(AddArgs),
    /// Change a user's role: admin, member or viewer (admins).
    SetRole(SetRoleArgs),
    /// Set the limits of a user, or of a Unix group's members together (`group:NAME`) (admins).
    Quota(QuotaArgs),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

fn role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role: admin, member or viewer"))
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The Unix user's name.
    pub name: String,
    /// admin, member or viewer.
    #[arg(long, default_value = "member", value_parser = role)]
    pub role: Role,
}

#[derive(Debug, Args)]
pub struct SetRoleArgs {
    pub name: String,
    /// admin, member or viewer.
    #[arg(value_parser = role)]
    pub role: Role,
}

#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// A user's name, or `group:NAME` for what a Unix group's members hold together.
    pub subject: String,
    /// The most GPUs their running jobs hold at once.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// The most GPU memory they hold at once, e.g. 40GiB.
    #[arg(long, value_name = "SIZE")]
    pub gpu_mem: Option<ByteSize>,
    /// The most cpus they hold at once.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// The most jobs they run at once.
    #[arg(long)]
    pub running: Option<u32>,
    /// Remove the quota.
    #[arg(long, conflicts_with_all = ["gpus", "gpu_mem", "cpus", "running"])]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only what this user did.
    #[arg(long)]
    pub user: Option<String>,
    /// Only the last stretch of time, e.g. 1h or 7d.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<Millis>,
    /// Only this action, e.g. job.cancel.
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn whoami(client: &Client, args: WhoamiArgs) -> anyhow::Result<()> {
    let me = client.me().await?;
    if args.json {
        return output::print_json(&me);
    }
    let how = match (me.credential.as_str(), &me.token) {
        ("socket", _) => "known by your Unix uid on the daemon's socket".to_string(),
        ("owner", _) => "with the home's owner token".to_string(),
        ("token", Some(t)) => format!("with the token `{t}`"),
        ("job", _) => "with a job's own token".to_string(),
        (other, _) => other.to_string(),
    };
    println!("{} ({}), {how}", me.name, me.role);
    Ok(())
}

fn quota_text(q: &Quota) -> String {
    if q.is_empty() {
        "-".into()
    } else {
        q.describe()
    }
}

pub async fn run(client: &Client, args: UserArgs) -> anyhow::Result<()> {
    match args.command {
        UserCommand::Ls(a) => {
            let (users, shares) = tokio::try_join!(client.users(), client.shares())?;
            if a.json {
                return output::print_json(
                    &serde_json::json!({ "users": users, "shares": shares }),
                );
            }
            let mut t = output::new_table(&[
                "USER",
                "ROLE",
                "UID",
                "QUOTA",
                "RUNNING",
                "WAITING",
                "NOW",
                "USAGE (h)",
            ]);
            for u in &users {
                let share = shares.iter().find(|s| s.user == u.name);
                t.add_row(vec![
                    u.name.clone(),
                    u.role.to_string(),
                    u.uid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    quota_text(&u.quota),
                    share.map_or(0, |s| s.running).to_string(),
                    share.map_or(0, |s| s.waiting).to_string(),
                    format!("{:.0}%", share.map_or(0.0, |s| s.share_now) * 100.0),
                    format!("{:.2}", share.map_or(0.0, |s| s.usage_hours)),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        UserCommand::Add(a) => {
            let u = client.user_put(&a.name, a.role).await?;
            println!("{} is a {} of this Petri.", u.name, u.role);
            Ok(())
        }
        UserCommand::SetRole(a) => {
            let u = client.user_put(&a.name, a.role).await?;
            println!("{} is now a {}.", u.name, u.role);
            Ok(())
        }
        UserCommand::Quota(a) => {
            let quota = if a.clear {
                Quota::default()
            } else {
                Quota {
                    gpus: a.gpus,
                    gpu_memory: a.gpu_mem,
                    cpus: a.cpus,
                    running: a.running,
                }
            };
            if quota.is_empty() && !a.clear {
                anyhow::bail!(
                    "say which limits: --gpus, --gpu-mem, --cpus, --running (or --clear to remove them)"
                );
            }
            let set = client.quota_set(&a.subject, &quota).await?;
            if set.is_empty() {
                println!("{} has no quota now.", a.subject);
            } else {
                println!("{}: {}", a.subject, set.describe());
            }
            Ok(())
        }
    }
}

pub async fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    let q = AuditQuery {
        user: args.user,
        since_ms: args.since.map(|d| output::now_ms() - d.0 as i64),
        action: args.action,
        limit: Some(args.limit),
    };
    let entries = client.audit(&q).await?;
    if args.json {
        return output::print_json(&entries);
    }
    if entries.is_empty() {
        println!("Nothing in the audit log matches.");
        return Ok(());
    }
    let mut t = output::new_table(&[
        "WHEN", "USER", "FROM", "ACTION", "TARGET", "STATUS", "DETAIL",
    ]);
    for e in entries {
        t.add_row(vec![
            format_ms(e.at_ms),
            e.user,
            e.origin,
            e.action,
            e.target,
            e.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            e.detail,
        ]);
    }
    println!("{t}");
    Ok(())
}
