//! Server-sent events: the daemon's event bus, and a job's log as it grows.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

fn closing(s: &AppState) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
    let mut rx = s.closing.clone();
    async move {
        let _ = rx.wait_for(|c| *c).await;
    }
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "SSE stream; each event's name is its `type`, its data an `Event` as JSON", content_type = "text/event-stream"),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn stream(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = BroadcastStream::new(s.daemon.queue().subscribe()).map(|item| {
        Ok(match item {
            Ok(event) => SseEvent::default()
                .event(event.name())
                .json_data(&event)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")),
            Err(BroadcastStreamRecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
        })
    });
    Sse::new(events.take_until(closing(&s))).keep_alive(KeepAlive::default())
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/log/stream", tag = "jobs",
    params(("id" = String, Path, description = "job number or id")),
    responses((status = 200, description = "SSE stream of `log` events (data: {\"text\": ...}) ending with an `end` event when the job has finished", content_type = "text/event-stream"),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the job is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn follow_log(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // An active job's facts come from the engine's view, any other's from one trip to the
    // database: an unknown job is a 404, not an empty stream. The follower is
    // woken by the log file's growth (inotify) or the job's end, never by a timer;
    // it is taken before the job's state is read, so no end is missed. After that first read the
    // bus says when the job has ended and the log file is read straight.
    let (found, follower, first) = s.daemon.queue().open_log(&id).await?;
    crate::jobs::owns_job(
        &caller,
        petri_daemon::accounts::Action::ReadPrivate,
        &found.user,
        found.number,
    )?;
    let queue = s.daemon.queue().clone();
    let following = Following {
        id: found.id,
        offset: 0,
        follower,
        ended: None,
        first: Some(first),
        read_all: false,
    };
    let chunks = stream::unfold(Some(following), move |state| {
        let queue = queue.clone();
        async move {
            let mut f = state?;
            loop {
                if f.read_all {
                    return Some((Ok(SseEvent::default().event("end").data("{}")), None));
                }
                let chunk = match f.ended {
                    // What the database says: first, and after a wait no wake-up ended.
                    None => match f.first.take() {
                        Some(chunk) => chunk,
                        None => queue.read_log_of(f.id, f.offset).await,
                    },
                    // Checked before the read: after the end, the read sees every byte.
                    Some(was) => queue.log_piece(f.id, f.offset, was || f.follower.ended()),
                };
                let data = chunk.map(|chunk| {
                    f.ended = Some(chunk.finished);
                    f.read_all = chunk.finished && chunk.to_end;
                    chunk.data
                });
                match data {
                    Ok(data) if !data.is_empty() => {
                        f.offset += data.len() as u64;
                        let text = String::from_utf8_lossy(&data).into_owned();
                        let event = SseEvent::default()
                            .event("log")
                            .json_data(serde_json::json!({ "text": text, "offset": f.offset }))
                            .unwrap_or_else(|_| SseEvent::default());
                        return Some((Ok(event), Some(f)));
                    }
                    Ok(_) if f.ended == Some(true) => {
                        return Some((Ok(SseEvent::default().event("end").data("{}")), None));
                    }
                    Ok(_) => {
                        if !f.follower.wait().await {
                            f.ended = None;
                        }
                    }
                    Err(e) => {
                        let body: petri_domain::ErrorBody = e.into();
                        let event = SseEvent::default()
                            .event("error")
                            .json_data(&body)
                            .unwrap_or_else(|_| SseEvent::default());
                        return Some((Ok(event), None));
                    }
                }
            }
        }
    });
    // The answer's head waits for the stream's first event, HEAD_WAIT at most, and goes out
    // with it: a job that writes or ends soon after its stream opens is answered in one write
    // (head, bytes and end), where a head sent alone costs the daemon a write and the client a
    // wake-up. Errors are answered at once; the first bytes are never held back; a daemon that
    // is closing does not wait.
    let mut chunks = Box::pin(chunks).peekable();
    let first = tokio::time::timeout(HEAD_WAIT, std::pin::Pin::new(&mut chunks).peek());
    tokio::select! {
        _ = first => {}
        _ = closing(&s) => {}
    }
    Ok(Sse::new(chunks.take_until(closing(&s))).keep_alive(KeepAlive::default()))
}

/// How long a log stream's head waits for its first event.
const HEAD_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Where one follower of a job's log stands.
struct Following {
    id: petri_domain::JobId,
    /// How much of the log was sent.
    offset: u64,
    follower: petri_queue::logwatch::LogFollower,
    /// Whether the job had ended at the last read: `None` until the database said, and again
    /// after a wait that no wake-up ended (then the database is asked once more).
    ended: Option<bool>,
    /// The first read, made with the job's lookup.
    first: Option<Result<petri_queue::LogChunk, petri_queue::QueueError>>,
    /// The last read came after the job's end and reached the end of the file: only the end is
    /// left to send (without another read).
    read_all: bool,
}
