//! Tauri's build step, for the desktop build only.

fn main() {
    #[cfg(feature = "desktop")]
    tauri_build::build();
}
