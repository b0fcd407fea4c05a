//! Image import without a registry (k3s's airgap images): OCI image layouts and
//! `docker save` archives, as `.tar`, `.tar.gz` or `.tar.zst`, go into containerd's
//! `k8s.io` namespace through its API, so the CRI plugin serves them to the kubelet
//! at once, exactly as if they had been pulled.
//!
//! containerd 1.6 has no transfer service, so this does what `ctr images import`
//! does by hand: under a lease (so the garbage collector leaves half-imported content
//! alone), every blob is streamed into the content store (blobs already there are
//! skipped), manifests and indexes get the `containerd.io/gc.ref.*` labels that keep
//! their children alive, the image record is created (or moved to the new target)
//! with the `io.cri-containerd.image=managed` label, and the layers for this host's
//! platform are unpacked into the overlayfs snapshotter through the diff and
//! snapshots services (chain IDs as in the OCI image spec), so a pod can start from
//! the image without another step.
//!
//! `kube image ls` lists through CRI `ListImages`, as `crictl images` does.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{self as api, WriteAction, snapshots};
use containerd_client::types::Descriptor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::containerd::{K8S_NAMESPACE, SNAPSHOTTER};

/// Image label the CRI plugin sets on images it manages (`ctr` sets it for imports).
pub const CRI_IMAGE_LABEL: &str = "io.cri-containerd.image";
/// Image label marking images that must never be pruned (the sandbox image).
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Files kept in memory (and never written to the content store): the layout's own
/// metadata, plus every blob up to this size (manifests, indexes, configs).
const SMALL_BLOB: u64 = 4 << 20;
/// Size of the pieces blobs are streamed to containerd in.
const CHUNK: usize = 1 << 20;
/// A lease that an interrupted import leaves behind expires after this long.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an image archive: {message}")]
    Format { path: PathBuf, message: String },
    #[error("invalid image reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: String, actual: String },
    #[error("blob {0} is not in the archive or containerd")]
    MissingBlob(String),
    #[error("no image for {os}/{arch} in {reference}")]
    NoPlatform {
        reference: String,
        os: &'static str,
        arch: &'static str,
    },
    #[error("containerd {call}: {status}")]
    Containerd { call: &'static str, status: String },
    #[error("cannot reach containerd at {socket}: {message}")]
    Unreachable { socket: PathBuf, message: String },
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn rpc(call: &'static str) -> impl Fn(tonic::Status) -> Error {
    move |status| Error::Containerd {
        call,
        status: format!("{}: {}", code_name(status.code()), status.message()),
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::FailedPrecondition => "failed precondition",
        _ => "error",
    }
}

/// One image that an import created or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The digest of the image's target (manifest or index).
    pub digest: String,
}

/// An image built in memory (the sandbox image): one manifest, its config and its
/// layers, each as the exact bytes to store.
#[derive(Debug, Clone)]
pub struct MemoryImage {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// (media type, bytes) of each layer, base first.
    pub layers: Vec<(String, Vec<u8>)>,
}

impl MemoryImage {
    /// A single-layer OCI image for `arch` (GOARCH name) whose layer is `layer_tar`
    /// (an uncompressed tar) and whose config is `config` (the `config` object of the
    /// OCI image config: Entrypoint, Env, ...).
    pub fn oci(name: &str, arch: &str, config: Value, layer_tar: Vec<u8>) -> MemoryImage {
        let layer_digest = sha256_digest(&layer_tar);
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let config = serde_json::to_vec(&config).unwrap_or_default();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_tar.len()}],
        });
        MemoryImage {
            name: name.to_string(),
            labels: BTreeMap::new(),
            manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
            config,
            layers: vec![(OCI_LAYER.to_string(), layer_tar)],
        }
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The GOARCH name of this host, as image configs and platforms spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Normalizes an image reference the way containerd and the kubelet do:
/// `busybox` → `docker.io/library/busybox:latest`, `foo/bar:1` → `docker.io/foo/bar:1`,
/// `registry:5000/x` → `registry:5000/x:latest`; digests are kept.
pub fn normalize_reference(reference: &str) -> Result<String> {
    let bad = |message: &str| Error::Reference {
        reference: reference.to_string(),
        message: message.to_string(),
    };
    if reference.is_empty() || reference.len() > 255 {
        return Err(bad("must be 1 to 255 characters"));
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("digest must be sha256:<64 hex>"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(bad("digest must be sha256:<64 hex>"));
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            || t.starts_with(['.', '-']))
    {
        return Err(bad("invalid tag"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), name.to_string()),
        None => ("docker.io".to_string(), format!("library/{name}")),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if !path.split('/').all(component_ok) {
        return Err(bad("repository names are lower-case letters, digits and separators"));
    }
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(bad("invalid registry host"));
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// Whether `path` has a name the airgap directory imports: `*.tar`, `*.tar.gz`,
/// `*.tgz`, `*.tar.zst`, `*.tar.zstd`.
pub fn is_archive_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The archives in an airgap images directory, sorted by name (a missing directory
/// has none).
pub fn archives_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_archive_name(p))
        .collect();
    files.sort();
    files
}

/// Imports images into containerd's `k8s.io` namespace over one connection.
#[derive(Clone)]
pub struct Importer {
    channel: Channel,
    socket: PathBuf,
}

/// What a running import has read so far, for progress output.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the archive file read (compressed).
    pub read: AtomicU64,
    /// The archive's size on disk.
    pub total: AtomicU64,
}

impl Importer {
    /// An importer talking to containerd at `socket`.
    pub fn new(socket: &Path) -> Importer {
        Importer {
            channel: super::containerd::channel(socket),
            socket: socket.to_path_buf(),
        }
    }

    /// Checks that containerd answers.
    pub async fn ping(&self) -> Result<()> {
        super::containerd::version(self.channel.clone())
            .await
            .map(|_| ())
            .map_err(|s| Error::Unreachable {
                socket: self.socket.clone(),
                message: s.message().to_string(),
            })
    }

    /// Imports every archive in `dir` (the airgap images directory); a bad archive is
    /// logged and skipped. Returns the images imported.
    pub async fn import_dir(&self, dir: &Path) -> Vec<Imported> {
        let mut all = Vec::new();
        for file in archives_in(dir) {
            let started = std::time::Instant::now();
            match self.import_file(&file, Arc::new(Progress::default())).await {
                Ok(images) => {
                    for image in &images {
                        tracing::info!(file = %file.display(), image = %image.name, elapsed = ?started.elapsed(), "image imported");
                    }
                    all.extend(images);
                }
                Err(err) => tracing::error!(file = %file.display(), error = %err, "image import failed"),
            }
        }
        all
    }

    /// Imports the images of one archive (OCI layout or docker-archive, plain, gzip or
    /// zstd compressed: detected from the content, not the name).
    pub async fn import_file(&self, path: &Path, progress: Arc<Progress>) -> Result<Vec<Imported>> {
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(meta) = file.metadata() {
            progress.total.store(meta.len(), Ordering::Relaxed);
        }
        let session = Session::begin(self).await?;
        let result = session.import_archive(path, file, progress).await;
        session.end().await;
        result
    }

    /// Imports an image built in memory (the sandbox image), with its labels.
    pub async fn import_memory(&self, image: &MemoryImage) -> Result<Imported> {
        let session = Session::begin(self).await?;
        let result = session.import_memory(image).await;
        session.end().await;
        result
    }

    /// The images CRI knows, as `crictl images` lists them.
    pub async fn list(&self) -> Result<Vec<k8s_cri::v1::Image>> {
        let mut client = k8s_cri::v1::image_service_client::ImageServiceClient::new(self.channel.clone());
        let response = client
            .list_images(k8s_cri::v1::ListImagesRequest { filter: None })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => Error::Unreachable {
                    socket: self.socket.clone(),
                    message: s.message().to_string(),
                },
                _ => rpc("ListImages")(s),
            })?;
        Ok(response.into_inner().images)
    }
}

/// `kube image import FILE...`: imports each archive into the runtime at `socket`,
/// with progress on stderr. Every file is tried; the first failure is returned.
pub async fn import_command(socket: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let importer = Importer::new(socket);
    importer.ping().await.map_err(|e| {
        anyhow::anyhow!(
            "{e} (is `kube server` running with this --data-dir? Archives copied into <data-dir>/agent/images are imported at its next start)"
        )
    })?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut failed = None;
    for file in files {
        let progress = Arc::new(Progress::default());
        let ticker = tty.then(|| {
            let progress = progress.clone();
            let name = file.display().to_string();
            tokio::spawn(async move {
                loop {
                    let (read, total) = (
                        progress.read.load(Ordering::Relaxed),
                        progress.total.load(Ordering::Relaxed),
                    );
                    eprint!("\r{name}: {} / {}   ", human_size(read), human_size(total));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        let result = importer.import_file(file, progress.clone()).await;
        if let Some(t) = ticker {
            t.abort();
            eprint!("\r\x1b[K");
        }
        match result {
            Ok(images) => {
                for image in images {
                    eprintln!("{}: imported {} ({})", file.display(), image.name, image.digest);
                }
            }
            Err(err) => {
                eprintln!("{}: {err}", file.display());
                failed.get_or_insert_with(|| anyhow::anyhow!("{}: {err}", file.display()));
            }
        }
    }
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `kube image ls`: the runtime's images as a table on stdout.
pub async fn list_command(socket: &Path) -> anyhow::Result<()> {
    let images = Importer::new(socket).list().await?;
    print!("{}", format_list(&images));
    Ok(())
}

/// The table `kube image ls` prints: `REPOSITORY TAG IMAGE ID SIZE`, one row per tag
/// (untagged images show `<none>`), sizes in decimal units as crictl prints them.
pub fn format_list(images: &[k8s_cri::v1::Image]) -> String {
    let mut rows = vec![["REPOSITORY".to_string(), "TAG".into(), "IMAGE ID".into(), "SIZE".into()]];
    let mut sorted: Vec<&k8s_cri::v1::Image> = images.iter().collect();
    sorted.sort_by(|a, b| a.repo_tags.first().cmp(&b.repo_tags.first()));
    for image in sorted {
        let id = image.id.trim_start_matches("sha256:");
        let id = id.get(..13).unwrap_or(id).to_string();
        let size = human_size(image.size);
        let tags: Vec<(String, String)> = if image.repo_tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(r, _)| r);
            vec![(repo.to_string(), "<none>".to_string())]
        } else {
            image
                .repo_tags
                .iter()
                .map(|t| {
                    let slash = t.rfind('/').map_or(0, |i| i + 1);
                    match t[slash..].rfind(':') {
                        Some(i) => (t[..slash + i].to_string(), t[slash + i + 1..].to_string()),
                        None => (t.clone(), "<none>".to_string()),
                    }
                })
                .collect()
        };
        for (repo, tag) in tags {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Decimal sizes with three significant digits, as Docker's `units.HumanSize`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < units.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // Three significant digits, trailing zeros dropped (Go's %.3g): 1.23MB, 12.3MB, 123MB, 1MB.
    let digits = if size >= 100.0 {
        0
    } else if size >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{size:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[unit])
}

/// Something the archive reader thread found.
enum Event {
    /// A regular file starts; its bytes follow as `Data`, then `End`.
    File {
        path: String,
        size: u64,
    },
    Data(Vec<u8>),
    /// The file ended; `digest` is the sha256 of its bytes.
    End {
        digest: String,
    },
    /// `path` is a symbolic or hard link to `target` (both normalized archive paths).
    Link {
        path: String,
        target: String,
    },
}

/// A file of the archive as the import saw it.
#[derive(Debug, Clone)]
struct Stored {
    digest: String,
    size: u64,
    /// The first bytes (to recognise compressed layers).
    head: Vec<u8>,
}

/// One import: a connection with a lease holding everything it writes.
struct Session {
    channel: Channel,
    lease: String,
}

impl Session {
    async fn begin(importer: &Importer) -> Result<Session> {
        importer.ping().await?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!("kube-import-{}-{}", std::process::id(), now.as_nanos());
        let expire = rfc3339(SystemTime::now() + LEASE_EXPIRY);
        let mut leases = LeasesClient::new(importer.channel.clone());
        let request = api::CreateRequest {
            id: id.clone(),
            labels: HashMap::from([("containerd.io/gc.expire".to_string(), expire)]),
        };
        leases
            .create(namespaced(request, None))
            .await
            .map_err(rpc("create lease"))?;
        Ok(Session {
            channel: importer.channel.clone(),
            lease: id,
        })
    }

    async fn end(self) {
        let mut leases = LeasesClient::new(self.channel.clone());
        let request = api::DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        };
        if let Err(status) = leases.delete(namespaced(request, None)).await {
            tracing::warn!(lease = %self.lease, error = %status, "cannot delete the import lease (it expires)");
        }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        namespaced(message, Some(&self.lease))
    }

    fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    async fn exists(&self, digest: &str) -> Result<bool> {
        let request = api::InfoRequest {
            digest: digest.to_string(),
        };
        match self.content().info(self.req(request)).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(rpc("content info")(s)),
        }
    }

    /// Reads a whole blob back from the content store.
    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let request = api::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = match self.content().read(self.req(request)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Err(Error::MissingBlob(digest.to_string())),
            Err(s) => return Err(rpc("content read")(s)),
        };
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(rpc("content read"))? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Writes `data` as one blob (skipped if present) and returns its digest.
    async fn write_small(&self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        if self.exists(&digest).await? {
            return Ok(digest);
        }
        let mut writer = BlobWriter::open(self, Some(&digest)).await?;
        for piece in data.chunks(CHUNK) {
            writer.write(piece.to_vec()).await?;
        }
        writer.commit(&digest).await?;
        Ok(digest)
    }

    async fn import_memory(&self, image: &MemoryImage) -> Result<Imported> {
        let mut blobs = HashMap::new();
        for (_, layer) in &image.layers {
            self.write_small(layer).await?;
        }
        let config = self.write_small(&image.config).await?;
        blobs.insert(config, image.config.clone());
        let manifest = self.write_small(&image.manifest).await?;
        blobs.insert(manifest.clone(), image.manifest.clone());
        let target = Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: manifest,
            size: image.manifest.len() as i64,
            annotations: HashMap::new(),
        };
        let name = normalize_reference(&image.name)?;
        self.finish_image(&name, target, &image.labels, &blobs).await
    }

    async fn import_archive(&self, path: &Path, file: File, progress: Arc<Progress>) -> Result<Vec<Imported>> {
        let (tx, mut rx) = mpsc::channel::<Event>(8);
        let reader = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || read_archive(&path, file, progress, tx))
        };
        let consumed = self.consume(&mut rx).await;
        // Stop the reader if we stopped early, then prefer its error (the cause).
        drop(rx);
        let read = reader.await.unwrap_or_else(|e| {
            Err(Error::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        });
        read?;
        let (files, links, blobs) = consumed?;
        let resolve = |p: &str| -> Option<Stored> {
            let mut p = p.trim_start_matches("./").trim_start_matches('/').to_string();
            for _ in 0..16 {
                if let Some(s) = files.get(&p) {
                    return Some(s.clone());
                }
                p = links.get(&p)?.clone();
            }
            None
        };
        let format_err = |message: String| Error::Format {
            path: path.to_path_buf(),
            message,
        };

        let mut images = Vec::new();
        if let Some(index) = blobs.get("index.json") {
            // OCI image layout.
            let index: Value =
                serde_json::from_slice(index).map_err(|e| format_err(format!("index.json is not JSON: {e}")))?;
            let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
            if manifests.is_empty() {
                return Err(format_err("index.json lists no images".into()));
            }
            for m in manifests {
                let target = descriptor(&m).ok_or_else(|| format_err(format!("bad descriptor in index.json: {m}")))?;
                let annotations = &m["annotations"];
                let name = annotations["io.containerd.image.name"].as_str().or_else(|| {
                    annotations["org.opencontainers.image.ref.name"]
                        .as_str()
                        .filter(|r| r.contains(['/', ':']))
                });
                let Some(name) = name else {
                    return Err(format_err(format!(
                        "image {} has no name (annotation io.containerd.image.name)",
                        target.digest
                    )));
                };
                let name = normalize_reference(name)?;
                images.push(self.finish_image(&name, target, &BTreeMap::new(), &blobs).await?);
            }
        } else if let Some(manifest) = blobs.get("manifest.json") {
            // docker save archive: write an image manifest for each entry.
            let entries: Vec<Value> = serde_json::from_slice(manifest)
                .map_err(|e| format_err(format!("manifest.json is not a JSON list: {e}")))?;
            let mut blobs = blobs.clone();
            for entry in entries {
                let config_path = entry["Config"]
                    .as_str()
                    .ok_or_else(|| format_err("manifest.json entry without Config".into()))?;
                let config = resolve(config_path).ok_or_else(|| format_err(format!("{config_path} is missing")))?;
                let mut layers = Vec::new();
                for layer in entry["Layers"].as_array().cloned().unwrap_or_default() {
                    let layer = layer.as_str().unwrap_or_default();
                    let stored = resolve(layer).ok_or_else(|| format_err(format!("layer {layer} is missing")))?;
                    let media_type = match stored.head.as_slice() {
                        [0x1f, 0x8b, ..] => DOCKER_LAYER_GZIP,
                        [0x28, 0xb5, 0x2f, 0xfd, ..] => "application/vnd.oci.image.layer.v1.tar+zstd",
                        _ => DOCKER_LAYER,
                    };
                    layers.push(json!({"mediaType": media_type, "digest": stored.digest, "size": stored.size}));
                }
                let manifest = json!({
                    "schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST,
                    "config": {"mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size},
                    "layers": layers,
                });
                let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
                let digest = self.write_small(&bytes).await?;
                blobs.insert(digest.clone(), bytes.clone());
                let target = Descriptor {
                    media_type: DOCKER_MANIFEST.to_string(),
                    digest,
                    size: bytes.len() as i64,
                    annotations: HashMap::new(),
                };
                let tags = entry["RepoTags"].as_array().cloned().unwrap_or_default();
                if tags.is_empty() {
                    return Err(format_err(format!("image {config_path} has no RepoTags to name it by")));
                }
                for tag in tags {
                    let name = normalize_reference(tag.as_str().unwrap_or_default())?;
                    images.push(
                        self.finish_image(&name, target.clone(), &BTreeMap::new(), &blobs)
                            .await?,
                    );
                }
            }
        } else {
            return Err(format_err(
                "no index.json (OCI image layout) or manifest.json (docker save)".into(),
            ));
        }
        Ok(images)
    }

    /// Reads the archive's events: writes blobs into the content store, keeps small
    /// files in memory. Returns files by path, links, and small contents by path and
    /// by digest.
    #[allow(clippy::type_complexity)]
    async fn consume(
        &self,
        rx: &mut mpsc::Receiver<Event>,
    ) -> Result<(
        HashMap<String, Stored>,
        HashMap<String, String>,
        HashMap<String, Vec<u8>>,
    )> {
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Link { path, target } => {
                    links.insert(path, target);
                }
                Event::File { path, size } => {
                    let layout_meta = matches!(
                        path.as_str(),
                        "index.json" | "oci-layout" | "manifest.json" | "repositories"
                    );
                    let known = path
                        .strip_prefix("blobs/sha256/")
                        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .map(|h| format!("sha256:{}", h.to_ascii_lowercase()));
                    let skip = layout_meta
                        || match &known {
                            Some(d) => self.exists(d).await?,
                            None => false,
                        };
                    let mut writer = match skip {
                        true => None,
                        false => Some(BlobWriter::open(self, known.as_deref()).await?),
                    };
                    let keep = size <= SMALL_BLOB;
                    let mut buffer = Vec::new();
                    let mut head = Vec::new();
                    let digest = loop {
                        match rx.recv().await {
                            Some(Event::Data(data)) => {
                                if head.len() < 8 {
                                    head.extend(data.iter().take(8 - head.len()));
                                }
                                if keep {
                                    buffer.extend_from_slice(&data);
                                }
                                if let Some(w) = writer.as_mut() {
                                    w.write(data).await?;
                                }
                            }
                            Some(Event::End { digest }) => break digest,
                            // The reader failed; its error is reported by the caller.
                            _ => return Ok((files, links, small)),
                        }
                    };
                    if let Some(expected) = &known
                        && *expected != digest
                    {
                        if let Some(w) = writer {
                            w.abort().await;
                        }
                        return Err(Error::Corrupt {
                            digest: expected.clone(),
                            actual: digest,
                        });
                    }
                    if let Some(w) = writer {
                        w.commit(&digest).await?;
                    }
                    if keep {
                        small.insert(path.clone(), buffer.clone());
                        if !layout_meta {
                            small.insert(digest.clone(), buffer);
                        }
                    }
                    files.insert(path, Stored { digest, size, head });
                }
                Event::Data(_) | Event::End { .. } => {}
            }
        }
        Ok((files, links, small))
    }

    /// Labels the target's tree for the garbage collector, creates or updates the
    /// image record, and unpacks the host platform's layers.
    async fn finish_image(
        &self,
        name: &str,
        target: Descriptor,
        labels: &BTreeMap<String, String>,
        blobs: &HashMap<String, Vec<u8>>,
    ) -> Result<Imported> {
        let manifest = self.label_tree(&target, blobs, name).await?;
        let Some((manifest, config_digest)) = manifest else {
            return Err(Error::NoPlatform {
                reference: name.to_string(),
                os: "linux",
                arch: host_arch(),
            });
        };
        self.unpack(&manifest, &config_digest, blobs).await?;

        let mut image_labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        image_labels.insert(CRI_IMAGE_LABEL.to_string(), "managed".to_string());
        let image = api::Image {
            name: name.to_string(),
            labels: image_labels,
            target: Some(target.clone()),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let create = api::CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        };
        match images.create(self.req(create)).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                let update = api::UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into(), "labels".into()],
                    }),
                    source_date_epoch: None,
                };
                images.update(self.req(update)).await.map_err(rpc("update image"))?;
            }
            Err(s) => return Err(rpc("create image")(s)),
        }
        Ok(Imported {
            name: name.to_string(),
            digest: target.digest,
        })
    }

    async fn blob(&self, digest: &str, blobs: &HashMap<String, Vec<u8>>) -> Result<Vec<u8>> {
        match blobs.get(digest) {
            Some(b) => Ok(b.clone()),
            None => self.read_blob(digest).await,
        }
    }

    /// Sets `containerd.io/gc.ref.content.*` labels on the index/manifest under
    /// `target` and returns the host platform's manifest (parsed) with its config
    /// digest, or `None` when the image has none for this platform.
    async fn label_tree(
        &self,
        target: &Descriptor,
        blobs: &HashMap<String, Vec<u8>>,
        name: &str,
    ) -> Result<Option<(Value, String)>> {
        let bad = |message: String| Error::Format {
            path: PathBuf::from(name),
            message,
        };
        let mut chosen = None;
        let mut queue = vec![(target.clone(), true)];
        while let Some((desc, host_platform)) = queue.pop() {
            let data = match self.blob(&desc.digest, blobs).await {
                Ok(d) => d,
                // Other platforms' manifests need not be in the archive.
                Err(Error::MissingBlob(_)) if !host_platform => continue,
                Err(e) => return Err(e),
            };
            let value: Value =
                serde_json::from_slice(&data).map_err(|e| bad(format!("{} is not JSON: {e}", desc.digest)))?;
            let media_type = value["mediaType"].as_str().unwrap_or(&desc.media_type).to_string();
            let mut refs = HashMap::new();
            if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST || value["manifests"].is_array() {
                let manifests = value["manifests"].as_array().cloned().unwrap_or_default();
                let mut picked = false;
                for (i, m) in manifests.iter().enumerate() {
                    let child = descriptor(m).ok_or_else(|| bad(format!("bad descriptor in {}", desc.digest)))?;
                    refs.insert(format!("containerd.io/gc.ref.content.m.{i}"), child.digest.clone());
                    let platform = &m["platform"];
                    let matches =
                        platform.is_null() || (platform["os"] == "linux" && platform["architecture"] == host_arch());
                    let take = host_platform && matches && !picked && chosen.is_none();
                    picked |= take;
                    queue.push((child, take));
                }
            } else {
                let config = value["config"]["digest"]
                    .as_str()
                    .ok_or_else(|| bad(format!("manifest {} has no config", desc.digest)))?
                    .to_string();
                refs.insert("containerd.io/gc.ref.content.config".to_string(), config.clone());
                for (i, l) in value["layers"].as_array().into_iter().flatten().enumerate() {
                    if let Some(d) = l["digest"].as_str() {
                        refs.insert(format!("containerd.io/gc.ref.content.l.{i}"), d.to_string());
                    }
                }
                if host_platform && chosen.is_none() {
                    chosen = Some((value, config));
                }
            }
            self.add_labels(&desc.digest, refs).await?;
        }
        Ok(chosen)
    }

    async fn add_labels(&self, digest: &str, labels: HashMap<String, String>) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let request = api::UpdateRequest {
            info: Some(api::Info {
                digest: digest.to_string(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        self.content()
            .update(self.req(request))
            .await
            .map_err(rpc("content update"))?;
        Ok(())
    }

    /// Unpacks `manifest`'s layers into the snapshotter, one committed snapshot per
    /// chain ID, skipping the ones already there.
    async fn unpack(&self, manifest: &Value, config_digest: &str, blobs: &HashMap<String, Vec<u8>>) -> Result<()> {
        let config: Value =
            serde_json::from_slice(&self.blob(config_digest, blobs).await?).map_err(|e| Error::Format {
                path: PathBuf::from(config_digest),
                message: format!("image config is not JSON: {e}"),
            })?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        let layers: Vec<Descriptor> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(descriptor)
            .collect();
        if layers.len() != diff_ids.len() {
            return Err(Error::Format {
                path: PathBuf::from(config_digest),
                message: format!("{} layers but {} diff_ids", layers.len(), diff_ids.len()),
            });
        }
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mut diff = DiffClient::new(self.channel.clone());
        let mut parent = String::new();
        for (layer, diff_id) in layers.into_iter().zip(diff_ids) {
            let chain = if parent.is_empty() {
                diff_id.clone()
            } else {
                sha256_digest(format!("{parent} {diff_id}").as_bytes())
            };
            let stat = snapshots::StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: chain.clone(),
            };
            match snapshots.stat(self.req(stat)).await {
                Ok(_) => {
                    parent = chain;
                    continue;
                }
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(rpc("snapshot stat")(s)),
            }
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let key = format!("extract-{nanos}-{chain}");
            let prepare = snapshots::PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.clone(),
                parent: parent.clone(),
                labels: HashMap::new(),
            };
            let mounts = snapshots
                .prepare(self.req(prepare))
                .await
                .map_err(rpc("snapshot prepare"))?
                .into_inner()
                .mounts;
            let apply = api::ApplyRequest {
                diff: Some(layer.clone()),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            };
            let applied = diff.apply(self.req(apply)).await;
            let remove = |snapshots: &mut SnapshotsClient<Channel>| {
                let request = self.req(snapshots::RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_string(),
                    key: key.clone(),
                });
                let mut snapshots = snapshots.clone();
                async move {
                    let _ = snapshots.remove(request).await;
                }
            };
            let applied = match applied {
                Ok(r) => r.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    remove(&mut snapshots).await;
                    return Err(rpc("diff apply")(s));
                }
            };
            if applied != diff_id {
                remove(&mut snapshots).await;
                return Err(Error::Corrupt {
                    digest: diff_id,
                    actual: applied,
                });
            }
            let commit = snapshots::CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: chain.clone(),
                key: key.clone(),
                labels: HashMap::new(),
            };
            match snapshots.commit(self.req(commit)).await {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::AlreadyExists => remove(&mut snapshots).await,
                Err(s) => {
                    remove(&mut snapshots).await;
                    return Err(rpc("snapshot commit")(s));
                }
            }
            parent = chain;
        }
        if !parent.is_empty() {
            let label = format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}");
            self.add_labels(config_digest, HashMap::from([(label, parent)])).await?;
        }
        Ok(())
    }
}

fn namespaced<T>(message: T, lease: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let md = request.metadata_mut();
    md.insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(K8S_NAMESPACE),
    );
    if let Some(lease) = lease
        && let Ok(value) = lease.parse()
    {
        md.insert("containerd-lease", value);
    }
    request
}

/// An OCI descriptor from its JSON form.
fn descriptor(v: &Value) -> Option<Descriptor> {
    let digest = v["digest"].as_str()?;
    if !digest.starts_with("sha256:") {
        return None;
    }
    Some(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: digest.to_string(),
        size: v["size"].as_i64()?,
        annotations: v["annotations"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A content store write in progress: one `Write` stream, one request and one
/// response at a time.
struct BlobWriter {
    tx: mpsc::Sender<api::WriteContentRequest>,
    rx: tonic::Streaming<api::WriteContentResponse>,
    reference: String,
    offset: i64,
    channel: Channel,
}

impl BlobWriter {
    async fn open(session: &Session, expected: Option<&str>) -> Result<BlobWriter> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let reference = format!("{}-{}", session.lease, NEXT.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(2);
        let stat = api::WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            expected: expected.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let _ = tx.send(stat).await;
        let mut rx = session
            .content()
            .write(session.req(ReceiverStream::new(rx)))
            .await
            .map_err(rpc("content write"))?
            .into_inner();
        rx.message().await.map_err(rpc("content write"))?;
        Ok(BlobWriter {
            tx,
            rx,
            reference,
            offset: 0,
            channel: session.channel.clone(),
        })
    }

    async fn send(&mut self, request: api::WriteContentRequest) -> Result<api::WriteContentResponse> {
        if self.tx.send(request).await.is_err() {
            // The stream ended: the server's error is in the response stream.
            return match self.rx.message().await {
                Err(s) => Err(rpc("content write")(s)),
                Ok(_) => Err(Error::Containerd {
                    call: "content write",
                    status: "stream closed".into(),
                }),
            };
        }
        match self.rx.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(Error::Containerd {
                call: "content write",
                status: "stream closed".into(),
            }),
            Err(s) => Err(rpc("content write")(s)),
        }
    }

    async fn write(&mut self, data: Vec<u8>) -> Result<()> {
        let len = data.len() as i64;
        let request = api::WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            data,
            ..Default::default()
        };
        self.send(request).await?;
        self.offset += len;
        Ok(())
    }

    async fn commit(mut self, digest: &str) -> Result<()> {
        let request = api::WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            total: self.offset,
            expected: digest.to_string(),
            ..Default::default()
        };
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(Error::Containerd { status, .. }) if status.starts_with("already exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn abort(self) {
        drop(self.tx);
        let mut content = ContentClient::new(self.channel.clone());
        let request = api::AbortRequest {
            r#ref: self.reference.clone(),
        };
        let _ = content.abort(namespaced(request, None)).await;
    }
}

/// Reads the archive (decompressing as its magic bytes say) and sends its files to
/// the importer. Runs on a blocking thread.
fn read_archive(path: &Path, file: File, progress: Arc<Progress>, tx: mpsc::Sender<Event>) -> Result<()> {
    let format = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let read_err = |source: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut counted = std::io::BufReader::with_capacity(256 << 10, Counted { inner: file, progress });
    let magic = {
        use std::io::BufRead;
        counted
            .fill_buf()
            .map_err(read_err)?
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    let reader: Box<dyn Read> = match magic.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(counted)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            ruzstd::decoding::StreamingDecoder::new(counted).map_err(|e| format(format!("bad zstd stream: {e}")))?,
        ),
        _ => Box::new(counted),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format(format!("not a tar archive: {e}")))?;
    let mut saw_entry = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| format(format!("bad tar entry: {e}")))?;
        saw_entry = true;
        let raw = entry.path().map_err(|e| format(format!("bad path: {e}")))?;
        let name = normalize_path(&raw.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Ok(Some(target)) = entry.link_name() else { continue };
            let target = target.to_string_lossy().to_string();
            let target = if kind.is_symlink() && !target.starts_with('/') {
                // Relative to the link's directory.
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                normalize_path(&format!("{dir}/{target}"))
            } else {
                normalize_path(&target)
            };
            if tx.blocking_send(Event::Link { path: name, target }).is_err() {
                return Ok(());
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if tx.blocking_send(Event::File { path: name, size }).is_err() {
            return Ok(());
        }
        let mut hasher = Sha256::new();
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                let n = entry
                    .read(&mut buf[filled..])
                    .map_err(|e| format(format!("truncated archive: {e}")))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            hasher.update(&buf);
            if tx.blocking_send(Event::Data(buf)).is_err() {
                return Ok(());
            }
        }
        let digest = format!("sha256:{}", hex(&hasher.finalize()));
        if tx.blocking_send(Event::End { digest }).is_err() {
            return Ok(());
        }
    }
    if !saw_entry {
        return Err(format("empty or not a tar archive".into()));
    }
    Ok(())
}

/// Archive paths without `./`, leading or doubled slashes, `.` and `..` resolved.
fn normalize_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

struct Counted {
    inner: File,
    progress: Arc<Progress>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// RFC 3339 UTC time with second precision.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_containerd() {
        let n = |s: &str| normalize_reference(s).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(n("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("registry:5000/x/y:2"), "registry:5000/x/y:2");
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(n("kube.local/pause:0.1.0"), "kube.local/pause:0.1.0");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        for bad in ["", "Busybox", "busybox:", "busybox@sha256:12", "a//b", "-x", "x:.bad"] {
            assert!(normalize_reference(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn archive_names() {
        for ok in ["a.tar", "b.tar.gz", "c.TGZ", "d.tar.zst"] {
            assert!(is_archive_name(Path::new(ok)), "{ok}");
        }
        for no in ["a.txt", "tar", "a.tar.bz2", "a.zip"] {
            assert!(!is_archive_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn sizes_print_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
    }

    #[test]
    fn list_table_splits_repository_and_tag() {
        let images = vec![k8s_cri::v1::Image {
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_tags: vec!["registry:5000/x:1".into(), "docker.io/library/busybox:latest".into()],
            size: 1_234_567,
            ..Default::default()
        }];
        let table = format_list(&images);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("REPOSITORY"), "{table}");
        assert!(lines[1].starts_with("registry:5000/x "), "{table}");
        assert!(lines[1].contains(" 1 ") && lines[1].contains("ababababababa") && lines[1].ends_with("1.23MB"));
        assert!(lines[2].starts_with("docker.io/library/busybox") && lines[2].contains("latest"));
    }

    #[test]
    fn paths_and_times() {
        assert_eq!(normalize_path("./blobs//sha256/x"), "blobs/sha256/x");
        assert_eq!(normalize_path("a/b/../c"), "a/c");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59Z"
        );
    }

    #[test]
    fn memory_image_is_consistent() {
        let image = MemoryImage::oci("x", "amd64", json!({"Entrypoint": ["/x"]}), b"layer".to_vec());
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], sha256_digest(&image.config));
        assert_eq!(manifest["layers"][0]["digest"], sha256_digest(b"layer"));
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(b"layer"));
    }
}
