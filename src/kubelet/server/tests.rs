use super::*;
use crate::api::auth::User;
use serde_json::json;
use tower::ServiceExt;

/// A runtime with one running container `c1` of pod `ns/web` and one exited
/// container before it; everything else is unimplemented.
struct FakeRuntime;

fn container(id: &str, state: cri::ContainerState, created_at: i64) -> cri::Container {
    cri::Container {
        id: id.into(),
        pod_sandbox_id: "sandbox".into(),
        state: state as i32,
        created_at,
        labels: HashMap::from([
            (LABEL_POD_NAMESPACE.into(), "ns".into()),
            (LABEL_POD_NAME.into(), "web".into()),
            (LABEL_CONTAINER_NAME.into(), "c1".into()),
        ]),
        ..Default::default()
    }
}

fn unimplemented<T>(call: &'static str) -> Result<T, RuntimeError> {
    Err(RuntimeError::Call {
        call,
        code: tonic::Code::Unimplemented,
        message: "fake".into(),
    })
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<cri::VersionResponse, RuntimeError> {
        unimplemented("Version")
    }
    async fn status(&self) -> Result<cri::StatusResponse, RuntimeError> {
        unimplemented("Status")
    }
    async fn run_pod_sandbox(&self, _: cri::PodSandboxConfig, _: String) -> Result<String, RuntimeError> {
        unimplemented("RunPodSandbox")
    }
    async fn stop_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented("StopPodSandbox")
    }
    async fn remove_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented("RemovePodSandbox")
    }
    async fn pod_sandbox_status(&self, _: &str) -> Result<cri::PodSandboxStatus, RuntimeError> {
        unimplemented("PodSandboxStatus")
    }
    async fn list_pod_sandbox(&self, _: Option<cri::PodSandboxFilter>) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn create_container(
        &self,
        _: &str,
        _: cri::ContainerConfig,
        _: cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        unimplemented("CreateContainer")
    }
    async fn start_container(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented("StartContainer")
    }
    async fn stop_container(&self, _: &str, _: i64) -> Result<(), RuntimeError> {
        unimplemented("StopContainer")
    }
    async fn remove_container(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented("RemoveContainer")
    }
    async fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Result<Vec<cri::Container>, RuntimeError> {
        let labels = filter.map(|f| f.label_selector).unwrap_or_default();
        let all = vec![
            container("old", cri::ContainerState::ContainerExited, 1),
            container("new", cri::ContainerState::ContainerRunning, 2),
        ];
        Ok(all
            .into_iter()
            .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .collect())
    }
    async fn container_status(&self, _: &str) -> Result<cri::ContainerStatus, RuntimeError> {
        unimplemented("ContainerStatus")
    }
    async fn exec_sync(
        &self,
        _: &str,
        _: Vec<String>,
        _: std::time::Duration,
    ) -> Result<cri::ExecSyncResponse, RuntimeError> {
        unimplemented("ExecSync")
    }
    async fn exec(&self, request: cri::ExecRequest) -> Result<String, RuntimeError> {
        // The URL tells the test what was asked for.
        Ok(format!(
            "https://127.0.0.1:1/exec/{}?tty={}&stderr={}",
            request.container_id, request.tty, request.stderr
        ))
    }
    async fn attach(&self, _: cri::AttachRequest) -> Result<String, RuntimeError> {
        unimplemented("Attach")
    }
    async fn port_forward(&self, request: cri::PortForwardRequest) -> Result<String, RuntimeError> {
        Ok(format!("https://127.0.0.1:1/pf/{}", request.pod_sandbox_id))
    }
    async fn image_status(&self, _: &str) -> Result<Option<cri::Image>, RuntimeError> {
        unimplemented("ImageStatus")
    }
    async fn pull_image(
        &self,
        _: &str,
        _: Option<cri::AuthConfig>,
        _: Option<cri::PodSandboxConfig>,
    ) -> Result<String, RuntimeError> {
        unimplemented("PullImage")
    }
    async fn list_images(&self) -> Result<Vec<cri::Image>, RuntimeError> {
        unimplemented("ListImages")
    }
    async fn remove_image(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented("RemoveImage")
    }
    async fn container_exits(&self) -> Result<futures_util::stream::BoxStream<'static, String>, RuntimeError> {
        unimplemented("Events")
    }
}

fn app() -> Router {
    // No API calls in these tests: a client whose every request fails.
    let service = tower::service_fn(|_: axum::http::Request<kube::client::Body>| async {
        Err::<axum::http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other("no API here"))
    });
    let client = kube::Client::new(service, "default");
    let kubelet = Kubelet::new("n1".into(), PathBuf::from("/"), Arc::new(FakeRuntime), client);
    router(Arc::new(kubelet))
}

async fn call(method: Method, uri: &str, user: Option<User>) -> (StatusCode, String) {
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(PeerCertificate(user));
    let response = app().oneshot(request).await.unwrap();
    let code = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn apiserver() -> Option<User> {
    Some(User::new(pki::KUBELET_CLIENT_USER, ["system:masters"]))
}

#[tokio::test]
async fn only_the_apiserver_gets_in() {
    assert_eq!(
        call(Method::GET, "/healthz", None).await,
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    let admin = Some(User::new("system:admin", ["system:masters"]));
    assert_eq!(
        call(Method::GET, "/stats/summary", admin).await,
        (
            StatusCode::FORBIDDEN,
            "Forbidden (user=system:admin, verb=get, resource=nodes, subresource=stats)".into()
        )
    );
    assert_eq!(
        call(Method::GET, "/healthz", apiserver()).await,
        (StatusCode::OK, "ok".into())
    );
}

#[tokio::test]
async fn exec_finds_the_running_container_and_validates_streams() {
    let (code, body) = call(Method::POST, "/exec/ns/web/c1?command=ls", apiserver()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body, "you must specify at least 1 of stdin, stdout, stderr");
    // The fake's URL is not plain HTTP, which shows which container was chosen.
    let (code, body) = call(
        Method::POST,
        "/exec/ns/web/c1?command=sh&input=1&output=1&error=1&tty=1",
        apiserver(),
    )
    .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("/exec/new?tty=true&stderr=false"), "{body}");
    let (code, body) = call(Method::POST, "/exec/ns/web/nope?command=ls&output=1", apiserver()).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::NOT_FOUND, "container not found (\"nope\")")
    );
    // Port-forward falls back to the running container's sandbox.
    let (_, body) = call(Method::POST, "/portForward/ns/web?port=80", apiserver()).await;
    assert!(body.contains("/pf/sandbox"), "{body}");
    let (code, _) = call(Method::POST, "/portForward/ns/web?port=0", apiserver()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c1"}]},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn which_container_logs_are_read() {
    let running = pod(json!({"containerStatuses": [{
        "name": "c1", "ready": true, "restartCount": 1, "image": "i", "imageID": "",
        "containerID": "containerd://new",
        "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
        "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://old"}},
    }]}));
    assert_eq!(log_container_id(&running, "c1", false).unwrap(), "containerd://new");
    assert_eq!(log_container_id(&running, "c1", true).unwrap(), "containerd://old");
    assert_eq!(runtime_id("containerd://old"), "old");

    let first = pod(json!({"containerStatuses": [{
        "name": "c1", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"waiting": {"reason": "ContainerCreating"}},
    }]}));
    assert_eq!(
        log_container_id(&first, "c1", false).unwrap_err().message,
        "container \"c1\" in pod \"web\" is waiting to start: ContainerCreating"
    );
    assert_eq!(
        log_container_id(&first, "c1", true).unwrap_err().message,
        "previous terminated container \"c1\" in pod \"web\" not found"
    );
    let crashing = pod(json!({"containerStatuses": [{
        "name": "c1", "ready": false, "restartCount": 3, "image": "i", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://third"}},
    }]}));
    assert_eq!(log_container_id(&crashing, "c1", false).unwrap(), "containerd://third");
    assert_eq!(
        log_container_id(&pod(json!({})), "c1", false).unwrap_err().message,
        "container \"c1\" in pod \"web\" is not available"
    );
}
