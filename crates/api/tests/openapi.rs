//! The web UI's API types are generated from `ui/openapi.json`; this keeps that file equal to the
//! document the daemon serves, so the UI cannot drift from the API unnoticed.
//!
//! After an API change: `PETRI_UPDATE_OPENAPI=1 cargo test -p petri-api --test openapi`, then
//! `npm run gen` in `ui/` (the UI build then type-checks against the new shapes).

use std::path::Path;

#[test]
fn the_ui_is_generated_from_the_document_the_daemon_serves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/openapi.json");
    let served = serde_json::to_value(petri_api::openapi()).unwrap();
    if std::env::var_os("PETRI_UPDATE_OPENAPI").is_some() {
        let text = serde_json::to_string_pretty(&served).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
        return;
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        committed == served,
        "ui/openapi.json is not the daemon's document: run `PETRI_UPDATE_OPENAPI=1 cargo test -p \
         petri-api --test openapi`, then `npm run gen` in ui/"
    );
}

/// Generated clients name each operation by its id: two alike would share one request type.
#[test]
fn every_operation_has_its_own_id() {
    let doc = serde_json::to_value(petri_api::openapi()).unwrap();
    let mut seen = std::collections::HashMap::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("`{id}` names both {other} and {method} {path}");
            }
        }
    }
}
