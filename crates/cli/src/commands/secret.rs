//! `petri secret set|ls|rm`: API keys and config files that jobs receive at launch, encrypted at
//! rest by the daemon and masked in job logs.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use petri_client::Client;
use petri_domain::job::format_ms;

use crate::output;

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set (or replace) a secret. A value is read from the terminal without echo, or from
    /// stdin when it is not a terminal (`pass hf | petri secret set HF_TOKEN`); never from the
    /// command line, so it stays out of shell history. With --file, the file's bytes.
    Set(SetArgs),
    /// List your secrets (never their values).
    Ls(LsArgs),
    /// Remove a secret.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Letters, digits, `_`, `-`, `.`. A job names it in `secrets:` or with `--secret`.
    pub name: String,
    /// Store this file's bytes: a job gets its own copy and the copy's path in a variable.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the secrets as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    pub name: String,
}

pub async fn run(client: &Client, args: SecretArgs) -> anyhow::Result<()> {
    match args.command {
        SecretCommand::Set(a) => {
            let info = match &a.file {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    client.secret_set_file(&a.name, &bytes).await?
                }
                None => {
                    let value = read_value(&a.name)?;
                    client.secret_set_value(&a.name, &value).await?
                }
            };
            println!(
                "Secret `{}` ({}) set. A job gets it with `secrets: [{}]` or `petri submit \
                 --secret {}`.",
                info.name, info.kind, info.name, info.name
            );
            Ok(())
        }
        SecretCommand::Ls(a) => {
            let all = client.secrets().await?;
            if a.json {
                return output::print_json(&all);
            }
            if all.is_empty() {
                println!("No secrets yet; set one with `petri secret set NAME`.");
                return Ok(());
            }
            let mut t = output::new_table(&["NAME", "KIND", "OWNER", "CREATED", "UPDATED"]);
            for s in all {
                t.add_row(vec![
                    s.name,
                    s.kind.to_string(),
                    s.owner,
                    format_ms(s.created_at_ms),
                    format_ms(s.updated_at_ms),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        SecretCommand::Rm(a) => {
            let s = client.secret_remove(&a.name).await?;
            println!("Secret `{}` removed.", s.name);
            Ok(())
        }
    }
}

/// The value: asked for without echo on a terminal, else all of stdin (one final line break
/// dropped, as `echo` and most password managers add one).
fn read_value(name: &str) -> anyhow::Result<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value of {name} (not shown): "))
            .context("reading the value from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from stdin (a value is text; use --file for bytes)")?;
        strip_line_break(text)
    };
    if value.is_empty() {
        anyhow::bail!("the value is empty; type it at the prompt, or pipe it in on stdin");
    }
    Ok(value)
}

fn strip_line_break(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn one_final_line_break_is_dropped() {
        assert_eq!(strip_line_break("abc\n".into()), "abc");
        assert_eq!(strip_line_break("abc\r\n".into()), "abc");
        assert_eq!(strip_line_break("a\nb\n\n".into()), "a\nb\n");
        assert_eq!(strip_line_break("abc".into()), "abc");
    }

    #[test]
    fn a_value_is_never_an_argument() {
        // `set` takes a name and a file, nothing that could be the value itself.
        assert!(Cli::try_parse_from(["petri", "secret", "set", "X", "the-value"]).is_err());
        let cli = Cli::try_parse_from(["petri", "secret", "set", "X", "--file", "k.json"]);
        assert!(matches!(cli.unwrap().command, Some(Command::Secret(_))));
    }
}
