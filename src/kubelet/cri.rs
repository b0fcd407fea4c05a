//! The kubelet's CRI v1 client: `runtime.v1` RuntimeService and ImageService (from the
//! `k8s-cri` crate) over the container runtime's unix socket, plus containerd's own
//! events service on the same socket for container exits (what the upstream kubelet
//! gets from the Evented PLEG on newer runtimes; containerd 1.6 has no CRI
//! `GetContainerEvents`).
//!
//! Every call the kubelet makes goes through the [`Runtime`] trait, so the pod
//! workers can be unit-tested against a fake; [`Cri`] is the real implementation.
//! The connection is lazy and reconnects by itself: a runtime that is not up yet (or
//! restarted by the supervisor) makes calls fail with [`Error::Call`] until it is back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// How long an ordinary CRI call may take before the kubelet gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Image pulls may take long on slow links; containerd keeps pulling anyway.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Responses (lists of every container on the node) can be large.
const MAX_MESSAGE: usize = 32 << 20;

/// What went wrong talking to the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container runtime endpoint {0:?}: expected unix:///path or a socket path")]
    Endpoint(String),
    #[error("{call}: {message}")]
    Call {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{call}: no answer from the container runtime within {timeout:?}")]
    Timeout { call: &'static str, timeout: Duration },
}

impl Error {
    /// The object (container, sandbox, image) does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Call {
                code: tonic::Code::NotFound,
                ..
            }
        ) || matches!(self, Error::Call { message, .. } if message.contains("not found"))
    }

    /// The runtime is not reachable (not started yet, restarting).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Call {
                code: tonic::Code::Unavailable,
                ..
            } | Error::Timeout { .. }
        )
    }

    /// The runtime's own message, without the call name.
    pub fn message(&self) -> String {
        match self {
            Error::Call { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The CRI calls the kubelet makes. [`Cri`] is the real runtime.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn version(&self) -> Result<api::VersionResponse>;
    async fn status(&self) -> Result<api::StatusResponse>;

    /// Starts a sandbox; returns its ID.
    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: String) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus>;
    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>>;

    /// Creates a container in a sandbox; returns its ID.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops with the image's stop signal, then SIGKILL after `timeout` seconds.
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>>;
    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus>;
    /// Runs a command in a container and waits for it (at most `timeout`).
    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<api::ExecSyncResponse>;
    /// The streaming URL of an interactive exec / attach / port-forward.
    async fn exec(&self, request: api::ExecRequest) -> Result<String>;
    async fn attach(&self, request: api::AttachRequest) -> Result<String>;
    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String>;

    /// The image if the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<api::Image>>;
    /// Pulls an image; returns its reference (ID).
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String>;
    async fn list_images(&self) -> Result<Vec<api::Image>>;
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Where the runtime keeps images (`ImageFsInfo`).
    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        Err(unimplemented("ImageFsInfo"))
    }

    /// Makes the runtime reopen a container's log file (after the kubelet rotated it).
    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        Err(Error::Call {
            call: "ReopenContainerLog",
            code: tonic::Code::Unimplemented,
            message: format!("not supported for {id}"),
        })
    }

    /// A stream of IDs of containers whose main process exited (or was OOM-killed),
    /// as the runtime reports them. An error or the stream's end means "no events":
    /// the caller falls back to relisting.
    async fn container_exits(&self) -> Result<BoxStream<'static, String>>;

    /// Resource usage of every container (`ListContainerStats`), for the kubelet
    /// API's `/stats/summary`.
    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>> {
        Err(unimplemented("ListContainerStats"))
    }
    /// Resource usage of every sandbox (`ListPodSandboxStats`).
    async fn list_pod_sandbox_stats(&self) -> Result<Vec<api::PodSandboxStats>> {
        Err(unimplemented("ListPodSandboxStats"))
    }
}

fn unimplemented(call: &'static str) -> Error {
    Error::Call {
        call,
        code: tonic::Code::Unimplemented,
        message: "not implemented by this runtime".into(),
    }
}

/// The real runtime: CRI v1 over a unix socket.
#[derive(Clone)]
pub struct Cri {
    channel: Channel,
    socket: PathBuf,
}

impl std::fmt::Debug for Cri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cri").field("socket", &self.socket).finish()
    }
}

impl Cri {
    /// A client for `endpoint` (`unix:///run/containerd/containerd.sock` or a plain
    /// path). Connects lazily: this never fails because the runtime is down.
    pub fn new(endpoint: &str) -> Result<Cri> {
        let socket = socket_path(endpoint)?;
        let path = socket.clone();
        let channel = Endpoint::from_static("http://[::]")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }));
        Ok(Cri { channel, socket })
    }

    /// The socket this client dials.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// `unix:///x` or `/x` → `/x`.
fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(Error::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Runs one call with a deadline, mapping gRPC errors.
async fn call<T>(
    name: &'static str,
    timeout: Duration,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Call {
            call: name,
            code: status.code(),
            message: status.message().to_string(),
        }),
        Err(_) => Err(Error::Timeout { call: name, timeout }),
    }
}

#[async_trait::async_trait]
impl Runtime for Cri {
    async fn version(&self) -> Result<api::VersionResponse> {
        let request = api::VersionRequest { version: "v1".into() };
        call("Version", CALL_TIMEOUT, self.runtime().version(request)).await
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        let request = api::StatusRequest { verbose: false };
        call("Status", CALL_TIMEOUT, self.runtime().status(request)).await
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: String) -> Result<String> {
        let request = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler,
        };
        let response = call("RunPodSandbox", CALL_TIMEOUT, self.runtime().run_pod_sandbox(request)).await?;
        Ok(response.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let request = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        call("StopPodSandbox", CALL_TIMEOUT, self.runtime().stop_pod_sandbox(request)).await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let request = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        call(
            "RemovePodSandbox",
            CALL_TIMEOUT,
            self.runtime().remove_pod_sandbox(request),
        )
        .await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let request = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let response = call(
            "PodSandboxStatus",
            CALL_TIMEOUT,
            self.runtime().pod_sandbox_status(request),
        )
        .await?;
        response.status.ok_or(Error::Call {
            call: "PodSandboxStatus",
            code: tonic::Code::NotFound,
            message: format!("no status for sandbox {id}"),
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let request = api::ListPodSandboxRequest { filter };
        Ok(
            call("ListPodSandbox", CALL_TIMEOUT, self.runtime().list_pod_sandbox(request))
                .await?
                .items,
        )
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let request = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response = call(
            "CreateContainer",
            CALL_TIMEOUT,
            self.runtime().create_container(request),
        )
        .await?;
        Ok(response.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let request = api::StartContainerRequest {
            container_id: id.into(),
        };
        call("StartContainer", CALL_TIMEOUT, self.runtime().start_container(request)).await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let request = api::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        // containerd waits `timeout`, then SIGKILLs and waits up to a minute more.
        let deadline = CALL_TIMEOUT + Duration::from_secs(timeout.max(0) as u64);
        call("StopContainer", deadline, self.runtime().stop_container(request)).await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let request = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        call(
            "RemoveContainer",
            CALL_TIMEOUT,
            self.runtime().remove_container(request),
        )
        .await?;
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let request = api::ListContainersRequest { filter };
        Ok(
            call("ListContainers", CALL_TIMEOUT, self.runtime().list_containers(request))
                .await?
                .containers,
        )
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let request = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let response = call(
            "ContainerStatus",
            CALL_TIMEOUT,
            self.runtime().container_status(request),
        )
        .await?;
        response.status.ok_or(Error::Call {
            call: "ContainerStatus",
            code: tonic::Code::NotFound,
            message: format!("no status for container {id}"),
        })
    }

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<api::ExecSyncResponse> {
        let request = api::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        };
        // The runtime enforces `timeout`; allow it a little longer to answer.
        call(
            "ExecSync",
            timeout + Duration::from_secs(5),
            self.runtime().exec_sync(request),
        )
        .await
    }

    async fn exec(&self, request: api::ExecRequest) -> Result<String> {
        Ok(call("Exec", CALL_TIMEOUT, self.runtime().exec(request)).await?.url)
    }

    async fn attach(&self, request: api::AttachRequest) -> Result<String> {
        Ok(call("Attach", CALL_TIMEOUT, self.runtime().attach(request)).await?.url)
    }

    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String> {
        Ok(call("PortForward", CALL_TIMEOUT, self.runtime().port_forward(request))
            .await?
            .url)
    }

    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>> {
        let request = api::ListContainerStatsRequest { filter: None };
        let response = call(
            "ListContainerStats",
            CALL_TIMEOUT,
            self.runtime().list_container_stats(request),
        )
        .await?;
        Ok(response.stats)
    }

    async fn list_pod_sandbox_stats(&self) -> Result<Vec<api::PodSandboxStats>> {
        let request = api::ListPodSandboxStatsRequest { filter: None };
        let response = call(
            "ListPodSandboxStats",
            CALL_TIMEOUT,
            self.runtime().list_pod_sandbox_stats(request),
        )
        .await?;
        Ok(response.stats)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let request = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(call("ImageStatus", CALL_TIMEOUT, self.images().image_status(request))
            .await?
            .image)
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let request = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config,
        };
        Ok(call("PullImage", PULL_TIMEOUT, self.images().pull_image(request))
            .await?
            .image_ref)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        let request = api::ListImagesRequest { filter: None };
        Ok(call("ListImages", CALL_TIMEOUT, self.images().list_images(request))
            .await?
            .images)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let request = api::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        call("RemoveImage", CALL_TIMEOUT, self.images().remove_image(request)).await?;
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let request = api::ImageFsInfoRequest {};
        Ok(call("ImageFsInfo", CALL_TIMEOUT, self.images().image_fs_info(request))
            .await?
            .image_filesystems)
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let request = api::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        call(
            "ReopenContainerLog",
            CALL_TIMEOUT,
            self.runtime().reopen_container_log(request),
        )
        .await?;
        Ok(())
    }

    async fn container_exits(&self) -> Result<BoxStream<'static, String>> {
        use containerd_client::events::{TaskExit, TaskOom};
        use containerd_client::services::v1::SubscribeRequest;
        use containerd_client::services::v1::events_client::EventsClient;
        use prost::Message;

        let request = SubscribeRequest {
            filters: vec![
                r#"namespace=="k8s.io",topic=="/tasks/exit""#.to_string(),
                r#"namespace=="k8s.io",topic=="/tasks/oom""#.to_string(),
            ],
        };
        let mut client = EventsClient::new(self.channel.clone());
        let stream = call("Subscribe", CALL_TIMEOUT, client.subscribe(request)).await?;
        let ids = stream.filter_map(|envelope| async move {
            let event = envelope.ok()?.event?;
            if event.type_url.ends_with("TaskExit") {
                let exit = TaskExit::decode(event.value.as_slice()).ok()?;
                // Execs (probes, kubectl exec) exit too; only the main process counts.
                (exit.id == exit.container_id).then_some(exit.container_id)
            } else if event.type_url.ends_with("TaskOOM") {
                Some(TaskOom::decode(event.value.as_slice()).ok()?.container_id)
            } else {
                None
            }
        });
        Ok(Box::pin(ids))
    }
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.to_string(),
        annotations: HashMap::new(),
        user_specified_image: String::new(),
        runtime_handler: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("/x.sock").unwrap(), PathBuf::from("/x.sock"));
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
        assert!(socket_path("relative.sock").is_err());
    }

    #[test]
    fn not_found() {
        let err = Error::Call {
            call: "ContainerStatus",
            code: tonic::Code::NotFound,
            message: "an error occurred when try to find container \"x\": not found".into(),
        };
        assert!(err.is_not_found());
        assert!(!err.is_unavailable());
    }
}
