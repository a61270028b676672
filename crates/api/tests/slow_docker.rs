//! A slow Docker engine does not hold the queue: containers start off the engine thread. The
//! daemon talks to the real engine through a socket in front of it that holds a container's
//! create until the test lets it go, as a busy engine would hold it for a while.

mod helpers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use helpers::{Fixture, containers_of};
use petri_domain::{JobSpec, JobState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

/// What the test sees of the engine in front: whether a create is being held, and the way to let
/// it go.
#[derive(Default)]
struct Gate {
    holding: AtomicBool,
    open: AtomicBool,
    opened: Notify,
}

/// Listens on `path` and passes every connection on to the real engine, holding a request that
/// creates a container until `gate` opens.
fn slow_engine(path: PathBuf, gate: Arc<Gate>) {
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let gate = gate.clone();
            tokio::spawn(async move {
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock").await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_engine, mut to_engine) = engine.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk.starts_with(b"POST ")
                            && chunk.windows(19).any(|w| w == b"/containers/create?")
                        {
                            let opened = gate.opened.notified();
                            gate.holding.store(true, Ordering::SeqCst);
                            if !gate.open.load(Ordering::SeqCst) {
                                opened.await;
                            }
                        }
                        if to_engine.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_engine.shutdown().await;
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut from_engine, &mut to_client).await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_container_start_does_not_hold_the_queue() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let gate = Arc::new(Gate::default());
    slow_engine(socket.clone(), gate.clone());
    // SAFETY: set before the daemon (and any thread that reads it) starts; one test per binary.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display())) };
    // Room for both jobs whatever the machine's cores (a 1-cpu machine would otherwise queue the
    // local job behind the container's reservation, which is not what this test is about).
    let f = Fixture::start("[capacity]\ncpus = 4\n").await;

    let container = f
        .submit(JobSpec {
            image: Some(image),
            ..f.script("echo from the container")
        })
        .await;
    helpers::wait_until("the engine to be asked for the container", || async {
        gate.holding.load(Ordering::SeqCst)
    })
    .await;
    // While the engine holds the container's create, the queue goes on: a local job starts,
    // runs and ends, and the API answers.
    let local = f.submit(f.script("echo local")).await;
    assert_eq!(f.wait_done(&local).await.state, JobState::Succeeded);
    let shown = f.client.job(&container.id.to_string()).await.unwrap();
    assert_eq!(shown.state, JobState::Running, "{shown:?}");
    assert!(containers_of(f.home()).is_empty(), "not created yet");
    // The engine answers: the container starts, and its job ends as it should.
    gate.open.store(true, Ordering::SeqCst);
    gate.opened.notify_waiters();
    let done = f.wait_done(&container).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    let (log, _, _) = f.client.log(&container.id.to_string(), 0).await.unwrap();
    assert!(String::from_utf8_lossy(&log).contains("from the container"));
    helpers::wait_until("the container to be removed", || async {
        containers_of(f.home()).is_empty()
    })
    .await;
}
