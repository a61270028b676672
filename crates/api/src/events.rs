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
    // One trip to the database: an unknown job is a 404, not an empty stream. The follower is
    // woken by the log file's growth (inotify) or the job's change of state, never by a timer;
    // it is taken before the job's state is read, so no end is missed. After that first read the
    // bus says when the job has ended and the log file is read straight.
    let (found, follower, first) = s.daemon.queue().open_log(&id).await?;
    crate::jobs::owns(&caller, petri_daemon::accounts::Action::ReadPrivate, &found)?;
    let id = found.id;
    let queue = s.daemon.queue().clone();
    let first = Some(first);
    let chunks = stream::unfold(Some((0u64, follower, None, first)), move |state| {
        let queue = queue.clone();
        async move {
            let (mut offset, mut follower, mut ended, mut first) = state?;
            loop {
                let data = match ended {
                    // What the database says: first, and after a wait no wake-up ended.
                    None => match first.take() {
                        Some(chunk) => chunk,
                        None => queue.read_log_of(id, offset).await,
                    }
                    .map(|chunk| {
                        ended = Some(chunk.finished);
                        chunk.data
                    }),
                    Some(was) => {
                        // Checked before the read: after the end, the read sees every byte.
                        ended = Some(was || follower.ended());
                        queue.read_log_file(id, offset).map_err(|e| {
                            petri_queue::QueueError::Io(format!("reading job {id}'s log: {e}"))
                        })
                    }
                };
                match data {
                    Ok(data) if !data.is_empty() => {
                        offset += data.len() as u64;
                        let text = String::from_utf8_lossy(&data).into_owned();
                        let event = SseEvent::default()
                            .event("log")
                            .json_data(serde_json::json!({ "text": text, "offset": offset }))
                            .unwrap_or_else(|_| SseEvent::default());
                        return Some((Ok(event), Some((offset, follower, ended, None))));
                    }
                    Ok(_) if ended == Some(true) => {
                        return Some((Ok(SseEvent::default().event("end").data("{}")), None));
                    }
                    Ok(_) => {
                        if !follower.wait().await {
                            ended = None;
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
    Ok(Sse::new(chunks.take_until(closing(&s))).keep_alive(KeepAlive::default()))
}
