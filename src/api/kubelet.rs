//! The subresources served by a node's kubelet: `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward` and `nodes/proxy`, as kube-apiserver serves
//! them (`LogLocation`, `ExecLocation`, `AttachLocation`, `PortForwardLocation`
//! in `pkg/registry/core/pod/strategy.go`, the node's `ResourceLocation`).
//!
//! The request is checked against the pod first (its container, its node), with
//! kube-apiserver's error texts; then the kubelet is found from the Node:
//! the first of its `InternalIP`, `ExternalIP`, `Hostname` addresses (k3s's
//! `--kubelet-preferred-address-types`) and `daemonEndpoints.kubeletEndpoint`
//! port, dialled over TLS with the apiserver's kubelet-client certificate, the
//! kubelet's serving certificate checked against the cluster's server CA. The
//! request is forwarded as it is, upgrades included, so the client speaks
//! whatever stream protocol the node's runtime answers with: containerd's
//! streaming server takes SPDY/3.1 and the WebSocket `channel.k8s.io` protocols
//! up to v4, and refuses kubectl's WebSocket `v5.channel.k8s.io` and its
//! port-forward tunnel, which kubectl takes as an upgrade failure and falls back
//! to SPDY. A log stream is passed through as the kubelet writes it (followed
//! logs included); a kubelet error becomes a `Status` the way kube-apiserver's
//! `GenericHttpResponseChecker` makes one.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use super::Api;
use super::handlers::Context;
use super::status::{Cause, Status};
use crate::forward::{self, Upstream};

/// The kubelet port when a Node does not say (`ports.KubeletPort`).
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How long dialling a kubelet may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Of a kubelet's error body, this much becomes the Status message.
const MAX_ERROR_BODY: usize = 50_000;

/// How the apiserver reaches kubelets: TLS with its kubelet-client certificate.
pub struct KubeletClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

impl KubeletClient {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> KubeletClient {
        KubeletClient {
            connector: TlsConnector::from(tls),
        }
    }
}

/// A kubelet's address and the path to ask it for.
struct Location {
    host: String,
    port: u16,
    path_and_query: String,
}

impl Location {
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    fn url(&self) -> String {
        format!("https://{}{}", self.authority(), self.path_and_query)
    }
}

/// The request's query, every pair in order (`command` repeats).
fn pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn encode(pairs: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    query.finish()
}

/// Every container name of a pod: init, regular, ephemeral (`VisitContainers`).
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|kind| pod["spec"][kind].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request is about (`validateContainer`): the one named, which
/// must exist, or the pod's only container.
fn validate_container(pod: &Value, container: Option<&str>, pod_name: &str) -> Result<String, Status> {
    let names = container_names(pod);
    match container {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(Status::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None => {
            let regular = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
            match regular {
                1 => Ok(pod["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()),
                0 => Err(Status::bad_request(format!(
                    "a container name must be specified for pod {pod_name}"
                ))),
                _ => Err(Status::bad_request(format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    names.join(" ")
                ))),
            }
        }
    }
}

fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// Where a node's kubelet listens.
async fn kubelet_address(api: &Arc<Api>, node: &str) -> Result<(String, u16), Status> {
    let (object, _) = super::context(api, "nodes", None, Some(node))?.current().await?;
    let addresses = object["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
        })
        .ok_or_else(|| {
            Status::new(
                500,
                "",
                format!(
                    "no preferred addresses found; known addresses: {}",
                    Value::Array(addresses.clone())
                ),
            )
        })?;
    let port = object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

impl Api {
    fn kubelet_client(&self) -> Result<&KubeletClient, Status> {
        self.kubelet
            .get()
            .ok_or_else(|| Status::unavailable("this server has no kubelet client configured"))
    }

    /// Opens a TLS connection to a kubelet.
    async fn dial_kubelet(
        &self,
        location: &Location,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let client = self.kubelet_client().map_err(|s| s.message)?;
        let server_name = match location.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(location.host.clone()).map_err(|err| err.to_string())?,
        };
        let authority = location.authority();
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|err| format!("dial tcp {authority}: {err}"))?;
            let _ = tcp.set_nodelay(true);
            client
                .connector
                .connect(server_name, tcp)
                .await
                .map_err(|err| format!("tls: {err}"))
        };
        tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| format!("dial tcp {authority}: i/o timeout"))?
    }
}

/// `GET pods/<name>/log`.
pub async fn log(ctx: &Context) -> Result<Response, Status> {
    let name = ctx.name().to_string();
    let query = &ctx.query;
    let mut causes = Vec::new();
    let tail_lines = query.int("tailLines")?;
    if let Some(tail) = tail_lines.filter(|t| *t < 0) {
        causes.push(invalid("tailLines", tail, "must be greater than or equal to 0"));
    }
    let limit_bytes = query.int("limitBytes")?;
    if let Some(limit) = limit_bytes.filter(|l| *l < 1) {
        causes.push(invalid("limitBytes", limit, "must be greater than 0"));
    }
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.get("sinceTime");
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push(Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            field: String::new(),
        }),
        (Some(since), None) if since < 1 => causes.push(invalid("sinceSeconds", since, "must be greater than 0")),
        _ => {}
    }
    if let Some(time) = since_time
        && super::time::parse_rfc3339(time).is_none()
    {
        return Err(Status::bad_request(format!(
            "parsing time {time:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
        )));
    }
    if !causes.is_empty() {
        return Err(Status::invalid("PodLogOptions", "", &name, causes));
    }
    let (pod, _) = ctx.current().await?;
    let container = validate_container(&pod, query.get("container"), &name)?;
    let Some(node) = node_name(&pod) else {
        // Not scheduled: no logs yet, and no error either (kube-apiserver's
        // LocationStreamer without a location).
        return Ok(text_response(Body::empty()));
    };
    let (host, port) = kubelet_address(&ctx.api, node).await?;
    let mut params = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if query.flag(flag)? {
            params.push((flag, "true".to_string()));
        }
    }
    if let Some(since) = since_seconds {
        params.push(("sinceSeconds", since.to_string()));
    }
    if let Some(time) = since_time {
        params.push(("sinceTime", time.to_string()));
    }
    if let Some(tail) = tail_lines {
        params.push(("tailLines", tail.to_string()));
    }
    if let Some(limit) = limit_bytes {
        params.push(("limitBytes", limit.to_string()));
    }
    let namespace = ctx.target.namespace.as_deref().unwrap_or_default();
    let location = Location {
        host,
        port,
        path_and_query: format!(
            "/containerLogs/{}/{}/{}?{}",
            path_segment(namespace),
            path_segment(&name),
            path_segment(&container),
            encode(&params)
        ),
    };
    let io = ctx
        .api
        .dial_kubelet(&location)
        .await
        .map_err(|err| Status::new(500, "", format!("Get \"{}\": {err}", location.url())))?;
    let response = forward::forward(
        io,
        Upstream {
            method: Method::GET,
            path_and_query: &location.path_and_query,
            host: &location.authority(),
            headers: &HeaderMap::new(),
            body: Body::empty(),
            upgrade: None,
        },
    )
    .await
    .map_err(|err| Status::new(500, "", format!("Get \"{}\": {err}", location.url())))?;
    let code = response.status();
    if !code.is_success() {
        let body = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        return Err(kubelet_error(
            code,
            String::from_utf8_lossy(&body).trim_end().to_string(),
        ));
    }
    Ok(text_response(response.into_body()))
}

fn invalid(field: &str, value: i64, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value}: {why}"),
        field: field.into(),
    }
}

fn text_response(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A kubelet's error response as a Status (`GenericHttpResponseChecker`).
fn kubelet_error(code: StatusCode, body: String) -> Status {
    match code.as_u16() {
        400 => Status::bad_request(body),
        500 => Status::internal(body),
        404 => Status::new(404, "NotFound", body),
        403 => Status::forbidden(body),
        401 => Status::new(401, "Unauthorized", body),
        other => Status::new(other, "", body),
    }
}

/// A name as one URL path segment.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The parts of a request a streaming subresource forwards.
pub struct Forwarded {
    pub method: Method,
    pub raw_query: Option<String>,
    pub headers: HeaderMap,
    pub upgrade: Option<OnUpgrade>,
    pub body: Body,
}

/// `pods/<name>/exec`, `pods/<name>/attach` and `pods/<name>/portforward`
/// (GET for WebSocket, POST for SPDY).
pub async fn stream(ctx: &Context, request: Forwarded) -> Result<Response, Status> {
    let name = ctx.name().to_string();
    let subresource = ctx.target.subresource.clone().unwrap_or_default();
    let pairs = pairs(request.raw_query.as_deref());
    let value = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let flag = |key: &str| -> Result<bool, Status> {
        match value(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(Status::bad_request(format!(
                "invalid boolean value {other:?} for {key}"
            ))),
        }
    };
    let (pod, _) = ctx.current().await?;
    let namespace = ctx.target.namespace.as_deref().unwrap_or_default();
    let path = if subresource == "portforward" {
        let Some(node) = node_name(&pod) else {
            return Err(Status::bad_request(format!("pod {name} does not have a host assigned")));
        };
        let mut params = Vec::new();
        for (key, ports) in &pairs {
            if key == "ports" {
                for port in ports.split(',').filter(|p| !p.trim().is_empty()) {
                    params.push(("port", port.trim().to_string()));
                }
            }
        }
        let query = encode(&params);
        let path = format!("/portForward/{}/{}", path_segment(namespace), path_segment(&name));
        (
            node.to_string(),
            if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            },
        )
    } else {
        let container = validate_container(&pod, value("container"), &name)?;
        let Some(node) = node_name(&pod) else {
            return Err(Status::bad_request(format!("pod {name} does not have a host assigned")));
        };
        let mut params = Vec::new();
        for (flag_name, param) in [
            ("stdin", "input"),
            ("stdout", "output"),
            ("stderr", "error"),
            ("tty", "tty"),
        ] {
            if flag(flag_name)? {
                params.push((param, "1".to_string()));
            }
        }
        if subresource == "exec" {
            params.extend(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| ("command", v.clone())),
            );
        }
        let path = format!(
            "/{subresource}/{}/{}/{}?{}",
            path_segment(namespace),
            path_segment(&name),
            path_segment(&container),
            encode(&params)
        );
        (node.to_string(), path)
    };
    let (node, path_and_query) = path;
    let (host, port) = kubelet_address(&ctx.api, &node).await?;
    let location = Location {
        host,
        port,
        path_and_query,
    };
    proxy(ctx, location, request).await
}

/// Forwards a request to a kubelet and passes its answer back untouched.
async fn proxy(ctx: &Context, location: Location, request: Forwarded) -> Result<Response, Status> {
    let io = ctx
        .api
        .dial_kubelet(&location)
        .await
        .map_err(|err| Status::new(500, "", format!("error dialing backend: {err}")))?;
    forward::forward(
        io,
        Upstream {
            method: request.method,
            path_and_query: &location.path_and_query,
            host: &location.authority(),
            headers: &request.headers,
            body: request.body,
            upgrade: request.upgrade,
        },
    )
    .await
    .map_err(|err| Status::new(500, "", format!("error trying to reach service: {err}")))
}

/// `nodes/<name>/proxy/<path>`: any request to the node's kubelet.
pub async fn node_proxy(ctx: &Context, path: &str, request: Forwarded) -> Result<Response, Status> {
    let name = ctx.name();
    let prefix = format!("/api/v1/nodes/{name}/proxy");
    let rest = path.strip_prefix(&prefix).unwrap_or_default();
    let rest = if rest.is_empty() { "/" } else { rest };
    let (host, port) = kubelet_address(&ctx.api, name).await?;
    let path_and_query = match request.raw_query.as_deref() {
        Some(query) if !query.is_empty() => format!("{rest}?{query}"),
        _ => rest.to_string(),
    };
    proxy(
        ctx,
        Location {
            host,
            port,
            path_and_query,
        },
        request,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_validated_like_kube_apiserver() {
        let pod = json!({"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            validate_container(&pod, None, "web").unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [init a b]"
        );
        assert_eq!(
            validate_container(&pod, Some("x"), "web").unwrap_err().message,
            "container x is not valid for pod web"
        );
        assert_eq!(validate_container(&pod, Some("init"), "web").unwrap(), "init");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(validate_container(&single, None, "web").unwrap(), "only");
        assert_eq!(
            validate_container(&json!({"spec": {}}), None, "web")
                .unwrap_err()
                .message,
            "a container name must be specified for pod web"
        );
    }

    #[test]
    fn kubelet_errors_become_statuses() {
        let status = kubelet_error(
            StatusCode::BAD_REQUEST,
            "container \"a\" in pod \"p\" is waiting".into(),
        );
        assert_eq!((status.code, status.reason), (400, "BadRequest"));
        assert_eq!(status.message, "container \"a\" in pod \"p\" is waiting");
        assert_eq!(
            kubelet_error(StatusCode::INTERNAL_SERVER_ERROR, "boom".into()).message,
            "Internal error occurred: boom"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        let location = Location {
            host: "fd00::1".into(),
            port: 10250,
            path_and_query: "/healthz".into(),
        };
        assert_eq!(location.url(), "https://[fd00::1]:10250/healthz");
    }
}
