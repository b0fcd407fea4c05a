//! An in-memory container runtime for unit tests: sandboxes and containers with
//! their states and labels, and a log of the mutating calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::BoxStream;

use super::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::kubelet::cri::{Error, Result, Runtime, api};

#[derive(Debug, Default)]
pub struct State {
    pub sandboxes: Vec<api::PodSandbox>,
    pub containers: Vec<api::Container>,
    pub calls: Vec<String>,
    pub images: Vec<api::Image>,
    /// Exit code, started and finished times by container ID.
    pub details: HashMap<String, (i32, i64, i64)>,
    next: u64,
}

#[derive(Debug, Default)]
pub struct FakeRuntime(pub Mutex<State>);

fn unsupported(call: &'static str) -> Error {
    Error::Call {
        call,
        code: tonic::Code::Unimplemented,
        message: "not in the fake".into(),
    }
}

fn not_found(call: &'static str, id: &str) -> Error {
    Error::Call {
        call,
        code: tonic::Code::NotFound,
        message: format!("{id} not found"),
    }
}

fn matches(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_sandbox(&self, uid: &str, ready: bool, created_at: i64) -> String {
        let mut s = self.state();
        s.next += 1;
        let id = format!("sandbox-{}", s.next);
        s.sandboxes.push(api::PodSandbox {
            id: id.clone(),
            state: if ready {
                api::PodSandboxState::SandboxReady as i32
            } else {
                api::PodSandboxState::SandboxNotready as i32
            },
            created_at,
            labels: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        });
        id
    }

    pub fn add_container(
        &self,
        uid: &str,
        sandbox: &str,
        name: &str,
        state: api::ContainerState,
        created_at: i64,
    ) -> String {
        let mut s = self.state();
        s.next += 1;
        let id = format!("container-{}", s.next);
        s.containers.push(api::Container {
            id: id.clone(),
            pod_sandbox_id: sandbox.to_string(),
            state: state as i32,
            created_at,
            labels: [
                (LABEL_POD_UID.to_string(), uid.to_string()),
                (LABEL_CONTAINER_NAME.to_string(), name.to_string()),
            ]
            .into(),
            metadata: Some(api::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            ..Default::default()
        });
        id
    }

    pub fn add_image(&self, image: api::Image) {
        self.state().images.push(image);
    }

    /// The image a container was created from (its `image_ref`).
    pub fn set_image(&self, id: &str, image: &str) {
        let mut s = self.state();
        if let Some(c) = s.containers.iter_mut().find(|c| c.id == id) {
            c.image_ref = image.to_string();
        }
    }

    /// Removes a container without logging a call.
    pub fn remove_container_now(&self, id: &str) {
        self.state().containers.retain(|c| c.id != id);
    }

    /// Sets what ContainerStatus reports beyond the state: exit code, start and
    /// finish times (ns), and the container's annotations.
    pub fn set_status(
        &self,
        id: &str,
        exit_code: i32,
        started_at: i64,
        finished_at: i64,
        annotations: HashMap<String, String>,
    ) {
        let mut s = self.state();
        s.details.insert(id.to_string(), (exit_code, started_at, finished_at));
        if let Some(c) = s.containers.iter_mut().find(|c| c.id == id) {
            c.annotations = annotations;
        }
    }

    pub fn set_state(&self, id: &str, state: api::ContainerState) {
        if let Some(c) = self.state().containers.iter_mut().find(|c| c.id == id) {
            c.state = state as i32;
        }
    }

    pub fn container_ids(&self) -> Vec<String> {
        self.state().containers.iter().map(|c| c.id.clone()).collect()
    }

    pub fn sandbox_ids(&self) -> Vec<String> {
        self.state().sandboxes.iter().map(|c| c.id.clone()).collect()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        Ok(api::VersionResponse {
            runtime_name: "fake".into(),
            ..Default::default()
        })
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        Ok(api::StatusResponse::default())
    }

    async fn run_pod_sandbox(&self, _config: api::PodSandboxConfig, _handler: String) -> Result<String> {
        self.state().calls.push("RunPodSandbox".into());
        Err(unsupported("RunPodSandbox"))
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state();
        s.calls.push(format!("StopPodSandbox {id}"));
        let sandbox = s
            .sandboxes
            .iter_mut()
            .find(|x| x.id == id)
            .ok_or(not_found("StopPodSandbox", id))?;
        sandbox.state = api::PodSandboxState::SandboxNotready as i32;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state();
        s.calls.push(format!("RemovePodSandbox {id}"));
        s.sandboxes.retain(|x| x.id != id);
        s.containers.retain(|c| c.pod_sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let s = self.state();
        let sandbox = s
            .sandboxes
            .iter()
            .find(|x| x.id == id)
            .ok_or(not_found("PodSandboxStatus", id))?;
        Ok(api::PodSandboxStatus {
            id: sandbox.id.clone(),
            state: sandbox.state,
            created_at: sandbox.created_at,
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let selector = filter.map(|f| f.label_selector).unwrap_or_default();
        Ok(self
            .state()
            .sandboxes
            .iter()
            .filter(|x| matches(&x.labels, &selector))
            .cloned()
            .collect())
    }

    async fn create_container(
        &self,
        _: &str,
        config: api::ContainerConfig,
        _: api::PodSandboxConfig,
    ) -> Result<String> {
        let name = config.metadata.map(|m| m.name).unwrap_or_default();
        self.state().calls.push(format!("CreateContainer {name}"));
        Err(unsupported("CreateContainer"))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.state().calls.push(format!("StartContainer {id}"));
        Err(unsupported("StartContainer"))
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let mut s = self.state();
        s.calls.push(format!("StopContainer {id} {timeout}"));
        let c = s
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(not_found("StopContainer", id))?;
        c.state = api::ContainerState::ContainerExited as i32;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state();
        s.calls.push(format!("RemoveContainer {id}"));
        s.containers.retain(|c| c.id != id);
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let state = filter.as_ref().and_then(|f| f.state.as_ref()).map(|s| s.state);
        let selector = filter.map(|f| f.label_selector).unwrap_or_default();
        Ok(self
            .state()
            .containers
            .iter()
            .filter(|c| matches(&c.labels, &selector) && state.is_none_or(|s| s == c.state))
            .cloned()
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let s = self.state();
        let c = s
            .containers
            .iter()
            .find(|c| c.id == id)
            .ok_or(not_found("ContainerStatus", id))?;
        let (exit_code, started_at, finished_at) = s.details.get(id).copied().unwrap_or_default();
        Ok(api::ContainerStatus {
            exit_code,
            started_at,
            finished_at,
            id: c.id.clone(),
            metadata: c.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            ..Default::default()
        })
    }

    async fn exec_sync(&self, _: &str, _: Vec<String>, _: Duration) -> Result<api::ExecSyncResponse> {
        Err(unsupported("ExecSync"))
    }

    async fn exec(&self, _: api::ExecRequest) -> Result<String> {
        Err(unsupported("Exec"))
    }

    async fn attach(&self, _: api::AttachRequest) -> Result<String> {
        Err(unsupported("Attach"))
    }

    async fn port_forward(&self, _: api::PortForwardRequest) -> Result<String> {
        Err(unsupported("PortForward"))
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        Ok(Some(api::Image {
            id: format!("sha256:{image}"),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        _: &str,
        _: Option<api::AuthConfig>,
        _: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        Err(unsupported("PullImage"))
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        Ok(self.state().images.clone())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let mut s = self.state();
        s.calls.push(format!("RemoveImage {image}"));
        s.images.retain(|i| i.id != image);
        Ok(())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.state().calls.push(format!("ReopenContainerLog {id}"));
        Ok(())
    }

    async fn container_exits(&self) -> Result<BoxStream<'static, String>> {
        Err(unsupported("Subscribe"))
    }
}
