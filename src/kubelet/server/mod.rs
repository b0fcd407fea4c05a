//! The kubelet API (upstream `pkg/kubelet/server/server.go`) on port 10250 over
//! TLS: `/containerLogs`, `/exec`, `/attach`, `/portForward`, `/healthz`, `/pods`
//! and `/stats/summary`, the endpoints the apiserver's `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward` and `nodes/proxy` reach.
//!
//! Only the apiserver may call it: clients authenticate with a certificate of the
//! cluster's client CA, and only `kube-apiserver-kubelet-client` is authorized
//! (no certificate: 401; another identity: 403, as a kubelet's webhook
//! authorizer would answer for a user without `nodes/proxy`). Like the upstream
//! kubelet, exec, attach and port-forward return nothing themselves: they ask
//! the runtime (CRI `Exec`/`Attach`/`PortForward`) for a streaming URL on
//! containerd's loopback streaming server and proxy the upgraded connection to it
//! byte for byte, so the protocols are whatever containerd speaks (SPDY/3.1 and
//! the `channel.k8s.io` WebSocket protocols up to v4). Errors are plain text
//! with an HTTP status, as the kubelet writes them; the apiserver turns them into
//! `Status` objects.

pub mod logs;
pub mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper::upgrade::OnUpgrade;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::ListParams;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::auth::PeerCertificate;
use crate::forward::{self, Upstream};
use crate::kubelet::cri::{Error as RuntimeError, Runtime, api as cri};
use crate::kubelet::pods::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use crate::pki::{self, Pki, PkiError};

/// The kubelet API's default port (`ports.KubeletPort`).
pub const DEFAULT_PORT: u16 = 10250;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address} for the kubelet API: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("kubelet certificate: {0}")]
    Pki(#[from] PkiError),
}

/// A failed kubelet request: a status and the plain-text message.
#[derive(Debug)]
pub struct HttpError {
    code: StatusCode,
    message: String,
}

impl HttpError {
    fn new(code: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<RuntimeError> for HttpError {
    /// As the kubelet's `streaming.WriteError` maps gRPC codes.
    fn from(err: RuntimeError) -> HttpError {
        let code = match &err {
            RuntimeError::Call { code, .. } => match code {
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            RuntimeError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RuntimeError::Endpoint(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(code, err.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.code, self.message).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// The kubelet API's state.
pub struct Kubelet {
    node_name: String,
    /// The kubelet's root directory: the node filesystem of `/stats/summary`.
    root_dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    /// The kubelet's API client (the node identity), for the pods it runs.
    client: kube::Client,
    cpu: stats::CpuSampler,
}

impl Kubelet {
    pub fn new(node_name: String, root_dir: PathBuf, runtime: Arc<dyn Runtime>, client: kube::Client) -> Kubelet {
        Kubelet {
            node_name,
            root_dir,
            runtime,
            client,
            cpu: stats::CpuSampler::default(),
        }
    }
}

/// The kubelet's TLS identity in a server process: a serving certificate from the
/// cluster's server CA for `node_name` and the host's names and addresses, kept
/// in `dir`, and the client CA the apiserver's certificate is checked against.
pub fn tls_config(pki: &Pki, dir: &FsPath, node_name: &str) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let sans = pki::Sans::kubelet(node_name)?;
    let serving = pki.kubelet_serving(dir, node_name, &sans)?;
    Ok(pki::kubelet_tls_config(&serving, pki.client_ca_pem())?)
}

/// Binds the kubelet API's port (before anything else starts, so a taken port
/// fails the start with a clear error).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// Serves the kubelet API on `listener` until `shutdown`.
pub async fn run(
    kubelet: Arc<Kubelet>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "kubelet API listening");
    }
    crate::api::tls::serve(listener, tls, router(kubelet), shutdown).await;
}

/// The kubelet API's routes, behind the apiserver-only authorization.
pub fn router(kubelet: Arc<Kubelet>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/stats/summary", get(summary))
        .route("/stats/summary/", get(summary))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec_uid))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/attach/{namespace}/{pod}/{uid}/{container}", any(attach_uid))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route("/portForward/{namespace}/{pod}/{uid}", any(port_forward_uid))
        .with_state(kubelet)
        .layer(axum::middleware::from_fn(authorize))
}

/// Only the apiserver's kubelet-client certificate gets through.
async fn authorize(request: Request, next: Next) -> Response {
    let user = request
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|peer| peer.0.clone());
    match user {
        Some(user) if user.name == pki::KUBELET_CLIENT_USER => next.run(request).await,
        Some(user) => {
            let verb = match *request.method() {
                Method::GET | Method::HEAD => "get",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "*",
            };
            let subresource = if request.uri().path().starts_with("/stats") {
                "stats"
            } else {
                "proxy"
            };
            HttpError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                    user.name
                ),
            )
            .into_response()
        }
        None => HttpError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

async fn healthz(check: Option<Path<String>>) -> Response {
    match check.as_ref().map(|c| c.as_str()) {
        None | Some("ping" | "syncloop" | "log") => "ok".into_response(),
        Some(other) => HttpError::not_found(format!("no health check named {other:?}")).into_response(),
    }
}

/// `/pods`: the pods bound to this node, as a `PodList`.
async fn pods(State(kubelet): State<Arc<Kubelet>>) -> Result<Response, HttpError> {
    let api = kube::Api::<Pod>::all(kubelet.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", kubelet.node_name));
    let list = api
        .list(&params)
        .await
        .map_err(|err| HttpError::internal(format!("cannot list the node's pods: {err}")))?;
    let items = serde_json::to_value(&list.items).unwrap_or_default();
    let body = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    Ok(crate::api::json_response(StatusCode::OK, &body))
}

async fn summary(State(kubelet): State<Arc<Kubelet>>) -> Response {
    let doc = stats::summary(&kubelet.node_name, &kubelet.root_dir, &*kubelet.runtime, &kubelet.cpu).await;
    crate::api::json_response(StatusCode::OK, &doc)
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn pod_labels(namespace: &str, pod: &str, uid: Option<&str>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_POD_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
    ]);
    if let Some(uid) = uid {
        labels.insert(LABEL_POD_UID.to_string(), uid.to_string());
    }
    labels
}

/// Containers (any state) carrying all of `labels`.
async fn containers(kubelet: &Kubelet, labels: HashMap<String, String>) -> Result<Vec<cri::Container>, HttpError> {
    let filter = cri::ContainerFilter {
        label_selector: labels,
        ..Default::default()
    };
    Ok(kubelet.runtime.list_containers(Some(filter)).await?)
}

/// `containerd://<id>` → `<id>`.
fn runtime_id(container_id: &str) -> &str {
    container_id.split_once("://").map_or(container_id, |(_, id)| id)
}

/// Which container's log to read, from the pod's status as the kubelet's
/// `validateContainerLogStatus` decides it.
fn log_container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, HttpError> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .collect::<Vec<&ContainerStatus>>();
    let Some(status) = statuses.into_iter().find(|s| s.name == container) else {
        return Err(HttpError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        )));
    };
    let state = status.state.as_ref();
    let last_terminated = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let last_id = last_terminated
        .and_then(|t| t.container_id.as_deref())
        .filter(|id| !id.is_empty());
    let terminated_error =
        || HttpError::bad_request(format!("container {container:?} in pod {pod_name:?} is terminated"));
    if previous {
        return last_id.map(str::to_string).ok_or_else(|| {
            HttpError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        });
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return status
            .container_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| HttpError::bad_request(format!("container {container:?} in pod {pod_name:?} has no ID")));
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        return match terminated.container_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => Ok(id.to_string()),
            None => last_id.map(str::to_string).ok_or_else(terminated_error),
        };
    }
    if last_terminated.is_some() {
        return last_id.map(str::to_string).ok_or_else(terminated_error);
    }
    let waiting = state.and_then(|s| s.waiting.as_ref());
    Err(HttpError::bad_request(
        match waiting.and_then(|w| w.reason.as_deref()) {
            Some("ErrImagePull") => {
                format!("container {container:?} in pod {pod_name:?} is waiting to start: image can't be pulled")
            }
            Some("ImagePullBackOff") => {
                format!(
                    "container {container:?} in pod {pod_name:?} is waiting to start: trying and failing to pull image"
                )
            }
            Some(reason) if waiting.is_some() => {
                format!("container {container:?} in pod {pod_name:?} is waiting to start: {reason}")
            }
            _ if waiting.is_some() => format!("container {container:?} in pod {pod_name:?} is waiting to start: "),
            _ => format!("container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"),
        },
    ))
}

/// A pod of this node by name, from the API.
async fn node_pod(kubelet: &Kubelet, namespace: &str, name: &str) -> Result<Pod, HttpError> {
    let api = kube::Api::<Pod>::namespaced(kubelet.client.clone(), namespace);
    let pod = api
        .get_opt(name)
        .await
        .map_err(|err| HttpError::internal(format!("cannot get pod {name:?}: {err}")))?;
    pod.filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(kubelet.node_name.as_str()))
        .ok_or_else(|| HttpError::not_found(format!("pod {name:?} does not exist")))
}

fn has_container(pod: &Pod, container: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers.iter().any(|c| c.name == container)
        || spec.init_containers.iter().flatten().any(|c| c.name == container)
        || spec.ephemeral_containers.iter().flatten().any(|c| c.name == container)
}

async fn container_logs(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod_name, container)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, HttpError> {
    let options = logs::LogOptions::from_query(&query_pairs(&uri))
        .map_err(|err| HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid request: {err}")))?;
    let pod = node_pod(&kubelet, &namespace, &pod_name).await?;
    if !has_container(&pod, &container) {
        return Err(HttpError::not_found(format!(
            "container {container:?} not found in pod {pod_name:?}"
        )));
    }
    let id = runtime_id(&log_container_id(&pod, &container, options.previous)?).to_string();
    let status = kubelet
        .runtime
        .container_status(&id)
        .await
        .map_err(|err| HttpError::bad_request(format!("failed to get container status {id:?}: {err}")))?;
    if status.log_path.is_empty() {
        return Err(HttpError::bad_request(format!("container {id:?} has no log file")));
    }
    let runtime = kubelet.runtime.clone();
    let still_running: logs::StillRunning = Box::new(move || {
        let (runtime, id) = (runtime.clone(), id.clone());
        Box::pin(async move {
            match runtime.container_status(&id).await {
                Ok(status) => status.state == cri::ContainerState::ContainerRunning as i32,
                Err(_) => false,
            }
        })
    });
    let path = PathBuf::from(&status.log_path);
    let stream = logs::stream(path, &options, still_running)
        .await
        .map_err(|err| HttpError::bad_request(format!("failed to open log file {:?}: {err}", status.log_path)))?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(stream)).into_response())
}

/// The stream options of an exec or attach request (`NewOptions` in the
/// kubelet's remotecommand server): `input`, `output`, `error`, `tty`.
struct StreamOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    command: Vec<String>,
}

impl StreamOptions {
    fn from_query(pairs: &[(String, String)]) -> Result<StreamOptions, HttpError> {
        let flag = |key: &str| {
            pairs
                .iter()
                .any(|(k, v)| k == key && matches!(v.as_str(), "1" | "t" | "T" | "true" | "True" | "TRUE"))
        };
        let tty = flag("tty");
        let options = StreamOptions {
            stdin: flag("input"),
            stdout: flag("output"),
            // A terminal has no separate stderr.
            stderr: flag("error") && !tty,
            tty,
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
        };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err(HttpError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(options)
    }
}

/// The ID of the running container `container` of a pod.
async fn running_container(
    kubelet: &Kubelet,
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
) -> Result<String, HttpError> {
    let mut labels = pod_labels(namespace, pod, uid);
    labels.insert(LABEL_CONTAINER_NAME.to_string(), container.to_string());
    containers(kubelet, labels)
        .await?
        .into_iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .max_by_key(|c| c.created_at)
        .map(|c| c.id)
        .ok_or_else(|| HttpError::not_found(format!("container not found ({container:?})")))
}

/// Proxies the (upgrade) request to the runtime's streaming URL.
async fn proxy_to_runtime(url: &str, request: Request) -> Result<Response, HttpError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| HttpError::internal(format!("the runtime returned an invalid streaming URL {url:?}")))?;
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(HttpError::internal(format!(
            "the runtime's streaming URL {url:?} is not plain HTTP"
        )));
    };
    let io = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|err| {
            HttpError::internal(format!(
                "cannot reach the runtime's streaming server {authority}: {err}"
            ))
        })?;
    let _ = io.set_nodelay(true);
    let (mut parts, body) = request.into_parts();
    let upgrade = parts.extensions.remove::<OnUpgrade>();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    forward::forward(
        io,
        Upstream {
            method: parts.method,
            path_and_query,
            host: authority.as_str(),
            headers: &parts.headers,
            body,
            upgrade,
        },
    )
    .await
    .map_err(|err| HttpError::internal(format!("streaming from the runtime failed: {err}")))
}

async fn exec(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    exec_or_attach(kubelet, false, namespace, pod, None, container, request).await
}

async fn exec_uid(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    exec_or_attach(kubelet, false, namespace, pod, Some(uid), container, request).await
}

async fn attach(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    exec_or_attach(kubelet, true, namespace, pod, None, container, request).await
}

async fn attach_uid(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    exec_or_attach(kubelet, true, namespace, pod, Some(uid), container, request).await
}

async fn exec_or_attach(
    kubelet: Arc<Kubelet>,
    attach: bool,
    namespace: String,
    pod: String,
    uid: Option<String>,
    container: String,
    request: Request,
) -> Result<Response, HttpError> {
    if !matches!(*request.method(), Method::GET | Method::POST) {
        return Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let options = StreamOptions::from_query(&query_pairs(request.uri()))?;
    let id = running_container(&kubelet, &namespace, &pod, uid.as_deref(), &container).await?;
    let url = if attach {
        let request = cri::AttachRequest {
            container_id: id,
            stdin: options.stdin,
            tty: options.tty,
            stdout: options.stdout,
            stderr: options.stderr,
        };
        kubelet.runtime.attach(request).await?
    } else {
        if options.command.is_empty() {
            return Err(HttpError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        let request = cri::ExecRequest {
            container_id: id,
            cmd: options.command,
            tty: options.tty,
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
        };
        kubelet.runtime.exec(request).await?
    };
    proxy_to_runtime(&url, request).await
}

async fn port_forward(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod)): Path<(String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    port_forward_to(kubelet, namespace, pod, None, request).await
}

async fn port_forward_uid(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, uid)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    port_forward_to(kubelet, namespace, pod, Some(uid), request).await
}

async fn port_forward_to(
    kubelet: Arc<Kubelet>,
    namespace: String,
    pod: String,
    uid: Option<String>,
    request: Request,
) -> Result<Response, HttpError> {
    if !matches!(*request.method(), Method::GET | Method::POST) {
        return Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let mut ports = Vec::new();
    for (key, value) in query_pairs(request.uri()) {
        if key == "port" {
            for port in value.split(',').filter(|p| !p.is_empty()) {
                match port.trim().parse::<u16>() {
                    Ok(port) if port > 0 => ports.push(i32::from(port)),
                    _ => return Err(HttpError::bad_request(format!("invalid port {port:?}"))),
                }
            }
        }
    }
    let labels = pod_labels(&namespace, &pod, uid.as_deref());
    let filter = cri::PodSandboxFilter {
        label_selector: labels.clone(),
        ..Default::default()
    };
    let sandbox = kubelet
        .runtime
        .list_pod_sandbox(Some(filter))
        .await?
        .into_iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .map(|s| s.id);
    let sandbox = match sandbox {
        Some(id) => id,
        // Sandboxes without the kubelet's labels: go through a running container.
        None => containers(&kubelet, labels)
            .await?
            .into_iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .max_by_key(|c| c.created_at)
            .map(|c| c.pod_sandbox_id)
            .ok_or_else(|| HttpError::not_found(format!("pod {pod:?} does not exist")))?,
    };
    let url = kubelet
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox,
            port: ports,
        })
        .await?;
    proxy_to_runtime(&url, request).await
}

#[cfg(test)]
mod tests;
