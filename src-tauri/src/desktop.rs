//! The desktop shell (feature `desktop`): a Tauri window onto the local daemon, a tray icon with a
//! queue and GPU summary, notifications when jobs end. It holds no logic of its own: the window
//! shows the same web UI that browsers get from the daemon, and everything it knows comes from the
//! daemon's HTTP API.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use petri_client::Client;
use petri_domain::{Event, JobState};
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_notification::NotificationExt;

/// Whether this process can open a window.
pub fn has_display() -> bool {
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
}

/// A daemon already serving `home`, if one answers.
fn running_daemon(home: &Path) -> Option<String> {
    let addr = std::fs::read_to_string(home.join("daemon.addr")).ok()?;
    let addr = addr.trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let ok = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), Client::new(&addr, None).health())
            .await
            .is_ok_and(|r| r.is_ok())
    });
    ok.then_some(addr)
}

/// Opens the window: onto the daemon of this home when one runs, else onto one started here, in
/// this process (it stops when the app quits; running jobs keep running).
pub fn run(settings: petri_daemon::Settings) -> anyhow::Result<()> {
    plain_locale_to_english();
    let home = settings.home.clone();
    let keep_in_tray = settings.desktop.keep_in_tray;
    let (base, stop_daemon) = match running_daemon(&home) {
        Some(addr) => {
            eprintln!("Petri: attaching to the daemon at {addr}");
            (addr, None)
        }
        None => {
            let (addr, stop) = crate::start_daemon_thread(settings)?;
            (format!("http://{addr}"), Some(stop))
        }
    };
    let token = std::fs::read_to_string(home.join("token"))
        .map_err(|e| anyhow::anyhow!("reading the token in {}: {e}", home.display()))?
        .trim()
        .to_string();
    // The UI takes the token from the address and removes it from there at once.
    let url: tauri::Url = format!("{base}/#token={token}").parse()?;
    let client = Client::new(base.clone(), Some(token));

    let app = tauri::Builder::default()
        .plugin(tauri_plugin_notification::init())
        .setup(move |app| {
            WebviewWindowBuilder::new(app, "main", WebviewUrl::External(url))
                .title("Petri")
                .inner_size(1280.0, 820.0)
                .min_inner_size(760.0, 480.0)
                .build()?;
            let summary =
                MenuItem::with_id(app, "summary", "Petri: connecting…", false, None::<&str>)?;
            let gpus = MenuItem::with_id(app, "gpus", "GPUs: …", false, None::<&str>)?;
            let open = MenuItem::with_id(app, "open", "Open Petri", true, None::<&str>)?;
            let quit = MenuItem::with_id(app, "quit", "Quit Petri", true, None::<&str>)?;
            let menu = Menu::with_items(app, &[&summary, &gpus, &open, &quit])?;
            let mut tray = TrayIconBuilder::with_id("petri")
                .menu(&menu)
                .tooltip("Petri")
                .on_menu_event(|app, event| match event.id.as_ref() {
                    "open" => show_window(app),
                    "quit" => app.exit(0),
                    _ => {}
                });
            if let Some(icon) = app.default_window_icon() {
                tray = tray.icon(icon.clone());
            }
            tray.build(app)?;
            let handle = app.handle().clone();
            std::thread::Builder::new()
                .name("petri-desktop".into())
                .spawn(move || watch_daemon(client, handle, summary, gpus))?;
            Ok(())
        })
        .on_window_event(move |window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event
                && keep_in_tray
            {
                // The daemon stays, in the tray.
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .build(tauri::generate_context!())?;
    app.run(|_, _| {});
    if let Some(stop) = stop_daemon {
        let _ = stop.send(());
    }
    Ok(())
}

/// WebKit turns the POSIX locale (`C`, as on minimal systems and under service managers) into the
/// language tag "C", which the page's `Intl` calls reject; such a session gets English instead.
fn plain_locale_to_english() {
    let current = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let plain = match current.as_deref() {
        None => true,
        Some(v) => {
            let base = v.split('.').next().unwrap_or(v);
            base == "C" || base == "POSIX"
        }
    };
    if plain {
        // SAFETY: called before any other thread of this process starts.
        unsafe {
            std::env::remove_var("LC_ALL");
            std::env::set_var("LANG", "en_US.UTF-8");
        }
    }
}

fn show_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.set_focus();
    }
}

/// Keeps the tray's summary fresh and turns finished jobs into notifications.
fn watch_daemon(
    client: Client,
    app: tauri::AppHandle,
    summary: MenuItem<tauri::Wry>,
    gpus: MenuItem<tauri::Wry>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        let notify = {
            let client = client.clone();
            let app = app.clone();
            async move {
                loop {
                    if let Ok(events) = client.events().await {
                        let mut events = Box::pin(events);
                        while let Some(Ok(event)) = events.next().await {
                            if let Event::JobChanged(c) = event
                                && matches!(
                                    c.state,
                                    JobState::Succeeded | JobState::Failed | JobState::TimedOut
                                )
                            {
                                let title =
                                    format!("#{} {} {}", c.number, c.name, c.state.as_str());
                                let body = c.reason.clone().unwrap_or_default();
                                let _ = app.notification().builder().title(title).body(body).show();
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let tray = async move {
            let mut events = None;
            loop {
                let text = match client.status().await {
                    Ok(s) => {
                        let n = |k: &str| s.counts.get(k).copied().unwrap_or(0);
                        format!("{} running · {} queued", n("running"), n("queued"))
                    }
                    Err(_) => "the daemon does not answer".to_string(),
                };
                let _ = summary.set_text(text);
                let g = match client.gpus().await {
                    Ok(r) if r.available && !r.gpus.is_empty() => {
                        let total: u64 = r.gpus.iter().map(|g| g.memory_total).sum();
                        let reserved: u64 = r.gpus.iter().map(|g| g.reserved).sum();
                        format!(
                            "{} GPUs · {} of {} reserved",
                            r.gpus.len(),
                            petri_domain::ByteSize(reserved),
                            petri_domain::ByteSize(total)
                        )
                    }
                    Ok(_) => "CPU only".to_string(),
                    Err(_) => "GPUs: unknown".to_string(),
                };
                let _ = gpus.set_text(g);
                // Again at the next event, or after a while for the GPU samples.
                if events.is_none() {
                    events = client.events().await.ok().map(Box::pin);
                }
                let next = async {
                    match events.as_mut() {
                        Some(e) => e.next().await.is_some(),
                        None => false,
                    }
                };
                match tokio::time::timeout(Duration::from_secs(10), next).await {
                    Ok(true) | Err(_) => {}
                    Ok(false) => {
                        events = None;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        };
        tokio::join!(notify, tray);
    });
}
