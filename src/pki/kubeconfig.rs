//! The admin kubeconfig, in the shape k3s writes to `/etc/rancher/k3s/k3s.yaml`:
//! cluster, user and context all named `default`, certificates embedded as data.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Pki, PkiError, files};

/// The kubeconfig text for `server_url` (e.g. `https://127.0.0.1:6443`).
pub fn kubeconfig(server_url: &str, pki: &Pki) -> String {
    // A JSON string is a valid YAML double-quoted scalar: safe for any URL.
    let server = serde_json::Value::String(server_url.to_string());
    let ca = STANDARD.encode(pki.server_ca_pem());
    let cert = STANDARD.encode(&pki.admin().cert_pem);
    let key = STANDARD.encode(&pki.admin().key_pem);
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

/// Writes the admin kubeconfig to `path` atomically with file mode `mode` (k3s's
/// `--write-kubeconfig-mode`, 0600 by default), creating parent directories.
pub fn write_kubeconfig(path: &Path, mode: u32, server_url: &str, pki: &Pki) -> Result<(), PkiError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::create_dir(parent, 0o755)?;
    }
    files::write_atomic(path, kubeconfig(server_url, pki).as_bytes(), mode)
}
