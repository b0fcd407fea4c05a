//! The Kubernetes API server: one generic request path for every resource type in
//! the registry. `dispatch` reads what a request is about (`request`), and hands it
//! to the object handlers (`handlers`), the list/watch handlers (`list`) or the
//! discovery documents (`discovery`). Objects are stored as JSON in the store under
//! kube-apiserver's `/registry/...` keys; an object's resourceVersion is its key's
//! store revision. Every failure is a `Status`.

mod apply;
pub mod auth;
pub mod crd;
pub mod discovery;
mod handlers;
pub mod kinds;
mod kubelet;
mod list;
mod managed;
mod metrics;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
mod pods;
mod protobuf;
pub mod request;
pub mod resources;
mod scale;
pub mod schema;
pub mod selectors;
pub mod status;
mod table;
pub mod time;
pub mod tls;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::sync::{Arc, RwLock};

use crate::store::Store;
pub use kubelet::KubeletClient;
use request::{Query, Target};
use resources::{Registry, ResourceType};
use status::Status;

/// Largest request body accepted (kube-apiserver's limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The API server's state, shared by all requests.
pub struct Api {
    pub store: Store,
    pub authorizer: Box<dyn auth::Authorizer>,
    pub registry: RwLock<Registry>,
    /// `host:port` clients reach us on, for `/api`'s serverAddressByClientCIDRs.
    pub server_address: String,
    /// Where Service cluster IPs and node ports come from.
    pub service_ranges: kinds::ServiceRanges,
    /// How `pods/log`, `pods/exec`, ... and `nodes/proxy` reach kubelets.
    kubelet: std::sync::OnceLock<KubeletClient>,
    metrics: metrics::Metrics,
    /// Generated OpenAPI documents.
    openapi: openapi::OpenApi,
    /// The generated OpenAPI v2 document.
    openapi_v2: openapi_v2::OpenApiV2,
    /// The lease new and updated events share while it is young (see `event_lease`).
    event_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
}

impl Api {
    /// A store lease that expires events an hour after their write. Like
    /// kube-apiserver's lease manager, writes within a minute share one lease
    /// (granted for the TTL plus that minute), so busy clusters hold few leases.
    pub async fn event_lease(&self) -> Result<i64, status::Status> {
        const REUSE: std::time::Duration = std::time::Duration::from_secs(60);
        let mut current = self.event_lease.lock().await;
        if let Some((id, granted)) = *current
            && granted.elapsed() < REUSE
        {
            return Ok(id);
        }
        let ttl = kinds::events::TTL_SECONDS + REUSE.as_secs() as i64;
        let (id, _) = self.store.lease_grant(0, ttl).await.map_err(handlers::store_error)?;
        *current = Some((id, std::time::Instant::now()));
        Ok(id)
    }

    pub fn new(store: Store, server_address: String, service_ranges: kinds::ServiceRanges) -> Arc<Api> {
        Arc::new(Api {
            store,
            authorizer: Box::new(auth::AllowAuthenticated),
            registry: RwLock::new(Registry::builtin()),
            server_address,
            service_ranges,
            kubelet: std::sync::OnceLock::new(),
            metrics: metrics::Metrics::default(),
            event_lease: tokio::sync::Mutex::new(None),
            openapi: openapi::OpenApi::default(),
            openapi_v2: openapi_v2::OpenApiV2::default(),
        })
    }

    /// Sets how the kubelet subresources reach kubelets (once; later calls are ignored).
    pub fn set_kubelet_client(&self, client: KubeletClient) {
        let _ = self.kubelet.set(client);
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn resource_type(&self, target: &Target) -> Result<ResourceType, Status> {
        let resource = target.resource.as_deref().unwrap_or_default();
        self.registry()
            .get(&target.group, &target.version, resource)
            .cloned()
            .ok_or_else(Status::no_route)
    }
}

/// Creates what every cluster has from its first start: the system namespaces and
/// the `default/kubernetes` Service (on the first address of the Service range),
/// and points the Service's Endpoints at this server.
pub async fn bootstrap(api: &Arc<Api>) -> Result<(), Status> {
    use serde_json::json;
    let crds = crd::load(api).await?;
    if crds > 0 {
        tracing::info!(crds, "serving custom resources");
    }
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ensure(api, "namespaces", None, body).await?;
    }
    let (address, port) = api
        .server_address
        .rsplit_once(':')
        .unwrap_or((&api.server_address, "6443"));
    let port: u16 = port.parse().unwrap_or(6443);
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "spec": {
            "clusterIP": api.service_ranges.first().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    ensure(api, "services", Some("default"), service).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    keep(api, "endpoints", endpoints, &["subsets"]).await?;
    // Its EndpointSlice, as kube-apiserver's endpoint reconciler writes it (the
    // endpointslice controller leaves Services without a selector alone).
    let family = if address.parse::<std::net::Ipv6Addr>().is_ok() {
        "IPv6"
    } else {
        "IPv4"
    };
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    keep(
        api,
        "discovery.k8s.io/endpointslices",
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await
}

/// Creates `desired` (in `default`), or rewrites it where one of `fields` differs.
async fn keep(api: &Arc<Api>, resource: &str, desired: Value, fields: &[&str]) -> Result<(), Status> {
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    let ctx = context(api, resource, Some("default"), Some(name))?;
    match ctx.current().await {
        Ok((current, _)) if fields.iter().all(|f| current[f] == desired[f]) => Ok(()),
        Ok(_) => ctx.update(Bytes::from(desired.to_string())).await.map(|_| ()),
        Err(status) if status.code == 404 => ensure(api, resource, Some("default"), desired).await,
        Err(status) => Err(status),
    }
}

/// A request context for server-internal writes to a v1 resource (`resource`
/// for the core group, `group/resource` for others).
fn context(
    api: &Arc<Api>,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<handlers::Context, Status> {
    let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
    let target = Target {
        group: group.into(),
        version: "v1".into(),
        namespace: namespace.map(str::to_string),
        resource: Some(resource.into()),
        name: name.map(str::to_string),
        ..Default::default()
    };
    Ok(handlers::Context {
        api: api.clone(),
        rtype: api.resource_type(&target)?,
        target,
        query: Query::default(),
        warnings: handlers::Warnings::default(),
        // Server-internal writes are kube-apiserver's in managedFields.
        headers: [(
            header::USER_AGENT,
            axum::http::HeaderValue::from_static("kube-apiserver"),
        )]
        .into_iter()
        .collect(),
    })
}

/// Creates a core/v1 object unless it exists.
async fn ensure(api: &Arc<Api>, resource: &str, namespace: Option<&str>, body: Value) -> Result<(), Status> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    if context(api, resource, namespace, Some(name))?.current().await.is_ok() {
        return Ok(());
    }
    let ctx = context(api, resource, namespace, None)?;
    match ctx.create(Bytes::from(body.to_string())).await {
        Ok(_) => {
            tracing::info!(resource, name = %body["metadata"]["name"], "created");
            Ok(())
        }
        Err(status) if status.reason == "AlreadyExists" => Ok(()),
        Err(status) => Err(status),
    }
}

/// The routes of the API: health, version, discovery and every resource path,
/// behind authentication (authorization happens per request in `route`).
pub fn router(api: Arc<Api>, authenticator: Arc<auth::Authenticator>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/healthz/{check}", get(health))
        .route("/livez/{check}", get(health))
        .route("/readyz/{check}", get(health))
        .route(
            "/version",
            get(|| async { json_response(StatusCode::OK, &discovery::version()) }),
        )
        .route("/metrics", get(metrics_text))
        .fallback(dispatch)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(authenticator, auth::authenticate))
}

/// `/healthz`, `/livez`, `/readyz` (and `/<endpoint>/<check>`), as kube-apiserver
/// answers them: `ok`, or with `?verbose` (and always on failure) one
/// `[+]check ok` line per check; `?exclude=<check>` (repeatable) leaves checks out.
async fn health(State(api): State<Arc<Api>>, uri: axum::http::Uri) -> Response {
    let path = uri.path().trim_matches('/');
    let (endpoint, only) = path.split_once('/').unwrap_or((path, ""));
    let params: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let verbose = params.iter().any(|(k, v)| k == "verbose" && v != "false" && v != "0");
    let mut excluded: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let names = ["ping", "etcd"];
    let selected: Vec<&str> = names.into_iter().filter(|n| only.is_empty() || *n == only).collect();
    if selected.is_empty() {
        return Status::no_route().into_response();
    }
    let mut text = String::new();
    let mut healthy = true;
    for name in selected {
        if let Some(i) = excluded.iter().position(|e| *e == name) {
            excluded.remove(i);
            text.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        let ok = match name {
            "etcd" => api.store.get("/registry/health").await.is_ok(),
            _ => true,
        };
        healthy &= ok;
        text.push_str(&match ok {
            true => format!("[+]{name} ok\n"),
            false => format!("[-]{name} failed: reason withheld\n"),
        });
    }
    if !excluded.is_empty() {
        let quoted: Vec<String> = excluded.iter().map(|e| format!("{e:?}")).collect();
        text.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(", ")
        ));
    }
    let (code, body) = match (healthy, verbose) {
        (false, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{text}{endpoint} check failed\n"),
        ),
        (true, false) => (StatusCode::OK, "ok".to_string()),
        (true, true) => (StatusCode::OK, format!("{text}{endpoint} check passed\n")),
    };
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn dispatch(State(api): State<Arc<Api>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let labels = metric_labels(&request);
    let response = match route(&api, request).await {
        Ok(response) => response,
        Err(status) => status.into_response(),
    };
    api.metrics
        .record(labels, response.status().as_u16(), started.elapsed());
    response
}

/// What the metrics count a request by, as kube-apiserver labels it: the HTTP
/// method for writes (POST, PUT, PATCH, DELETE), APPLY for server-side apply,
/// GET/LIST/WATCH for reads, DELETECOLLECTION, CONNECT for streaming subresources.
fn metric_labels(request: &Request) -> metrics::Labels {
    let target = request::parse_path(request.uri().path()).unwrap_or_default();
    let query = Query::parse(request.uri().query());
    let collection = target.resource.is_some() && target.name.is_none();
    let method = request.method();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let subresource = target.subresource.clone().unwrap_or_default();
    let verb = match *method {
        _ if matches!(subresource.as_str(), "exec" | "attach" | "portforward" | "proxy") => "CONNECT",
        Method::GET if query.flag("watch").unwrap_or(false) => "WATCH",
        Method::GET if collection => "LIST",
        Method::PATCH if content_type.starts_with("application/apply-patch") => "APPLY",
        Method::DELETE if collection => "DELETECOLLECTION",
        _ => method.as_str(),
    };
    let scope = match (&target.resource, &target.name, &target.namespace) {
        (None, _, _) => "",
        (Some(_), Some(_), _) => "resource",
        (Some(_), None, Some(_)) => "namespace",
        (Some(_), None, None) => "cluster",
    };
    metrics::Labels {
        verb: verb.to_string(),
        dry_run: query.get("dryRun").unwrap_or_default().to_string(),
        group: target.group,
        version: target.version,
        resource: target.resource.unwrap_or_default(),
        subresource,
        scope: scope.to_string(),
    }
}

async fn metrics_text(State(api): State<Arc<Api>>) -> Response {
    let text = api.metrics.render();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn route(api: &Arc<Api>, request: Request) -> Result<Response, Status> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let method = parts.method.clone();
    let headers = parts.headers;
    let user = parts
        .extensions
        .get::<auth::User>()
        .cloned()
        .unwrap_or_else(auth::User::anonymous);

    let collection = request::parse_path(&path).is_some_and(|t| t.resource.is_some() && t.name.is_none());
    api.authorizer
        .authorize(&user, verb(&method, collection, &query)?, &path)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if method == Method::GET
        && matches!(path.trim_end_matches('/'), "/api" | "/apis")
        && discovery::wants_aggregated(accept)
    {
        let doc = discovery::aggregated(&api.registry(), path.trim_end_matches('/') == "/api");
        let mut body = serde_json::to_vec(&doc).unwrap_or_default();
        body.push(b'\n');
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, discovery::AGGREGATED)], body).into_response());
    }
    if method == Method::GET && path.trim_end_matches('/') == "/openapi/v2" {
        return Ok(openapi_v2(api, &headers));
    }
    if method == Method::GET
        && let Some(doc) = openapi_document(api, &path)
    {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            doc.bytes.clone(),
        )
            .into_response());
    }
    if method == Method::GET
        && let Some(doc) = discovery_document(api, &path)
    {
        return Ok(json_response(StatusCode::OK, &doc));
    }
    let target = request::parse_path(&path).ok_or_else(Status::no_route)?;
    if target.resource.is_none() {
        return Err(Status::no_route());
    }
    let rtype = api.resource_type(&target)?;
    if target.namespace.is_some() && !rtype.namespaced {
        return Err(Status::no_route());
    }
    if let Some(sub) = &target.subresource {
        let served = sub == "status" && rtype.has_status()
            || sub == "scale" && rtype.subresources.iter().any(|s| s == "scale")
            || matches!(sub.as_str(), "binding" | "eviction") && rtype.group.is_empty() && rtype.resource == "pods"
            || sub == "finalize" && rtype.resource == "namespaces"
            || matches!(sub.as_str(), "log" | "exec" | "attach" | "portforward")
                && rtype.group.is_empty()
                && rtype.resource == "pods"
            || sub == "proxy" && rtype.group.is_empty() && rtype.resource == "nodes";
        if !served {
            return Err(Status::no_route());
        }
    }
    let raw_query = parts.uri.query().map(str::to_string);
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let ctx = handlers::Context {
        api: api.clone(),
        rtype,
        target,
        query,
        headers,
        warnings: handlers::Warnings::default(),
    };
    let forwarded = |method: Method, body: Body| kubelet::Forwarded {
        method,
        raw_query,
        headers: ctx.headers.clone(),
        upgrade,
        body,
    };
    match (ctx.target.subresource.as_deref(), &method) {
        (Some("log"), &Method::GET) => return kubelet::log(&ctx).await,
        (Some("exec" | "attach" | "portforward"), &Method::GET | &Method::POST) => {
            return kubelet::stream(&ctx, forwarded(method, body)).await;
        }
        (Some("log" | "exec" | "attach" | "portforward"), _) => return Err(Status::method_not_allowed()),
        (Some("proxy"), _) => return kubelet::node_proxy(&ctx, &path, forwarded(method, body)).await,
        (Some("scale"), _) => return scale::handle(&ctx, &method, read_body(body).await?).await,
        (Some("binding"), &Method::POST) => return pods::bind(&ctx, read_body(body).await?).await,
        (Some("eviction"), &Method::POST) => return pods::evict(&ctx, read_body(body).await?).await,
        (Some("binding" | "eviction"), _) => return Err(Status::method_not_allowed()),
        _ => {}
    }
    let read_body = || async { read_body(body).await };
    let warnings = ctx.warnings.clone();
    let response = match (method, ctx.target.name.is_some()) {
        (Method::GET, true) => ctx.get().await,
        (Method::GET, false) if ctx.query.flag("watch")? => list::watch(ctx).await,
        (Method::GET, false) => list::list(&ctx).await,
        (Method::POST, false) => ctx.create(read_body().await?).await,
        (Method::PUT, true) => ctx.update(read_body().await?).await,
        (Method::PATCH, true) => ctx.patch(read_body().await?).await,
        (Method::DELETE, true) => ctx.delete(read_body().await?).await,
        (Method::DELETE, false) => ctx.delete_collection().await,
        _ => Err(Status::method_not_allowed()),
    };
    response.map(|r| warnings.attach(r))
}

/// The Kubernetes verb of a request.
fn verb(method: &Method, collection: bool, query: &Query) -> Result<&'static str, Status> {
    Ok(match *method {
        Method::GET if collection && query.flag("watch")? => "watch",
        Method::GET if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => return Err(Status::method_not_allowed()),
    })
}

/// `/openapi/v2` in the encoding the `Accept` header asks for (406 if neither),
/// 304 when `If-None-Match` names the current document's ETag.
fn openapi_v2(api: &Api, headers: &HeaderMap) -> Response {
    let header = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let Some(encoding) = openapi_v2::negotiate(header(header::ACCEPT).unwrap_or("")) else {
        return (StatusCode::NOT_ACCEPTABLE, [(header::VARY, "Accept")]).into_response();
    };
    let doc = api.openapi_v2.document(&api.registry());
    let (content_type, body) = match encoding {
        openapi_v2::Encoding::Json => ("application/json", doc.json.clone()),
        openapi_v2::Encoding::Protobuf => (openapi_v2::PROTOBUF, doc.protobuf.clone()),
    };
    let status = match openapi_v2::not_modified(header(header::IF_NONE_MATCH), &doc.etag) {
        true => StatusCode::NOT_MODIFIED,
        false => StatusCode::OK,
    };
    let headers = [
        (header::VARY, "Accept".to_string()),
        (header::ETAG, doc.etag.clone()),
        (header::CONTENT_TYPE, content_type.to_string()),
    ];
    match status {
        StatusCode::NOT_MODIFIED => (status, headers).into_response(),
        _ => (status, headers, body).into_response(),
    }
}

/// `/openapi/v3/api/<v>` and `/openapi/v3/apis/<g>/<v>`.
fn openapi_document(api: &Api, path: &str) -> Option<Arc<openapi::Document>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["openapi", "v3", "api", version] => ("", *version),
        ["openapi", "v3", "apis", group, version] => (*group, *version),
        _ => return None,
    };
    api.openapi.document(&api.registry(), group, version)
}

fn discovery_document(api: &Api, path: &str) -> Option<Value> {
    let registry = api.registry();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api"] => Some(discovery::api_versions(&api.server_address)),
        ["apis"] => Some(discovery::api_group_list(&registry)),
        ["api", version] => discovery::api_resource_list(&registry, "", version),
        ["apis", group] => discovery::api_group(&registry, group),
        ["apis", group, version] => discovery::api_resource_list(&registry, group, version),
        ["openapi", "v3"] => Some(api.openapi.index(&registry)),
        _ => None,
    }
}

async fn read_body(body: Body) -> Result<Bytes, Status> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Status::too_large())
}

#[cfg(test)]
mod tests;
