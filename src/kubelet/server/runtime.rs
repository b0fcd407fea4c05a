//! What the kubelet API needs from the container runtime, as a trait over CRI
//! `RuntimeService` calls: find containers and sandboxes by the kubelet's labels,
//! a container's status (state and log path), the streaming URLs of `Exec`,
//! `Attach` and `PortForward`, and resource usage for `/stats/summary`.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Labels the kubelet puts on every container and sandbox (upstream `labels.go`).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Annotation carrying a container's restart count.
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container runtime call {call} failed: {status}")]
    Call { call: &'static str, status: tonic::Status },
    #[error("container runtime call {call} returned no {what}")]
    Empty { call: &'static str, what: &'static str },
}

impl RuntimeError {
    /// Whether the runtime said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// The runtime calls behind the kubelet API.
pub trait Runtime: Send + Sync + 'static {
    /// Containers (any state) whose labels include all of `labels`.
    fn containers(&self, labels: HashMap<String, String>) -> BoxFuture<'_, Result<Vec<cri::Container>, RuntimeError>>;
    fn container_status(&self, id: String) -> BoxFuture<'_, Result<cri::ContainerStatus, RuntimeError>>;
    /// Sandboxes (any state) whose labels include all of `labels`.
    fn sandboxes(&self, labels: HashMap<String, String>) -> BoxFuture<'_, Result<Vec<cri::PodSandbox>, RuntimeError>>;
    /// The streaming URL of an exec session.
    fn exec(&self, request: cri::ExecRequest) -> BoxFuture<'_, Result<String, RuntimeError>>;
    fn attach(&self, request: cri::AttachRequest) -> BoxFuture<'_, Result<String, RuntimeError>>;
    fn port_forward(&self, request: cri::PortForwardRequest) -> BoxFuture<'_, Result<String, RuntimeError>>;
    fn container_stats(&self) -> BoxFuture<'_, Result<Vec<cri::ContainerStats>, RuntimeError>>;
    fn sandbox_stats(&self) -> BoxFuture<'_, Result<Vec<cri::PodSandboxStats>, RuntimeError>>;
}

fn call(call: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
    move |status| RuntimeError::Call { call, status }
}

/// The real runtime: a CRI v1 client (containerd's CRI plugin).
#[derive(Clone)]
pub struct Cri {
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    pub fn new(channel: Channel) -> Cri {
        Cri {
            client: RuntimeServiceClient::new(channel),
        }
    }
}

impl Runtime for Cri {
    fn containers(&self, labels: HashMap<String, String>) -> BoxFuture<'_, Result<Vec<cri::Container>, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let filter = cri::ContainerFilter {
                label_selector: labels,
                ..Default::default()
            };
            let request = cri::ListContainersRequest { filter: Some(filter) };
            let response = client.list_containers(request).await.map_err(call("ListContainers"))?;
            Ok(response.into_inner().containers)
        })
    }

    fn container_status(&self, id: String) -> BoxFuture<'_, Result<cri::ContainerStatus, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let request = cri::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            };
            let response = client
                .container_status(request)
                .await
                .map_err(call("ContainerStatus"))?;
            response.into_inner().status.ok_or(RuntimeError::Empty {
                call: "ContainerStatus",
                what: "status",
            })
        })
    }

    fn sandboxes(&self, labels: HashMap<String, String>) -> BoxFuture<'_, Result<Vec<cri::PodSandbox>, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let filter = cri::PodSandboxFilter {
                label_selector: labels,
                ..Default::default()
            };
            let request = cri::ListPodSandboxRequest { filter: Some(filter) };
            let response = client.list_pod_sandbox(request).await.map_err(call("ListPodSandbox"))?;
            Ok(response.into_inner().items)
        })
    }

    fn exec(&self, request: cri::ExecRequest) -> BoxFuture<'_, Result<String, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move { Ok(client.exec(request).await.map_err(call("Exec"))?.into_inner().url) })
    }

    fn attach(&self, request: cri::AttachRequest) -> BoxFuture<'_, Result<String, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move { Ok(client.attach(request).await.map_err(call("Attach"))?.into_inner().url) })
    }

    fn port_forward(&self, request: cri::PortForwardRequest) -> BoxFuture<'_, Result<String, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            Ok(client
                .port_forward(request)
                .await
                .map_err(call("PortForward"))?
                .into_inner()
                .url)
        })
    }

    fn container_stats(&self) -> BoxFuture<'_, Result<Vec<cri::ContainerStats>, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let request = cri::ListContainerStatsRequest { filter: None };
            let response = client
                .list_container_stats(request)
                .await
                .map_err(call("ListContainerStats"))?;
            Ok(response.into_inner().stats)
        })
    }

    fn sandbox_stats(&self) -> BoxFuture<'_, Result<Vec<cri::PodSandboxStats>, RuntimeError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let request = cri::ListPodSandboxStatsRequest { filter: None };
            let response = client
                .list_pod_sandbox_stats(request)
                .await
                .map_err(call("ListPodSandboxStats"))?;
            Ok(response.into_inner().stats)
        })
    }
}

/// A container's restart count: the kubelet's annotation, else the CRI attempt.
pub fn restart_count(annotations: &HashMap<String, String>, metadata: Option<&cri::ContainerMetadata>) -> u32 {
    annotations
        .get(RESTART_COUNT_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| metadata.map_or(0, |m| m.attempt))
}

/// A gRPC channel to a CRI runtime's unix socket.
pub async fn connect(socket: &std::path::Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
