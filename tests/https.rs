//! The apiserver's HTTPS front door, end to end with the real `curl` and `kubectl`:
//! a small axum router behind `api::tls::serve` and `api::auth::authenticate`, with
//! the certificates `pki` creates. Proves the serving certificate verifies for IPs
//! and names, client certificates and bearer tokens authenticate, anonymous
//! requests get 401 except on health checks, foreign client certificates are
//! refused, the kubeconfig works with kubectl, and shutdown does not wait on
//! streams that never end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::routing::get;
use axum::{Extension, Json, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kubebox::api::auth::{self, Authenticator, User};
use kubebox::api::tls;
use kubebox::pki::{self, Pki, Sans};

const TOKEN: &str = "s3cret-token";
const UNAUTHORIZED: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n";

/// The stack under test, on its own runtime, stopped on drop.
struct Server {
    runtime: Runtime,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    port: u16,
    dir: TempDir,
    pki: Pki,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sans = Sans::apiserver("10.43.0.1".parse().unwrap(), &["kube.example.test".into()]).unwrap();
        let pki = Pki::load_or_create(&dir.path().join("server/tls"), &sans).unwrap();
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, format!("{TOKEN},alice,uid-1,\"dev,ops\"\n")).unwrap();
        let authenticator = Arc::new(Authenticator::from_token_file(&tokens).unwrap());

        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz/{*check}", get(|| async { "ok" }))
            .route("/whoami", get(whoami))
            .route("/stream", get(endless))
            .layer(middleware::from_fn_with_state(authenticator, auth::authenticate));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let config = pki::server_tls_config(&pki).unwrap();
        let task = runtime.spawn(tls::serve(listener, config, app, shutdown.clone()));
        Server {
            runtime,
            shutdown,
            task: Some(task),
            port,
            dir,
            pki,
        }
    }

    fn tls(&self, stem: &str) -> PathBuf {
        self.dir.path().join("server/tls").join(stem)
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    /// curl with the server CA trusted, plus `args`.
    fn curl(&self, url: &str, args: &[&str]) -> Reply {
        let ca = self.tls("server-ca.crt");
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code} %{http_version}",
                "--cacert",
            ])
            .arg(&ca)
            .args(args)
            .arg(url);
        Reply::of(&mut command)
    }

    /// curl presenting the client certificate `<stem>.crt/.key` of `dir`.
    fn curl_with_cert(&self, dir: &Path, stem: &str, url: &str, extra: &[&str]) -> Reply {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        let mut args = vec!["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.curl(url, &args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
        }
    }
}

struct Reply {
    exit: i32,
    code: u16,
    version: String,
    body: String,
    stderr: String,
}

impl Reply {
    fn of(command: &mut Command) -> Reply {
        let out = command.output().expect("curl is installed (scripts/install-deps)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, trailer) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let (code, version) = trailer.split_once(' ').unwrap_or((trailer, ""));
        Reply {
            exit: out.status.code().unwrap_or(-1),
            code: code.parse().unwrap_or(0),
            version: version.to_string(),
            body: body.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {self:?}"))
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} HTTP {} ({}) body {:?} stderr {:?}",
            self.exit, self.code, self.version, self.body, self.stderr
        )
    }
}

async fn whoami(Extension(user): Extension<User>) -> Json<Value> {
    Json(json!({ "name": user.name, "groups": user.groups }))
}

/// Endless responses whose body is still alive somewhere in the server.
static LIVE_STREAMS: AtomicUsize = AtomicUsize::new(0);

struct Live;

impl Live {
    fn new() -> Live {
        LIVE_STREAMS.fetch_add(1, Ordering::SeqCst);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response that never ends, like a watch.
async fn endless() -> Body {
    let ticks = futures_util::stream::unfold(Live::new(), |live| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"tick\n")), live))
    });
    Body::from_stream(ticks)
}

#[test]
fn serving_certificate_verifies_for_ips_and_names() {
    let server = Server::start();
    for host in ["127.0.0.1", "localhost"] {
        let reply = server.curl(&server.url(host, "/healthz"), &[]);
        assert_eq!(
            (reply.exit, reply.code, reply.body.as_str()),
            (0, 200, "ok"),
            "{host}: {reply:?}"
        );
    }
    // Names that resolve elsewhere in a cluster, pointed at us with --resolve.
    for host in ["kube.example.test", "kubernetes.default.svc.cluster.local"] {
        let resolve = format!("{host}:{}:127.0.0.1", server.port);
        let reply = server.curl(&server.url(host, "/healthz"), &["--resolve", &resolve]);
        assert_eq!((reply.exit, reply.code), (0, 200), "{host}: {reply:?}");
    }
    // A name the certificate does not carry, and a client that does not trust our CA.
    let resolve = format!("elsewhere.example.test:{}:127.0.0.1", server.port);
    let reply = server.curl(
        &server.url("elsewhere.example.test", "/healthz"),
        &["--resolve", &resolve],
    );
    assert_eq!(reply.exit, 60, "{reply:?}");
    let reply =
        Reply::of(Command::new("curl").args(["-sS", "-w", "\n%{http_code}", &server.url("127.0.0.1", "/healthz")]));
    assert_eq!(reply.exit, 60, "{reply:?}");
}

#[test]
fn admin_certificate_authenticates_over_http1_and_http2() {
    let server = Server::start();
    let dir = server.tls("");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let reply = server.curl_with_cert(&dir, "client-admin", &server.url("127.0.0.1", "/whoami"), &[flag]);
        assert_eq!((reply.code, reply.version.as_str()), (200, version), "{reply:?}");
        assert_eq!(
            reply.json(),
            json!({"name": "system:admin", "groups": ["system:masters", "system:authenticated"]})
        );
    }
    // A further client certificate, issued by the server for a node.
    let node = server
        .pki
        .issue_client_cert("system:node:pi-1", &["system:nodes"])
        .unwrap();
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("node.crt"), &node.cert_pem).unwrap();
    std::fs::write(certs.path().join("node.key"), &node.key_pem).unwrap();
    let reply = server.curl_with_cert(certs.path(), "node", &server.url("localhost", "/whoami"), &[]);
    assert_eq!(
        reply.json(),
        json!({"name": "system:node:pi-1", "groups": ["system:nodes", "system:authenticated"]}),
        "{reply:?}"
    );
}

#[test]
fn bearer_token_from_the_token_file_authenticates() {
    let server = Server::start();
    let header = format!("Authorization: Bearer {TOKEN}");
    let reply = server.curl(&server.url("127.0.0.1", "/whoami"), &["-H", &header]);
    assert_eq!(reply.code, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"name": "alice", "groups": ["dev", "ops", "system:authenticated"]})
    );

    let reply = server.curl(
        &server.url("127.0.0.1", "/whoami"),
        &["-H", "Authorization: Bearer nope"],
    );
    assert_eq!((reply.code, reply.body.as_str()), (401, UNAUTHORIZED), "{reply:?}");
}

#[test]
fn anonymous_requests_reach_health_checks_only() {
    let server = Server::start();
    let reply = server.curl(&server.url("127.0.0.1", "/whoami"), &["-D", "-"]);
    assert_eq!(reply.code, 401, "{reply:?}");
    let (headers, body) = reply.body.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, UNAUTHORIZED);
    assert!(
        headers.to_ascii_lowercase().contains("content-type: application/json"),
        "{headers}"
    );

    for path in ["/healthz", "/readyz/etcd"] {
        let reply = server.curl(&server.url("127.0.0.1", path), &[]);
        assert_eq!((reply.code, reply.body.as_str()), (200, "ok"), "{path}: {reply:?}");
    }
    let reply = server.curl(&server.url("127.0.0.1", "/healthz"), &["-X", "POST"]);
    assert_eq!(reply.code, 401, "{reply:?}");
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let server = Server::start();
    let other = tempfile::tempdir().unwrap();
    Pki::load_or_create(other.path(), &Sans::default()).unwrap();
    let reply = server.curl_with_cert(other.path(), "client-admin", &server.url("127.0.0.1", "/whoami"), &[]);
    // rustls refuses it during the handshake; a 401 would be acceptable, a 200 never.
    assert!(reply.exit != 0 || reply.code == 401, "{reply:?}");
    assert_ne!(reply.code, 200, "{reply:?}");
    assert!(!reply.body.contains("system:admin"), "{reply:?}");
    // The server is still fine for everyone else.
    let reply = server.curl_with_cert(
        &server.tls(""),
        "client-admin",
        &server.url("127.0.0.1", "/whoami"),
        &[],
    );
    assert_eq!(reply.code, 200, "{reply:?}");
}

#[test]
fn kubeconfig_works_with_kubectl() {
    let server = Server::start();
    let path = server.dir.path().join("etc/kube/kube.yaml");
    pki::write_kubeconfig(&path, 0o600, &server.url("127.0.0.1", ""), &server.pki).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl is installed");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kubectl {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let view = |jsonpath: &str| kubectl(&["config", "view", "--raw", "-o", &format!("jsonpath={jsonpath}")]);
    let admin = server.pki.admin();
    assert_eq!(
        view("{.clusters[0].cluster.certificate-authority-data}"),
        STANDARD.encode(server.pki.server_ca_pem())
    );
    assert_eq!(
        view("{.users[0].user.client-certificate-data}"),
        STANDARD.encode(&admin.cert_pem)
    );
    assert_eq!(
        view("{.users[0].user.client-key-data}"),
        STANDARD.encode(&admin.key_pem)
    );
    assert_eq!(view("{.clusters[0].cluster.server}"), server.url("127.0.0.1", ""));
    assert_eq!(view("{.current-context}"), "default");

    // And Go's TLS client gets in with it as the admin.
    let whoami: Value = serde_json::from_str(&kubectl(&["get", "--raw", "/whoami"])).unwrap();
    assert_eq!(whoami["name"], "system:admin");
    pki::write_kubeconfig(&path, 0o600, &server.url("localhost", ""), &server.pki).unwrap();
    let whoami: Value = serde_json::from_str(&kubectl(&["get", "--raw", "/whoami"])).unwrap();
    assert_eq!(whoami["groups"], json!(["system:masters", "system:authenticated"]));
}

#[test]
fn shutdown_does_not_wait_for_endless_responses() {
    let mut server = Server::start();
    let ca = server.tls("server-ca.crt");
    let mut watchers = Vec::new();
    for flag in ["--http1.1", "--http2"] {
        let watcher = Command::new("curl")
            .args(["-sSN", "--max-time", "30", flag, "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg("--cacert")
            .arg(&ca)
            .arg(server.url("127.0.0.1", "/stream"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        watchers.push(watcher);
    }
    // Both streams are flowing.
    for watcher in &mut watchers {
        let mut line = String::new();
        let stdout = watcher.stdout.as_mut().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line, "tick\n");
    }
    assert_eq!(LIVE_STREAMS.load(Ordering::SeqCst), 2);

    let started = Instant::now();
    server.shutdown.cancel();
    let task = server.task.take().unwrap();
    server
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })
        .expect("serve returns soon after shutdown")
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    for mut watcher in watchers {
        // The streams were cut, so curl ends (with an error) long before --max-time.
        let deadline = Instant::now() + Duration::from_secs(5);
        while watcher.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "curl still streaming after shutdown");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Nothing of them lives on in the server (HTTP/2 streams run in tasks of their own).
    let deadline = Instant::now() + Duration::from_secs(2);
    while LIVE_STREAMS.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "response bodies still alive after shutdown");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = server.curl(&server.url("127.0.0.1", "/healthz"), &[]);
    assert_eq!(reply.exit, 7, "still accepting after shutdown: {reply:?}");
}
