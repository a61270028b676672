//! `petri token create|ls|revoke`: API tokens for scripts, other machines and the browser.

use clap::{Args, Subcommand};
use petri_client::Client;
use petri_domain::Millis;
use petri_domain::job::format_ms;
use petri_domain::token::{Scope, TokenRequest};

use crate::output;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed this once (Petri keeps only a hash).
    Create(CreateArgs),
    /// List your tokens (an admin sees everyone's; never their secrets).
    Ls(LsArgs),
    /// Revoke a token (by name or id): it is refused from the next request on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name to tell it by (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// What it may do: read, submit (includes read), admin (everything), tracking (only the
    /// tracking API). Repeat or separate with commas. Default: submit.
    #[arg(long, value_delimiter = ',', value_name = "SCOPE")]
    pub scope: Vec<Scope>,
    /// How long it stays valid, e.g. 30d or 12h (default: until revoked).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<Millis>,
    /// Make it for another user (admins): a team member who signs in from a browser or
    /// another machine. On a daemon running as root, their jobs still run as their Unix
    /// account here, so they need one to submit.
    #[arg(long)]
    pub user: Option<String>,
    /// Print the token and its details as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the tokens as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's name or id.
    pub token: String,
}

pub async fn run(client: &Client, args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(a) => {
            let made = client
                .token_create(&TokenRequest {
                    name: a.name,
                    scopes: a.scope,
                    expires_in: a.expires,
                    user: a.user,
                })
                .await?;
            if a.json {
                return output::print_json(&made);
            }
            eprintln!(
                "Token `{}` for {} ({}){}. It is shown this once; Petri keeps only its hash:",
                made.info.name,
                made.info.user,
                scopes(&made.info.scopes),
                made.info
                    .expires_at_ms
                    .map(|e| format!(", valid until {}", format_ms(e)))
                    .unwrap_or_default()
            );
            println!("{}", made.token);
            Ok(())
        }
        TokenCommand::Ls(a) => {
            let all = client.tokens().await?;
            if a.json {
                return output::print_json(&all);
            }
            if all.is_empty() {
                println!(
                    "No tokens yet (the owner's is the file `token` in the home); create one with `petri token create NAME`."
                );
                return Ok(());
            }
            let mut t = output::new_table(&[
                "NAME",
                "USER",
                "SCOPES",
                "STATE",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ]);
            for tok in all {
                let when = |ms: Option<i64>| ms.map(format_ms).unwrap_or_else(|| "-".into());
                t.add_row(vec![
                    tok.name,
                    tok.user,
                    scopes(&tok.scopes),
                    tok.state,
                    format_ms(tok.created_at_ms),
                    when(tok.expires_at_ms),
                    when(tok.last_used_at_ms),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        TokenCommand::Revoke(a) => {
            let t = client.token_revoke(&a.token).await?;
            println!("Token `{}` revoked.", t.name);
            Ok(())
        }
    }
}

fn scopes(s: &[Scope]) -> String {
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}
