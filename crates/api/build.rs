//! Embeds the web UI: `ui/dist/index.html` (one self-contained file, built by `npm run build` in
//! `ui/`, which both README commands do) when it exists, else `ui/fallback.html`, a small status
//! page that says how to build the full one.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let ui = Path::new(&manifest).join("../../ui");
    let built = ui.join("dist/index.html");
    let fallback = ui.join("fallback.html");
    println!("cargo:rerun-if-changed={}", built.display());
    println!("cargo:rerun-if-changed={}", fallback.display());
    let page = std::fs::read_to_string(&built)
        .or_else(|_| std::fs::read_to_string(&fallback))
        .expect("ui/fallback.html is part of the repository");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("ui.html"), page).expect("OUT_DIR is writable");
}
