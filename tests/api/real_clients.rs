//! The client libraries Strapi front ends use, against the real server: strapi-sdk-js,
//! refine's `@refinedev/strapi-v4` `AuthHelper` and `@strapi/client`, driven by
//! `tests/clients/strapi_clients.mjs` (pinned in its package-lock.json) through register,
//! login, `fetchUser`/`me`, change password, logout, and the answers to a forgotten token
//! (403) and a bad one (401) that clients branch on. Once in each `JWT_MANAGEMENT` mode.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::{node_packages_missing, spawn_app_with};

/// The packages the script imports, as `npm ci --prefix tests/clients` installs them.
const PACKAGES: [&str; 4] = [
    "strapi-sdk-js",
    "@refinedev/strapi-v4",
    "@strapi/client",
    "axios",
];

/// Runs the script against a fresh server started with `env`.
async fn drive_the_clients(label: &str, env: &[(&str, &str)]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    // CI installs what it needs (.ci/run): there, a missing piece is a failure, not a skip.
    if !support::runs_here(
        "the real-client test",
        node_packages_missing(&dir, &PACKAGES),
    ) {
        return;
    }
    let app = spawn_app_with(env).await;
    let mut node = Command::new("node");
    node.arg(dir.join("strapi_clients.mjs"))
        .current_dir(&dir)
        .env("API_ORIGIN", &app.address)
        .env("RUN_LABEL", label);
    // The server runs on this test's runtime: wait for node off it.
    let output = actix_web::rt::task::spawn_blocking(move || node.output())
        .await
        .expect("the node task")
        .expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{said}");
    assert!(output.status.success(), "a client failed:\n{said}");
    assert!(said.contains("all three clients passed"), "{said}");
}

#[actix_web::test]
async fn strapi_front_end_clients_work_in_the_plugins_mode() {
    drive_the_clients("legacy-support", &[]).await;
}

#[actix_web::test]
async fn strapi_front_end_clients_work_in_strapis_refresh_mode() {
    drive_the_clients("refresh", &[("JWT_MANAGEMENT", "refresh")]).await;
}
