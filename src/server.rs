//! `kube server`: wires the control plane. For now that is the store and its etcd
//! endpoint; it owns the data dir (one server per data dir, enforced with a lock)
//! and shuts everything down in order on SIGTERM/SIGINT.

use anyhow::{Context, bail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::etcd;
use crate::store::{self, Store};

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Where the server keeps its state.
    #[arg(long, env = "KUBE_DATA_DIR", default_value = "/var/lib/kube")]
    pub data_dir: PathBuf,
    /// Address of the etcd v3 endpoint (loopback only).
    #[arg(long, env = "KUBE_ETCD_LISTEN_ADDRESS", default_value = "127.0.0.1:2379")]
    pub etcd_listen_address: SocketAddr,
    /// Do not serve the etcd endpoint.
    #[arg(long, env = "KUBE_DISABLE_ETCD_ENDPOINT")]
    pub disable_etcd_endpoint: bool,
    /// `full` fsyncs every commit (no acknowledged write lost on power loss);
    /// `normal` only survives a crash of the process.
    #[arg(long, env = "KUBE_DATASTORE_SYNC", value_enum, default_value_t = store::Sync::Full)]
    pub datastore_sync: store::Sync,
}

/// The store's database inside a data dir.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir).with_context(|| format!("cannot create data dir {}", server_dir.display()))?;
    let _lock = lock_data_dir(&server_dir.join("kube.lock"), &args.data_dir)?;

    // Bind before opening anything, so a bad address has no side effects.
    let etcd_listener = match args.disable_etcd_endpoint {
        true => None,
        false => Some(etcd::bind(args.etcd_listen_address).await?),
    };

    let db = database_path(&args.data_dir);
    let store = {
        let path = db.clone();
        let options = store::Options {
            sync: args.datastore_sync,
        };
        tokio::task::spawn_blocking(move || Store::open(&path, options))
            .await?
            .with_context(|| format!("cannot open the store at {}", db.display()))?
    };
    tracing::info!(path = %db.display(), revision = store.revision(), "store open");

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(store.clone().run(shutdown.clone()));

    let etcd_task = etcd_listener.map(|listener| tasks.spawn(etcd::serve(store.clone(), listener, shutdown.clone())));

    let failed = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            None
        }
        result = async {
            match etcd_task {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("etcd endpoint stopped unexpectedly"),
            Ok(Err(err)) => err.into(),
            Err(err) => err.into(),
        }),
    };

    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    close(store).await;
    tracing::info!("stopped");
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

async fn close(store: Store) {
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Takes the data dir's exclusive lock (released when the file is closed, even
/// on `kill -9`) and records our pid in it.
fn lock_data_dir(path: &Path, data_dir: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        let who = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        bail!(
            "another kube server{who} is already running with data dir {}",
            data_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}
