//! Pod volumes on the node, as the kubelet's volume plugins lay them out under
//! `<pods dir>/<uid>/volumes/<plugin>/<name>`: emptyDir (a directory, or a tmpfs for
//! `medium: Memory` with its `sizeLimit`), configMap, secret (on tmpfs), downwardAPI
//! and projected volumes written by the atomic writer (`..data` symlink swapped in
//! one rename, so containers never see a half-updated set and updates propagate on
//! every refresh), hostPath with its type checks, and persistentVolumeClaims bound to
//! hostPath or local PVs. Teardown unmounts and removes everything without ever
//! crossing into another file system.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume, VolumeProjection};

use super::env::{self, PodFacts};
use super::objects::Objects;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("persistentvolumeclaim {0:?} not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim {0:?} is not bound")]
    ClaimNotBound(String),
    #[error("persistentvolume {0:?} not found")]
    VolumeNotFound(String),
    #[error("persistentvolume {0:?} is neither hostPath nor local; this node cannot mount it")]
    UnsupportedVolume(String),
    #[error("volume {0:?}: this volume type is not supported by this kubelet")]
    Unsupported(String),
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType { path: String, expected: &'static str },
    #[error("invalid path {0:?} in volume: must be relative and must not contain '..'")]
    BadPath(String),
    #[error("{0}")]
    Env(#[from] env::EnvError),
    #[error("reading API objects: {0}")]
    Api(#[from] kube::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{0} is still mounted; not removing it")]
    StillMounted(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// tmpfs mounts for memory-backed volumes. The real one calls mount(2).
pub trait Mounter: Send + Sync + 'static {
    /// Mounts a tmpfs on `path` (an existing directory) with an optional size and
    /// the mode of its root.
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>, mode: u32) -> io::Result<()>;
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` is the root of a mount (its device differs from its parent's).
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        let meta = std::fs::symlink_metadata(path)?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let parent_meta = std::fs::symlink_metadata(parent)?;
        Ok(meta.dev() != parent_meta.dev() || meta.ino() == parent_meta.ino())
    }
}

/// mount(2) / umount2(2) on the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMounter;

fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
        let target = cstring(path)?;
        let options = match size {
            Some(bytes) => format!("mode={mode:o},size={bytes}"),
            None => format!("mode={mode:o}"),
        };
        let options = std::ffi::CString::new(options).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        let target = cstring(path)?;
        // SAFETY: `target` is a valid NUL-terminated string.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Where a volume is on the host, and whether containers must see it read-only
/// whatever their volumeMount says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub path: PathBuf,
    pub read_only: bool,
}

pub type VolumeMap = HashMap<String, Mounted>;

/// `<pods dir>/<uid>`.
pub fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(plugin).join(name)
}

/// Creates `<pod>/{volumes,plugins,containers}` (0750), as `makePodDataDirs`.
pub fn make_pod_dirs(pod_dir: &Path) -> Result<(), VolumeError> {
    for sub in ["", "volumes", "plugins", "containers"] {
        let dir = pod_dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750));
    }
    Ok(())
}

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub mode: u32,
}

pub type Payload = BTreeMap<String, FileContent>;

/// Sets up (or refreshes) every volume of `pod`. Idempotent: a second call only
/// rewrites API-backed volumes whose content changed.
pub async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    objects: &dyn Objects,
    mounter: &dyn Mounter,
    facts: &PodFacts,
) -> Result<VolumeMap, VolumeError> {
    make_pod_dirs(pod_dir)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut map = VolumeMap::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    for volume in &volumes {
        let mounted = setup_one(pod, namespace, volume, pod_dir, objects, mounter, facts).await?;
        if let Some(gid) = fs_group(pod)
            && volume.empty_dir.is_some()
        {
            // `SetVolumeOwnership`: the group owns it, new files inherit the group.
            let _ = std::os::unix::fs::chown(&mounted.path, None, Some(gid));
            let _ = std::fs::set_permissions(&mounted.path, std::fs::Permissions::from_mode(0o2777));
        }
        map.insert(volume.name.clone(), mounted);
    }
    Ok(map)
}

/// Whether the pod has volumes written from API objects (configMap, secret,
/// downwardAPI, projected), which are refreshed so that updates reach the pod.
pub fn has_api_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some())
}

/// The pod's `fsGroup`: volumes the kubelet writes belong to that group.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// Writes an API-backed volume: with an `fsGroup`, files are group-readable and
/// owned by that group (as `SetVolumeOwnership` does for read-only volumes).
fn write_volume(pod: &Pod, dir: &Path, mut payload: Payload) -> Result<(), VolumeError> {
    let group = fs_group(pod);
    if group.is_some() {
        for file in payload.values_mut() {
            file.mode |= 0o440;
        }
    }
    write_atomic_owned(dir, &payload, group)?;
    Ok(())
}

async fn setup_one(
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    pod_dir: &Path,
    objects: &dyn Objects,
    mounter: &dyn Mounter,
    facts: &PodFacts,
) -> Result<Mounted, VolumeError> {
    let name = volume.name.as_str();
    if let Some(empty) = &volume.empty_dir {
        let dir = volume_dir(pod_dir, "kubernetes.io~empty-dir", name);
        ensure_dir(&dir, 0o777)?;
        if empty.medium.as_deref() == Some("Memory") && !mounter.is_mount_point(&dir).unwrap_or(false) {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(super::quantity::value)
                .filter(|s| *s > 0)
                .map(|s| s as u64);
            mounter
                .mount_tmpfs(&dir, size, 0o777)
                .map_err(io_err("mounting tmpfs on", &dir))?;
        }
        return Ok(Mounted {
            path: dir,
            read_only: false,
        });
    }
    if let Some(source) = &volume.config_map {
        let dir = volume_dir(pod_dir, "kubernetes.io~configmap", name);
        ensure_dir(&dir, 0o755)?;
        let cm = objects.config_map(namespace, &source.name).await?;
        let mode = source.default_mode.unwrap_or(0o644) as u32;
        let payload = match cm {
            Some(cm) => config_map_payload(&cm, source.items.as_deref(), mode, source.optional == Some(true))?,
            None if source.optional == Some(true) => Payload::new(),
            None => return Err(VolumeError::ConfigMapNotFound(source.name.clone())),
        };
        write_volume(pod, &dir, payload)?;
        return Ok(Mounted {
            path: dir,
            read_only: true,
        });
    }
    if let Some(source) = &volume.secret {
        let dir = volume_dir(pod_dir, "kubernetes.io~secret", name);
        ensure_dir(&dir, 0o755)?;
        if !mounter.is_mount_point(&dir).unwrap_or(false) {
            mounter
                .mount_tmpfs(&dir, None, 0o755)
                .map_err(io_err("mounting tmpfs on", &dir))?;
        }
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let mode = source.default_mode.unwrap_or(0o644) as u32;
        let payload = match objects.secret(namespace, &secret_name).await? {
            Some(s) => secret_payload(&s, source.items.as_deref(), mode, source.optional == Some(true))?,
            None if source.optional == Some(true) => Payload::new(),
            None => return Err(VolumeError::SecretNotFound(secret_name)),
        };
        write_volume(pod, &dir, payload)?;
        return Ok(Mounted {
            path: dir,
            read_only: true,
        });
    }
    if let Some(source) = &volume.downward_api {
        let dir = volume_dir(pod_dir, "kubernetes.io~downward-api", name);
        ensure_dir(&dir, 0o755)?;
        let mode = source.default_mode.unwrap_or(0o644) as u32;
        let payload = downward_payload(pod, source.items.as_deref().unwrap_or_default(), mode, facts)?;
        write_volume(pod, &dir, payload)?;
        return Ok(Mounted {
            path: dir,
            read_only: true,
        });
    }
    if let Some(source) = &volume.projected {
        let dir = volume_dir(pod_dir, "kubernetes.io~projected", name);
        ensure_dir(&dir, 0o755)?;
        let mode = source.default_mode.unwrap_or(0o644) as u32;
        let mut payload = Payload::new();
        for projection in source.sources.iter().flatten() {
            payload.extend(projection_payload(pod, namespace, projection, mode, objects, facts).await?);
        }
        write_volume(pod, &dir, payload)?;
        return Ok(Mounted {
            path: dir,
            read_only: true,
        });
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        check_host_path(&path, host.type_.as_deref().unwrap_or(""))?;
        return Ok(Mounted { path, read_only: false });
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let pvc = objects
            .claim(namespace, &claim.claim_name)
            .await?
            .ok_or_else(|| VolumeError::ClaimNotFound(claim.claim_name.clone()))?;
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| VolumeError::ClaimNotBound(claim.claim_name.clone()))?;
        let pv = objects
            .volume(&pv_name)
            .await?
            .ok_or_else(|| VolumeError::VolumeNotFound(pv_name.clone()))?;
        let spec = pv.spec.unwrap_or_default();
        let path = if let Some(h) = spec.host_path {
            let path = PathBuf::from(&h.path);
            check_host_path(&path, h.type_.as_deref().unwrap_or(""))?;
            path
        } else if let Some(local) = spec.local {
            let path = PathBuf::from(&local.path);
            check_host_path(&path, "")?;
            path
        } else {
            return Err(VolumeError::UnsupportedVolume(pv_name));
        };
        return Ok(Mounted {
            path,
            read_only: claim.read_only.unwrap_or(false),
        });
    }
    Err(VolumeError::Unsupported(name.to_string()))
}

fn ensure_dir(dir: &Path, mode: u32) -> Result<(), VolumeError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))?;
    }
    Ok(())
}

/// `hostPath.type` checks (`checkType`), creating what `*OrCreate` asks for.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), VolumeError> {
    let fail = |expected| VolumeError::HostPathType {
        path: path.display().to_string(),
        expected,
    };
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(fail("directory")),
            Err(_) => {
                std::fs::create_dir_all(path).map_err(io_err("creating", path))?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
                Ok(())
            }
        },
        "Directory" => meta
            .ok()
            .filter(|m| m.is_dir())
            .map(|_| ())
            .ok_or_else(|| fail("directory")),
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(fail("file")),
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io_err("creating", path))?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
                Ok(())
            }
        },
        "File" => meta
            .ok()
            .filter(|m| m.is_file())
            .map(|_| ())
            .ok_or_else(|| fail("file")),
        "Socket" => meta
            .ok()
            .filter(|m| m.file_type().is_socket())
            .map(|_| ())
            .ok_or_else(|| fail("socket")),
        "CharDevice" => meta
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map(|_| ())
            .ok_or_else(|| fail("character device")),
        "BlockDevice" => meta
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|_| ())
            .ok_or_else(|| fail("block device")),
        _ => Err(fail("known hostPath type")),
    }
}

/// Key/path items: the listed keys (each must exist unless optional), or all.
fn items_payload(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
    missing: impl Fn(String) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, data) in all {
                payload.insert(k, FileContent { data, mode });
            }
        }
        Some(items) => {
            for item in items {
                match all.get(&item.key) {
                    Some(data) => {
                        payload.insert(
                            item.path.clone(),
                            FileContent {
                                data: data.clone(),
                                mode: item.mode.map(|m| m as u32).unwrap_or(mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(item.key.clone())),
                }
            }
        }
    }
    Ok(payload)
}

pub fn config_map_payload(
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        all.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    items_payload(all, items, mode, optional, VolumeError::ConfigMapKey)
}

pub fn secret_payload(
    secret: &Secret,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.string_data.iter().flatten() {
        all.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in secret.data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    items_payload(all, items, mode, optional, VolumeError::SecretKey)
}

pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    facts: &PodFacts,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            env::field_value(pod, field, facts)?
        } else if let Some(res) = &item.resource_field_ref {
            let name = res.container_name.clone().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                .find(|c| c.name == name)
                .ok_or(env::EnvError::NoContainer(name))?;
            env::container_resource_value(container, &res.resource, res.divisor.as_ref(), facts)?
        } else {
            String::new()
        };
        payload.insert(
            item.path.clone(),
            FileContent {
                data: value.into_bytes(),
                mode: item.mode.map(|m| m as u32).unwrap_or(mode),
            },
        );
    }
    Ok(payload)
}

async fn projection_payload(
    pod: &Pod,
    namespace: &str,
    projection: &VolumeProjection,
    mode: u32,
    objects: &dyn Objects,
    facts: &PodFacts,
) -> Result<Payload, VolumeError> {
    if let Some(source) = &projection.config_map {
        let optional = source.optional == Some(true);
        return match objects.config_map(namespace, &source.name).await? {
            Some(cm) => config_map_payload(&cm, source.items.as_deref(), mode, optional),
            None if optional => Ok(Payload::new()),
            None => Err(VolumeError::ConfigMapNotFound(source.name.clone())),
        };
    }
    if let Some(source) = &projection.secret {
        let optional = source.optional == Some(true);
        return match objects.secret(namespace, &source.name).await? {
            Some(s) => secret_payload(&s, source.items.as_deref(), mode, optional),
            None if optional => Ok(Payload::new()),
            None => Err(VolumeError::SecretNotFound(source.name.clone())),
        };
    }
    if let Some(source) = &projection.downward_api {
        return downward_payload(pod, source.items.as_deref().unwrap_or_default(), mode, facts);
    }
    if let Some(source) = &projection.service_account_token {
        let token = objects
            .token(pod, source.audience.clone(), source.expiration_seconds)
            .await?;
        let mut payload = Payload::new();
        payload.insert(
            source.path.clone(),
            FileContent {
                data: token.into_bytes(),
                mode,
            },
        );
        return Ok(payload);
    }
    Ok(Payload::new())
}

fn check_relative(path: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let ok = !path.is_empty() && !path.starts_with("..") && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::BadPath(path.to_string()))
    }
}

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether the current `..data` already holds exactly `payload`.
fn same_payload(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA);
    if !data.is_dir() {
        return false;
    }
    let mut existing = 0;
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                existing += 1;
            }
        }
    }
    existing == payload.len()
        && payload.iter().all(|(rel, file)| {
            let p = data.join(rel);
            std::fs::read(&p).is_ok_and(|d| d == file.data)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode & 0o7777)
        })
}

/// The atomic writer (`pkg/volume/util/atomic_writer.go`): the payload goes to a new
/// timestamped directory, `..data` is switched to it with one rename, the visible
/// names are symlinks through `..data`, and the old directory is removed. Returns
/// whether anything changed.
pub fn write_atomic(dir: &Path, payload: &Payload) -> Result<bool, VolumeError> {
    write_atomic_owned(dir, payload, None)
}

/// [`write_atomic`], with everything written owned by `group` if given.
pub fn write_atomic_owned(dir: &Path, payload: &Payload, group: Option<u32>) -> Result<bool, VolumeError> {
    for path in payload.keys() {
        check_relative(path)?;
    }
    if same_payload(dir, payload) {
        return Ok(false);
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let stamp = format!(
        "..{}.{:08x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        rand::random::<u32>()
    );
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir).map_err(io_err("creating", &ts_dir))?;
    let _ = std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755));
    for (rel, file) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, &file.data).map_err(io_err("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("chmod", &path))?;
        if let Some(gid) = group {
            let mut p = path.as_path();
            while p.starts_with(&ts_dir) {
                std::os::unix::fs::chown(p, None, Some(gid)).map_err(io_err("chown", p))?;
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
        }
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(io_err("linking", &tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(io_err("renaming", &tmp))?;

    // Visible names: one symlink per top-level entry, through `..data`.
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("{DATA}/{top}"), &link).map_err(io_err("linking", &link))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") || tops.contains(&name) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let old = dir.join(old);
        if old.starts_with(dir) {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(true)
}

/// Unmounts every volume mount of a pod and removes its directory. Refuses (and
/// leaves the directory) if something is still mounted in it, so a mount is never
/// deleted through.
pub fn teardown(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    let volumes = pod_dir.join("volumes");
    if let Ok(plugins) = std::fs::read_dir(&volumes) {
        for plugin in plugins.flatten() {
            let Ok(dirs) = std::fs::read_dir(plugin.path()) else {
                continue;
            };
            for dir in dirs.flatten() {
                let path = dir.path();
                if mounter.is_mount_point(&path).unwrap_or(false) {
                    mounter.unmount(&path).map_err(io_err("unmounting", &path))?;
                }
            }
        }
    }
    remove_tree(pod_dir)
}

/// Unmounts the pod's memory-backed volumes but keeps the directory (a finished
/// pod's volumes go, its directory stays until the pod object goes).
pub fn unmount_all(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    let volumes = pod_dir.join("volumes");
    let Ok(plugins) = std::fs::read_dir(&volumes) else {
        return Ok(());
    };
    for plugin in plugins.flatten() {
        let Ok(dirs) = std::fs::read_dir(plugin.path()) else {
            continue;
        };
        for dir in dirs.flatten() {
            let path = dir.path();
            if mounter.is_mount_point(&path).unwrap_or(false) {
                mounter.unmount(&path).map_err(io_err("unmounting", &path))?;
            }
        }
    }
    Ok(())
}

/// `rm -rf` that stays on one file system: anything on another device under `root`
/// is an error, not a deletion.
pub fn remove_tree(root: &Path) -> Result<(), VolumeError> {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return Ok(());
    };
    let dev = meta.dev();
    check_one_device(root, dev)?;
    std::fs::remove_dir_all(root).map_err(io_err("removing", root))
}

fn check_one_device(dir: &Path, dev: u64) -> Result<(), VolumeError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(VolumeError::StillMounted(e.path().display().to_string()));
            }
            check_one_device(&e.path(), dev)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn file(s: &str, mode: u32) -> FileContent {
        FileContent {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn atomic_writer_swaps_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o600));
        assert!(write_atomic(dir, &p).unwrap());
        assert_eq!(read(dir, "a"), "1");
        assert_eq!(read(dir, "sub/b"), "2");
        assert!(
            std::fs::symlink_metadata(dir.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::metadata(dir.join("sub/b")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Same content: nothing to do.
        assert!(!write_atomic(dir, &p).unwrap());
        let first = std::fs::read_link(dir.join(DATA)).unwrap();

        // An update: new content visible, removed key gone, old directory removed.
        let mut q = Payload::new();
        q.insert("a".into(), file("3", 0o644));
        q.insert("c".into(), file("4", 0o644));
        assert!(write_atomic(dir, &q).unwrap());
        assert_eq!(read(dir, "a"), "3");
        assert_eq!(read(dir, "c"), "4");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(first).exists());
        let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        assert_eq!(entries.len(), 4, "{entries:?}"); // ..data, ..<stamp>, a, c

        let mut bad = Payload::new();
        bad.insert("../etc/passwd".into(), file("x", 0o644));
        assert!(matches!(write_atomic(dir, &bad), Err(VolumeError::BadPath(_))));
        bad.clear();
        bad.insert("/abs".into(), file("x", 0o644));
        assert!(matches!(write_atomic(dir, &bad), Err(VolumeError::BadPath(_))));
    }

    #[test]
    fn fs_group_owns_api_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"securityContext": {"fsGroup": 1234}, "containers": [{"name": "c"}]}}))
        .unwrap();
        let mut p = Payload::new();
        p.insert("dir/secret".into(), file("s", 0o400));
        write_volume(&pod, tmp.path(), p).unwrap();
        let meta = std::fs::metadata(tmp.path().join("dir/secret")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        // Changing owners needs root, which the node runs as.
        if running_as_root() {
            assert_eq!(meta.gid(), 1234);
        }
    }

    fn running_as_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    #[test]
    fn payloads() {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k1": "v1", "k2": "v2"}})).unwrap();
        let all = config_map_payload(&cm, None, 0o644, false).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        let items: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "k2", "path": "dir/two", "mode": 0o400}])).unwrap();
        let some = config_map_payload(&cm, Some(&items), 0o644, false).unwrap();
        assert_eq!(some["dir/two"], file("v2", 0o400));
        let missing: Vec<KeyToPath> = serde_json::from_value(json!([{"key": "nope", "path": "x"}])).unwrap();
        assert!(config_map_payload(&cm, Some(&missing), 0o644, false).is_err());
        assert!(config_map_payload(&cm, Some(&missing), 0o644, true).unwrap().is_empty());

        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns",
            "labels": {"b": "2", "a": "1"}}, "spec": {"containers": [{"name": "c",
            "resources": {"limits": {"memory": "32Mi"}}}]}}))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let d = downward_payload(&pod, &items, 0o644, &PodFacts::default()).unwrap();
        assert_eq!(d["labels"].data, b"a=\"1\"\nb=\"2\"");
        assert_eq!(d["name"].data, b"p");
        assert_eq!(d["mem"].data, b"32");
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(&d, "Directory").unwrap();
        assert!(check_host_path(&d, "File").is_err());
        let f = tmp.path().join("f");
        assert!(check_host_path(&f, "File").is_err());
        check_host_path(&f, "FileOrCreate").unwrap();
        check_host_path(&f, "File").unwrap();
        assert!(check_host_path(&f, "Directory").is_err());
        assert!(check_host_path(&f, "Socket").is_err());
        check_host_path(&tmp.path().join("nothing"), "").unwrap();
        check_host_path(Path::new("/dev/null"), "CharDevice").unwrap();
    }

    #[test]
    fn remove_tree_removes_plain_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pod");
        std::fs::create_dir_all(root.join("volumes/x/y")).unwrap();
        std::fs::write(root.join("volumes/x/y/f"), "data").unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        remove_tree(&root).unwrap();
    }
}
