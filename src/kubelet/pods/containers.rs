//! Starting and stopping one container the way `kuberuntime_container.go` does:
//! `EnsureImageExists` (pull policy, pull secrets, image back-off), the CRI
//! `ContainerConfig` (command and args with `$(VAR)` expansion, env, mounts with
//! the pod's `/etc/hosts` and termination-message file, linux resources, the
//! effective security context incl. the `runAsNonRoot` check, the labels and
//! annotations the kubelet finds its containers by), Create → Start → postStart;
//! and `killContainer`: preStop within the grace period, then StopContainer with
//! what is left of it (at least 2 s).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use sha2::Digest;

use super::Node;
use super::env::{self, PodFacts, Sources};
use super::events::Object;
use super::handlers::{self, Target};
use super::resources;
use super::sandbox::{LABEL_CONTAINER_NAME, pod_labels};
use super::snapshot::{
    ANNOTATION_GRACE_PERIOD, ANNOTATION_HASH, ANNOTATION_PRE_STOP, ANNOTATION_RESTART_COUNT,
    ANNOTATION_TERMINATION_MESSAGE_PATH, ANNOTATION_TERMINATION_MESSAGE_POLICY, ContainerInfo,
};
use super::volumes::VolumeMap;
use crate::kubelet::cri::api;

/// Why a container could not be started: the waiting reason and message its status
/// shows (`CreateContainerConfigError`, `ErrImagePull`, `RunContainerError`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    fn new(reason: &'static str, message: impl Into<String>) -> StartError {
        StartError {
            reason,
            message: message.into(),
        }
    }
}

/// The hash of a container's spec; a running container whose hash differs from its
/// spec's is restarted ("container definition changed").
pub fn hash(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The pull policy, defaulted like the API: Always for `:latest` or untagged
/// images, else IfNotPresent.
pub fn pull_policy(container: &Container) -> &str {
    if let Some(p) = container.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p;
    }
    let image = container.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The registry host of an image reference (`docker.io` when none is named).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

fn normalize_registry(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match key {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Credentials for `image` from `kubernetes.io/dockerconfigjson` (or legacy
/// `dockercfg`) secrets.
pub fn pull_credentials(image: &str, secrets: &[k8s_openapi::api::core::v1::Secret]) -> Vec<api::AuthConfig> {
    let registry = registry_of(image);
    let mut out = Vec::new();
    for secret in secrets {
        let data = secret.data.clone().unwrap_or_default();
        let (auths, legacy) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
            (Some(json), _) => (serde_json::from_slice::<serde_json::Value>(&json.0).ok(), false),
            (None, Some(cfg)) => (serde_json::from_slice::<serde_json::Value>(&cfg.0).ok(), true),
            _ => continue,
        };
        let Some(auths) = auths else { continue };
        let auths = if legacy { &auths } else { &auths["auths"] };
        let Some(map) = auths.as_object() else { continue };
        for (key, entry) in map {
            if normalize_registry(key) != registry {
                continue;
            }
            let mut auth = api::AuthConfig {
                username: entry["username"].as_str().unwrap_or_default().to_string(),
                password: entry["password"].as_str().unwrap_or_default().to_string(),
                auth: entry["auth"].as_str().unwrap_or_default().to_string(),
                // Left empty as the kubelet does: containerd then offers the
                // credentials to the registry's mirrors too (it withholds them from
                // any host other than a named server address).
                server_address: String::new(),
                identity_token: entry["identitytoken"].as_str().unwrap_or_default().to_string(),
                registry_token: entry["registrytoken"].as_str().unwrap_or_default().to_string(),
            };
            if auth.username.is_empty()
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&auth.auth)
                && let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':')
            {
                auth.username = user.to_string();
                auth.password = pass.to_string();
            }
            out.push(auth);
        }
    }
    out
}

/// The image pull back-off entry of `image` for `pod`.
pub fn image_backoff_key(pod: &Pod, image: &str) -> String {
    format!("{}_{image}", pod.metadata.uid.as_deref().unwrap_or_default())
}

/// The back-off of pulls that found no registry while the image was already here.
fn offline_backoff_key(key: &str) -> String {
    format!("offline_{key}")
}

/// Whether a pull failed before any registry answered (DNS, connection refused,
/// timeout: containerd says "failed to do request"), as opposed to a registry that
/// answered with an error such as 401 Unauthorized or 404 Not Found.
fn registry_unreachable(error: &str) -> bool {
    error.contains("failed to do request")
}

/// `EnsureImageExists`: the image's ID (what the container is created from), or why
/// there is none.
pub async fn ensure_image(
    node: &Node,
    pod: &Pod,
    container: &Container,
    sandbox_config: &api::PodSandboxConfig,
) -> Result<api::Image, StartError> {
    let object = Object::of(pod);
    let image = container.image.clone().unwrap_or_default();
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        return Err(StartError::new(
            "InvalidImageName",
            format!(
                "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"
            ),
        ));
    }
    let present = node.runtime.image_status(&image).await.map_err(|e| {
        StartError::new(
            "ImageInspectError",
            format!("Failed to inspect image {image:?}: {}", e.message()),
        )
    })?;
    let policy = pull_policy(container);
    match (policy, &present) {
        ("Never", Some(img)) | ("IfNotPresent", Some(img)) => {
            node.recorder.normal(
                &object,
                Some(&container.name),
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
            return Ok(img.clone());
        }
        ("Never", None) => {
            node.recorder.warning(
                &object,
                Some(&container.name),
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            );
            return Err(StartError::new(
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            ));
        }
        _ => {}
    }
    // Per pod and image, as upstream (`<pod UID>_<image>`): a pod without the
    // right pull secret never holds back one that has it.
    let key = image_backoff_key(pod, &image);
    let offline_key = offline_backoff_key(&key);
    let now = SystemTime::now();
    let (until, offline_until) = match node.image_backoff.lock() {
        Ok(b) => (b.until(&key), b.until(&offline_key)),
        Err(_) => (None, None),
    };
    // A registry that could not be reached is not asked again for the same image
    // until the back-off ends; an image already here is used meanwhile.
    if let (Some(until), Some(img)) = (offline_until, &present)
        && now < until
    {
        return Ok(img.clone());
    }
    if let Some(until) = until
        && now < until
    {
        node.recorder.normal(
            &object,
            Some(&container.name),
            "BackOff",
            format!("Back-off pulling image {image:?}"),
        );
        return Err(StartError::new(
            "ImagePullBackOff",
            format!("Back-off pulling image {image:?}"),
        ));
    }
    // Pull secrets: missing ones are only a warning, as upstream.
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut secrets = Vec::new();
    for r in pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()) {
        match node.objects.secret(namespace, &r.name).await {
            Ok(Some(s)) => secrets.push(s),
            _ => node.recorder.warning(
                &object,
                None,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    r.name
                ),
            ),
        }
    }
    let mut credentials: Vec<Option<api::AuthConfig>> =
        pull_credentials(&image, &secrets).into_iter().map(Some).collect();
    credentials.push(None);
    node.recorder.normal(
        &object,
        Some(&container.name),
        "Pulling",
        format!("Pulling image {image:?}"),
    );
    let started = Instant::now();
    let mut error = String::new();
    {
        let _serial = node.pull_lock.lock().await;
        for auth in credentials {
            match node
                .runtime
                .pull_image(&image, auth, Some(sandbox_config.clone()))
                .await
            {
                Ok(_) => {
                    error.clear();
                    break;
                }
                Err(e) => error = e.message(),
            }
        }
    }
    if error.is_empty() {
        if let Ok(mut b) = node.image_backoff.lock() {
            b.reset(&key);
        }
        node.recorder.normal(
            &object,
            Some(&container.name),
            "Pulled",
            format!(
                "Successfully pulled image {image:?} in {:.3}s",
                started.elapsed().as_secs_f64()
            ),
        );
        return match node.runtime.image_status(&image).await {
            Ok(Some(img)) => Ok(img),
            Ok(None) => Err(StartError::new(
                "ErrImagePull",
                format!("image {image:?} vanished after the pull"),
            )),
            Err(e) => Err(StartError::new("ImageInspectError", e.message())),
        };
    }
    // No registry reachable but the image is here (an airgapped node with
    // imported images and `imagePullPolicy: Always`): run what we have. A registry
    // that answered and refused (no credentials, no such image) gets no such
    // fallback, so a pod without the pull secret never runs a private image that
    // another pod pulled.
    let fallback = present.filter(|_| registry_unreachable(&error));
    if let Ok(mut b) = node.image_backoff.lock() {
        // Entries are per pod: forget expired ones (deleted pods) as new ones come.
        b.gc(SystemTime::now());
        b.next(if fallback.is_some() { &offline_key } else { &key }, SystemTime::now());
    }
    if let Some(img) = fallback {
        node.recorder.warning(
            &object,
            Some(&container.name),
            "Pulled",
            format!("Failed to pull image {image:?} ({error}); using the image already present on the node"),
        );
        return Ok(img);
    }
    node.recorder.warning(
        &object,
        Some(&container.name),
        "Failed",
        format!("Failed to pull image {image:?}: {error}"),
    );
    Err(StartError::new(
        "ErrImagePull",
        format!("Failed to pull image {image:?}: {error}"),
    ))
}

/// Everything one container start needs.
pub struct StartContext<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub sandbox_id: &'a str,
    pub sandbox_config: &'a api::PodSandboxConfig,
    pub volumes: &'a VolumeMap,
    pub facts: &'a PodFacts,
    pub sources: &'a Sources,
    pub restart_count: i32,
    pub pod_dir: &'a Path,
    pub pod_ip: Option<std::net::IpAddr>,
    /// The node's memory, for the Burstable `oom_score_adj`.
    pub memory_capacity: i64,
}

/// The effective security context: the container's, falling back to the pod's.
pub fn effective_security(pod: &Pod, container: &Container) -> SecurityContext {
    let mut sc = container.security_context.clone().unwrap_or_default();
    if let Some(p) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) {
        sc.run_as_user = sc.run_as_user.or(p.run_as_user);
        sc.run_as_group = sc.run_as_group.or(p.run_as_group);
        sc.run_as_non_root = sc.run_as_non_root.or(p.run_as_non_root);
        if sc.se_linux_options.is_none() {
            sc.se_linux_options = p.se_linux_options.clone();
        }
        if sc.seccomp_profile.is_none() {
            sc.seccomp_profile = p.seccomp_profile.clone();
        }
    }
    sc
}

/// `verifyRunAsNonRoot`.
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image: &api::Image) -> Result<(), StartError> {
    let sc = effective_security(pod, container);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format!(
        "(pod: {:?}, container: {})",
        format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ),
        container.name
    );
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(StartError::new(
                "CreateContainerConfigError",
                format!("container's runAsUser breaks non-root policy {who}"),
            ));
        }
        return Ok(());
    }
    match (&image.uid, image.username.as_str()) {
        (Some(uid), _) if uid.value == 0 => Err(StartError::new(
            "CreateContainerConfigError",
            format!("container has runAsNonRoot and image will run as root {who}"),
        )),
        (Some(_), _) => Ok(()),
        (None, "") => Err(StartError::new(
            "CreateContainerConfigError",
            format!("container has runAsNonRoot and image will run as root {who}"),
        )),
        (None, user) => Err(StartError::new(
            "CreateContainerConfigError",
            format!(
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {who}"
            ),
        )),
    }
}

fn security_context(pod: &Pod, container: &Container) -> api::LinuxContainerSecurityContext {
    let sc = effective_security(pod, container);
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut groups: Vec<i64> = pod_sc.and_then(|p| p.fs_group).into_iter().collect();
    groups.extend(pod_sc.and_then(|p| p.supplemental_groups.clone()).unwrap_or_default());
    let seccomp = sc.seccomp_profile.as_ref().map(|p| match p.type_.as_str() {
        "RuntimeDefault" => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    });
    let spec = pod.spec.as_ref();
    let pid = if spec.and_then(|s| s.host_pid).unwrap_or(false) {
        api::NamespaceMode::Node
    } else if spec.and_then(|s| s.share_process_namespace).unwrap_or(false) {
        api::NamespaceMode::Pod
    } else {
        api::NamespaceMode::Container
    };
    let node_or_pod = |b: Option<bool>| {
        if b.unwrap_or(false) {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        }
    };
    api::LinuxContainerSecurityContext {
        capabilities: sc.capabilities.as_ref().map(|c| api::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: sc.privileged.unwrap_or(false),
        namespace_options: Some(api::NamespaceOption {
            network: node_or_pod(spec.and_then(|s| s.host_network)),
            pid: pid as i32,
            ipc: node_or_pod(spec.and_then(|s| s.host_ipc)),
            ..Default::default()
        }),
        selinux_options: sc.se_linux_options.as_ref().map(|o| api::SeLinuxOption {
            user: o.user.clone().unwrap_or_default(),
            role: o.role.clone().unwrap_or_default(),
            r#type: o.type_.clone().unwrap_or_default(),
            level: o.level.clone().unwrap_or_default(),
        }),
        run_as_user: sc.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: groups,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        seccomp,
        ..Default::default()
    }
}

fn propagation(mode: Option<&str>) -> i32 {
    match mode {
        Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer as i32,
        Some("Bidirectional") => api::MountPropagation::PropagationBidirectional as i32,
        _ => api::MountPropagation::PropagationPrivate as i32,
    }
}

fn check_sub_path(sub: &str) -> Result<(), StartError> {
    let ok = Path::new(sub)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(StartError::new(
            "CreateContainerConfigError",
            format!("subPath {sub:?} must be a relative path without '..'"),
        ))
    }
}

/// The CRI config of the container (`generateContainerConfig`).
pub fn container_config(
    ctx: &StartContext<'_>,
    image: &api::Image,
    env: &[(String, String)],
) -> Result<api::ContainerConfig, StartError> {
    let pod = ctx.pod;
    let c = ctx.container;
    let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand = |s: &String| env::expand(s, &|name| lookup.get(name).map(|v| v.to_string()));
    let command: Vec<String> = c.command.iter().flatten().map(expand).collect();
    let args: Vec<String> = c.args.iter().flatten().map(expand).collect();

    let mut mounts = Vec::new();
    let privileged = effective_security(pod, c).privileged.unwrap_or(false);
    for vm in c.volume_mounts.iter().flatten() {
        let volume = ctx.volumes.get(&vm.name).ok_or_else(|| {
            StartError::new(
                "CreateContainerConfigError",
                format!("cannot find volume {:?} to mount into container {:?}", vm.name, c.name),
            )
        })?;
        let mut host = volume.path.clone();
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e)),
            _ => None,
        };
        if let Some(sub) = sub {
            check_sub_path(&sub)?;
            host = host.join(&sub);
            if std::fs::symlink_metadata(&host).is_err() {
                std::fs::create_dir_all(&host).map_err(|e| {
                    StartError::new(
                        "CreateContainerConfigError",
                        format!("failed to create subPath directory for volumeMount {:?}: {e}", vm.name),
                    )
                })?;
                let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777));
            }
        }
        if vm.mount_propagation.as_deref() == Some("Bidirectional") && !privileged {
            return Err(StartError::new(
                "CreateContainerConfigError",
                "Bidirectional mount propagation is available only to privileged containers",
            ));
        }
        mounts.push(api::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: vm.read_only.unwrap_or(false) || volume.read_only,
            propagation: propagation(vm.mount_propagation.as_deref()),
            ..Default::default()
        });
    }
    let etc_hosts = ctx.pod_dir.join("etc-hosts");
    let mounts_hosts = c.volume_mounts.iter().flatten().any(|m| m.mount_path == "/etc/hosts");
    if !mounts_hosts && etc_hosts.exists() {
        mounts.push(api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: etc_hosts.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let message_path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".to_string());
    let message_file = termination_message_file(ctx.pod_dir, &c.name)?;
    mounts.push(api::Mount {
        container_path: message_path.clone(),
        host_path: message_file.to_string_lossy().into_owned(),
        ..Default::default()
    });

    let mut labels = pod_labels(pod, false);
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    let spec = pod.spec.as_ref();
    let mut annotations: HashMap<String, String> = HashMap::new();
    annotations.insert(ANNOTATION_HASH.into(), hash(c));
    annotations.insert(ANNOTATION_RESTART_COUNT.into(), ctx.restart_count.to_string());
    annotations.insert(ANNOTATION_TERMINATION_MESSAGE_PATH.into(), message_path);
    annotations.insert(
        ANNOTATION_TERMINATION_MESSAGE_POLICY.into(),
        c.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
    );
    annotations.insert(
        ANNOTATION_GRACE_PERIOD.into(),
        spec.and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .to_string(),
    );
    if let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        annotations.insert(ANNOTATION_PRE_STOP.into(), json);
    }
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        annotations.insert("io.kubernetes.container.ports".into(), json);
    }

    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: ctx.restart_count.max(0) as u32,
        }),
        image: Some(api::ImageSpec {
            image: image.id.clone(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .iter()
            .map(|(key, value)| api::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, ctx.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources::container_resources(pod, c, ctx.memory_capacity)),
            security_context: Some(security_context(pod, c)),
        }),
        ..Default::default()
    })
}

/// A fresh, world-writable file for the container's termination message.
fn termination_message_file(pod_dir: &Path, container: &str) -> Result<PathBuf, StartError> {
    let dir = pod_dir.join("containers").join(container);
    let fail = |e: std::io::Error| {
        StartError::new(
            "CreateContainerConfigError",
            format!("cannot create the termination message file: {e}"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let file = dir.join(format!("{:08x}", rand::random::<u32>()));
    std::fs::write(&file, b"").map_err(fail)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).map_err(fail)?;
    Ok(file)
}

/// `startContainer`: config, create, start, postStart. Returns the container ID.
pub async fn start(node: &Node, ctx: &StartContext<'_>, image: &api::Image) -> Result<String, StartError> {
    let pod = ctx.pod;
    let c = ctx.container;
    let object = Object::of(pod);
    verify_run_as_non_root(pod, c, image)?;
    let env = env::resolve(pod, c, ctx.sources, ctx.facts)
        .map_err(|e| StartError::new("CreateContainerConfigError", e.to_string()))?;
    let config = container_config(ctx, image, &env)?;
    let log_dir = Path::new(&ctx.sandbox_config.log_directory).join(&c.name);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        return Err(StartError::new(
            "CreateContainerConfigError",
            format!("create container log directory for container {}: {e}", c.name),
        ));
    }
    let id = node
        .runtime
        .create_container(ctx.sandbox_id, config, ctx.sandbox_config.clone())
        .await
        .map_err(|e| {
            node.recorder
                .warning(&object, Some(&c.name), "Failed", format!("Error: {}", e.message()));
            StartError::new("CreateContainerError", e.message())
        })?;
    node.recorder.normal(
        &object,
        Some(&c.name),
        "Created",
        format!("Created container: {}", c.name),
    );
    if let Err(e) = node.runtime.start_container(&id).await {
        node.recorder
            .warning(&object, Some(&c.name), "Failed", format!("Error: {}", e.message()));
        return Err(StartError::new("RunContainerError", e.message()));
    }
    node.recorder.normal(
        &object,
        Some(&c.name),
        "Started",
        format!("Started container {}", c.name),
    );
    if let Some(post_start) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let target = Target {
            runtime: node.runtime.as_ref(),
            container_id: &id,
            container: c,
            pod_ip: ctx.pod_ip,
        };
        let outcome = handlers::hook(&target, post_start, Duration::from_secs(120)).await;
        if !outcome.success {
            node.recorder.warning(
                &object,
                Some(&c.name),
                "FailedPostStartHook",
                format!("PostStartHook failed: {}", outcome.output),
            );
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let _ = node.runtime.stop_container(&id, grace.max(2)).await;
            return Err(StartError::new("PostStartHookError", outcome.output));
        }
    }
    Ok(id)
}

/// The minimum time a container gets to stop.
pub const MIN_GRACE: i64 = 2;

/// `killContainer`: preStop (bounded by the grace period), then StopContainer with
/// the rest of it. `spec` is the container's spec when the pod is known; otherwise
/// the preStop hook is restored from the container's annotation.
pub async fn kill(
    node: &Node,
    object: &Object,
    spec: Option<&Container>,
    info: &ContainerInfo,
    grace: i64,
    pod_ip: Option<std::net::IpAddr>,
    why: Option<String>,
) -> Result<(), crate::kubelet::cri::Error> {
    let message = match why {
        Some(why) => why,
        None => format!("Stopping container {}", info.name),
    };
    node.recorder.normal(object, Some(&info.name), "Killing", message);
    let mut grace = grace.max(0);
    let restored: Option<k8s_openapi::api::core::v1::LifecycleHandler> = info
        .annotations
        .get(ANNOTATION_PRE_STOP)
        .and_then(|j| serde_json::from_str(j).ok());
    let pre_stop = spec
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.clone())
        .or(restored);
    if let Some(pre_stop) = pre_stop
        && grace > 0
    {
        let started = Instant::now();
        let fallback = Container {
            name: info.name.clone(),
            ..Default::default()
        };
        let target = Target {
            runtime: node.runtime.as_ref(),
            container_id: &info.id,
            container: spec.unwrap_or(&fallback),
            pod_ip,
        };
        let outcome = handlers::hook(&target, &pre_stop, Duration::from_secs(grace as u64)).await;
        if !outcome.success {
            node.recorder.warning(
                object,
                Some(&info.name),
                "FailedPreStopHook",
                format!("PreStopHook failed: {}", outcome.output),
            );
        }
        grace -= started.elapsed().as_secs() as i64;
    }
    match node.runtime.stop_container(&info.id, grace.max(MIN_GRACE)).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Labels-only view of the annotations a container was created with, for tests.
pub fn annotation_map(config: &api::ContainerConfig) -> BTreeMap<String, String> {
    config.annotations.clone().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_policies() {
        let c = |image: &str, policy: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("localhost:5000/busybox:v1", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox@sha256:abc", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn only_an_unreachable_registry_falls_back_to_a_present_image() {
        assert!(registry_unreachable(
            "failed to pull and unpack image \"docker.io/library/busybox:latest\": failed to resolve reference \"docker.io/library/busybox:latest\": failed to do request: Head \"https://registry-1.docker.io/v2/library/busybox/manifests/latest\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host"
        ));
        assert!(!registry_unreachable(
            "failed to pull and unpack image \"127.0.0.1:5000/busybox:v1\": failed to resolve reference \"127.0.0.1:5000/busybox:v1\": pulling from host 127.0.0.1:5000 failed with status code [manifests v1]: 401 Unauthorized"
        ));
        assert!(!registry_unreachable(
            "failed to resolve reference \"127.0.0.1:5000/nope:v1\": 127.0.0.1:5000/nope:v1: not found"
        ));
    }

    #[test]
    fn registries_and_credentials() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b:1"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/x"), "localhost:5000");
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("me:pw")},
            "ghcr.io": {"username": "u", "password": "p"}
        }});
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string())}
        }))
        .unwrap();
        let creds = pull_credentials("busybox", std::slice::from_ref(&secret));
        assert_eq!(creds.len(), 1);
        assert_eq!((creds[0].username.as_str(), creds[0].password.as_str()), ("me", "pw"));
        let creds = pull_credentials("ghcr.io/x/y", &[secret]);
        assert_eq!(creds[0].username, "u");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                "containers": [{
                    "name": "app", "image": "busybox",
                    "command": ["sh", "-c"], "args": ["echo $(GREETING) $(MISSING)"],
                    "workingDir": "/w",
                    "env": [{"name": "GREETING", "value": "hi"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "sub"},
                                     {"name": "cfg", "mountPath": "/cfg"}],
                    "resources": {"limits": {"memory": "20Mi"}},
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn container_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = pod();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let mut volumes = VolumeMap::new();
        volumes.insert(
            "data".into(),
            super::super::volumes::Mounted {
                path: tmp.path().join("data"),
                read_only: false,
            },
        );
        volumes.insert(
            "cfg".into(),
            super::super::volumes::Mounted {
                path: tmp.path().join("cfg"),
                read_only: true,
            },
        );
        let sandbox = api::PodSandboxConfig::default();
        let ctx = StartContext {
            pod: &pod,
            container: c,
            sandbox_id: "s",
            sandbox_config: &sandbox,
            volumes: &volumes,
            facts: &PodFacts::default(),
            sources: &Sources::default(),
            restart_count: 3,
            pod_dir: tmp.path(),
            pod_ip: None,
            memory_capacity: 1 << 30,
        };
        let image = api::Image {
            id: "sha256:abc".into(),
            ..Default::default()
        };
        let env = vec![("GREETING".to_string(), "hi".to_string())];
        let config = container_config(&ctx, &image, &env).unwrap();
        assert_eq!(config.command, vec!["sh", "-c"]);
        assert_eq!(config.args, vec!["echo hi $(MISSING)"]);
        assert_eq!(config.working_dir, "/w");
        assert_eq!(config.log_path, "app/3.log");
        assert_eq!(config.metadata.as_ref().unwrap().attempt, 3);
        assert_eq!(config.image.as_ref().unwrap().image, "sha256:abc");
        let a = annotation_map(&config);
        assert_eq!(a[ANNOTATION_RESTART_COUNT], "3");
        assert_eq!(a[ANNOTATION_HASH], hash(c));
        assert!(a[ANNOTATION_PRE_STOP].contains("sleep"));
        assert_eq!(config.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(config.labels[super::super::sandbox::LABEL_POD_UID], "u1");
        let data = config.mounts.iter().find(|m| m.container_path == "/data").unwrap();
        assert!(data.host_path.ends_with("data/sub") && !data.readonly);
        assert!(tmp.path().join("data/sub").is_dir());
        let cfg = config.mounts.iter().find(|m| m.container_path == "/cfg").unwrap();
        assert!(cfg.readonly);
        assert!(config.mounts.iter().any(|m| m.container_path == "/dev/termination-log"));
        let linux = config.linux.unwrap();
        let sc = linux.security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.supplemental_groups, vec![2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, vec!["ALL"]);
        assert_eq!(linux.resources.unwrap().memory_limit_in_bytes, 20 << 20);

        // A volume the pod does not have, and a subPath escaping the volume.
        let mut bad = pod.clone();
        bad.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap()[0].sub_path = Some("../x".into());
        let ctx = StartContext {
            pod: &bad,
            container: &bad.spec.as_ref().unwrap().containers[0],
            ..ctx
        };
        assert_eq!(
            container_config(&ctx, &image, &env).unwrap_err().reason,
            "CreateContainerConfigError"
        );
    }

    #[test]
    fn run_as_non_root() {
        let mut pod = pod();
        let image = |uid: Option<i64>, user: &str| api::Image {
            uid: uid.map(|value| api::Int64Value { value }),
            username: user.into(),
            ..Default::default()
        };
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        assert!(verify_run_as_non_root(&pod, &c, &image(Some(0), "")).is_ok()); // not asked
        pod.spec
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .run_as_non_root = Some(true);
        assert!(verify_run_as_non_root(&pod, &c, &image(Some(0), "")).is_ok()); // runAsUser 1000
        pod.spec
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .run_as_user = None;
        assert!(verify_run_as_non_root(&pod, &c, &image(Some(0), "")).is_err());
        assert!(verify_run_as_non_root(&pod, &c, &image(Some(5), "")).is_ok());
        assert!(verify_run_as_non_root(&pod, &c, &image(None, "nobody")).is_err());
    }
}
