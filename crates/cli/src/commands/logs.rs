use std::io::Write;

use clap::Args;
use futures_util::StreamExt;
use petri_client::Client;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Job number or id.
    pub id: String,
    /// Keep printing as the job writes, until it finishes.
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn run(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.follow {
        let mut stream = std::pin::pin!(client.follow_log(&args.id).await?);
        while let Some(piece) = stream.next().await {
            out.write_all(piece?.text.as_bytes())?;
            out.flush()?;
        }
        return Ok(());
    }
    let mut offset = 0;
    loop {
        let (data, next, _) = client.log(&args.id, offset).await?;
        if data.is_empty() {
            break;
        }
        out.write_all(&data)?;
        offset = next;
    }
    out.flush()?;
    Ok(())
}
