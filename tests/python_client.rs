//! The official Python client (`kubernetes` from PyPI, installed by
//! scripts/install-deps into target/python) against the real server; the checks
//! themselves are in tests/python/client.py.

mod common;

use common::{Server, run_timeout};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn python_client_creates_lists_watches_and_patches() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = manifest.join("target/python/bin/python3");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-deps",
        python.display()
    );
    let server = Server::start_api();
    let out = run_timeout(
        Command::new(&python)
            .arg(manifest.join("tests/python/client.py"))
            .env("KUBECONFIG", server.kubeconfig()),
        Duration::from_secs(120),
    )
    .expect("the python client hung");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("all checks passed"), "{}", out.stdout);
}
