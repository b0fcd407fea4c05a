//! Private registries: the node's `registries.yaml` (k3s's file, same shape, at
//! `/etc/kube/registries.yaml` or `--private-registry`), turned into what the
//! supervised containerd reads.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example:5000"]
//!   registry.example:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   mirror.example:5000:
//!     auth: { username: u, password: p }        # or auth: base64, token: ...
//!     tls: { ca_file: /ca.pem, insecure_skip_verify: false, cert_file: c, key_file: k }
//! ```
//!
//! containerd 1.6's CRI plugin (Debian's) takes mirrors and TLS only as `hosts.toml`
//! directories (`registry.config_path`, one `<dir>/<host>/hosts.toml` per registry;
//! `*` becomes `_default`), and credentials only in its own config
//! (`registry.configs."<host>".auth`, looked up by the host actually contacted, so a
//! mirror's credentials are keyed by the mirror's host, as in k3s). Mirror endpoints
//! are tried in order, then the registry itself, unless an endpoint *is* the
//! registry (then that endpoint, with its scheme, is the final fallback).
//! `rewrite` needs k3s's patched containerd: it is reported and ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::containerd::toml_string;

/// Where `kube` looks for the file when `--private-registry` is not given.
pub const DEFAULT_PATH: &str = "/etc/kube/registries.yaml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid registries file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: String,
    /// An identity (refresh) token; `identity_token` in k3s's newer spelling.
    #[serde(default, alias = "identity_token", alias = "identitytoken")]
    pub token: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Registries {
    /// Reads `path`; a missing file is an empty configuration unless `required`
    /// (the flag named it explicitly).
    pub fn load(path: &Path, required: bool) -> Result<Registries, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Registries::default()),
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let registries = Registries::parse(&text).map_err(|message| Error::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        registries.validate().map_err(|message| Error::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(registries)
    }

    pub fn parse(text: &str) -> Result<Registries, String> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        serde_saphyr::from_str::<Option<Registries>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    }

    fn validate(&self) -> Result<(), String> {
        let bad_host = |h: &str| h.is_empty() || h.contains(['/', ' ', '"', '\\']) || h == "." || h == "..";
        for (host, mirror) in &self.mirrors {
            if host != "*" && bad_host(host) {
                return Err(format!("mirror {host:?} is not a registry host name"));
            }
            for e in &mirror.endpoint {
                endpoint_url(e).ok_or_else(|| format!("mirror {host:?}: endpoint {e:?} is not a URL"))?;
            }
        }
        for (host, config) in &self.configs {
            if host != "*" && bad_host(host) {
                return Err(format!("config {host:?} is not a registry host name"));
            }
            if let Some(tls) = &config.tls
                && tls.cert_file.is_some() != tls.key_file.is_some()
            {
                return Err(format!("config {host:?}: tls needs both cert_file and key_file"));
            }
        }
        Ok(())
    }

    /// What the file asks for that this containerd cannot do.
    pub fn warnings(&self) -> Vec<String> {
        self.mirrors
            .iter()
            .filter(|(_, m)| !m.rewrite.is_empty())
            .map(|(host, _)| format!("mirror {host:?}: `rewrite` needs k3s's containerd and is ignored by this one"))
            .collect()
    }

    /// The `hosts.toml` file of every registry named, by directory name.
    pub fn hosts_files(&self) -> BTreeMap<String, String> {
        let mut names: Vec<&String> = self.mirrors.keys().collect();
        names.extend(self.configs.keys().filter(|h| !self.mirrors.contains_key(*h)));
        names
            .into_iter()
            .map(|host| {
                let dir = if host == "*" {
                    "_default".to_string()
                } else {
                    host.clone()
                };
                (dir, self.hosts_toml(host))
            })
            .collect()
    }

    fn hosts_toml(&self, host: &str) -> String {
        let upstream = match host {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            _ => format!("https://{host}"),
        };
        let endpoints: Vec<String> = self
            .mirrors
            .get(host)
            .map(|m| m.endpoint.iter().filter_map(|e| endpoint_url(e)).collect())
            .unwrap_or_default();
        // An endpoint that is the registry itself (a plain-HTTP local registry) is the
        // final fallback in place of the https default.
        let (own, mirrors): (Vec<&String>, Vec<&String>) =
            endpoints.iter().partition(|e| host != "*" && url_host(e) == host);
        let mut out = String::from("# Generated by kube from its registries file; edits are overwritten.\n");
        if host != "*" {
            let server = own.first().map(|s| s.to_string()).unwrap_or(upstream);
            let _ = writeln!(out, "server = {}", toml_string(&server));
            out.push_str(&self.tls_lines(host, ""));
        }
        for endpoint in mirrors {
            let _ = writeln!(out, "\n[host.{}]", toml_string(endpoint));
            out.push_str("  capabilities = [\"pull\", \"resolve\"]\n");
            out.push_str(&self.tls_lines(url_host(endpoint), "  "));
        }
        out
    }

    /// `ca`, `client` and `skip_verify` lines for the registry at `host`.
    fn tls_lines(&self, host: &str, indent: &str) -> String {
        let Some(tls) = self.configs.get(host).and_then(|c| c.tls.as_ref()) else {
            return String::new();
        };
        let mut out = String::new();
        if let Some(ca) = &tls.ca_file {
            let _ = writeln!(out, "{indent}ca = {}", toml_string(&ca.to_string_lossy()));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let _ = writeln!(
                out,
                "{indent}client = [[{}, {}]]",
                toml_string(&cert.to_string_lossy()),
                toml_string(&key.to_string_lossy())
            );
        }
        if tls.insecure_skip_verify {
            let _ = writeln!(out, "{indent}skip_verify = true");
        }
        out
    }

    /// The CRI plugin's `registry` section of containerd's config: the hosts
    /// directory and the credentials.
    pub fn cri_config(&self, config_path: &Path) -> String {
        let mut out = format!(
            "\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = {}\n",
            toml_string(&config_path.to_string_lossy())
        );
        for (host, config) in &self.configs {
            let Some(auth) = &config.auth else { continue };
            let _ = writeln!(
                out,
                "\n    [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}.auth]",
                toml_string(host)
            );
            for (key, value) in [
                ("username", &auth.username),
                ("password", &auth.password),
                ("auth", &auth.auth),
                ("identitytoken", &auth.token),
            ] {
                if !value.is_empty() {
                    let _ = writeln!(out, "      {key} = {}", toml_string(value));
                }
            }
        }
        out
    }

    /// Replaces everything under `dir` with this configuration's `hosts.toml` files.
    pub fn write_hosts(&self, dir: &Path) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Write { path, source }
        };
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(dir)(e)),
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in self.hosts_files() {
            let host_dir = dir.join(&name);
            std::fs::create_dir_all(&host_dir).map_err(io(&host_dir))?;
            let file = host_dir.join("hosts.toml");
            std::fs::write(&file, text).map_err(io(&file))?;
        }
        Ok(())
    }
}

/// An endpoint as a URL (`https://` when it names no scheme), without a trailing `/`.
fn endpoint_url(endpoint: &str) -> Option<String> {
    let e = endpoint.trim().trim_end_matches('/');
    let url = if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    };
    let (scheme, rest) = url.split_once("://")?;
    let ok = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !url.contains(['"', '\\', ' ', '\n']);
    ok.then_some(url)
}

/// The `host[:port]` of a URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example:5000"
      - mirror2.example
  "127.0.0.1:5000":
    endpoint: ["http://127.0.0.1:5000"]
  "*":
    endpoint: ["https://catch.all"]
  made.up:
    endpoint: ["http://127.0.0.1:5000"]
    rewrite:
      "^library/(.*)": "mirrored/$1"
configs:
  "mirror.example:5000":
    auth:
      username: alice
      password: "s3\"cret"
    tls:
      ca_file: /etc/ssl/mirror.pem
      insecure_skip_verify: true
  private.example:
    auth:
      token: tok
"#;

    #[test]
    fn k3s_file_renders_hosts_and_credentials() {
        let r = Registries::parse(K3S).unwrap();
        r.validate().unwrap();
        let files = r.hosts_files();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [
                "127.0.0.1:5000",
                "_default",
                "docker.io",
                "made.up",
                "mirror.example:5000",
                "private.example"
            ]
        );
        let docker = &files["docker.io"];
        assert!(
            docker.contains(r#"server = "https://registry-1.docker.io""#),
            "{docker}"
        );
        let first = docker.find(r#"[host."https://mirror.example:5000"]"#).unwrap();
        let second = docker.find(r#"[host."https://mirror2.example"]"#).unwrap();
        assert!(first < second, "endpoints keep their order: {docker}");
        assert!(docker.contains(r#"  ca = "/etc/ssl/mirror.pem""#), "{docker}");
        assert!(docker.contains("  skip_verify = true"), "{docker}");
        // A plain-HTTP registry mirrored onto itself: that endpoint is the server.
        let local = &files["127.0.0.1:5000"];
        assert!(local.contains(r#"server = "http://127.0.0.1:5000""#), "{local}");
        assert!(!local.contains("[host."), "{local}");
        let made_up = &files["made.up"];
        assert!(made_up.contains(r#"server = "https://made.up""#), "{made_up}");
        assert!(made_up.contains(r#"[host."http://127.0.0.1:5000"]"#), "{made_up}");
        assert!(!files["_default"].contains("server ="), "{}", files["_default"]);
        assert!(files["private.example"].contains(r#"server = "https://private.example""#));

        let cri = r.cri_config(Path::new("/d/certs.d"));
        assert!(cri.contains(r#"config_path = "/d/certs.d""#), "{cri}");
        assert!(
            cri.contains(r#"[plugins."io.containerd.grpc.v1.cri".registry.configs."mirror.example:5000".auth]"#),
            "{cri}"
        );
        assert!(cri.contains(r#"password = "s3\"cret""#), "{cri}");
        assert!(cri.contains(r#"identitytoken = "tok""#), "{cri}");
        assert_eq!(r.warnings().len(), 1);
        assert!(r.warnings()[0].contains("made.up"));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        assert_eq!(Registries::parse("# nothing\n").unwrap(), Registries::default());
        let e = Registries::parse("mirrors:\n  docker.io:\n    endpoints: [x]\n").unwrap_err();
        assert!(e.contains("endpoints"), "{e}");
        assert!(Registries::parse("mirrors: [1, 2]").is_err());
        let bad = Registries::parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("ftp://x"));
        let bad = Registries::parse("configs:\n  a.b:\n    tls:\n      cert_file: /c\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("key_file"));
        let bad = Registries::parse("mirrors:\n  \"../etc\":\n    endpoint: []\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn load_missing_and_write_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.yaml");
        assert_eq!(Registries::load(&missing, false).unwrap(), Registries::default());
        assert!(
            Registries::load(&missing, true)
                .unwrap_err()
                .to_string()
                .contains("none.yaml")
        );
        let file = dir.path().join("registries.yaml");
        std::fs::write(&file, K3S).unwrap();
        let r = Registries::load(&file, true).unwrap();
        let hosts = dir.path().join("certs.d");
        std::fs::create_dir_all(hosts.join("stale.example")).unwrap();
        r.write_hosts(&hosts).unwrap();
        assert!(!hosts.join("stale.example").exists());
        assert!(hosts.join("docker.io/hosts.toml").is_file());
        assert!(hosts.join("_default/hosts.toml").is_file());
    }
}
