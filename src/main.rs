//! The `kube` command line: one subcommand per job, each handing off to one
//! function of the library.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use kubebox::{config, kubelet, server, store};

#[derive(Parser)]
#[command(name = "kube", version, about = "A whole Kubernetes cluster in one binary")]
struct Cli {
    /// YAML file whose keys are flag names (command line and KUBE_* win over it).
    #[arg(long, global = true, env = "KUBE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, global = true, env = "KUBE_DEBUG")]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the server's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the store and its etcd v3 endpoint.
    Server(Box<server::ServerArgs>),
    /// Save or restore snapshots of the server's store.
    #[command(subcommand)]
    EtcdSnapshot(SnapshotCommand),
    /// Import and list the node's container images (no registry needed).
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import image archives (OCI layout or `docker save`; .tar, .tar.gz or .tar.zst)
    /// into the node's containerd.
    Import {
        #[command(flatten)]
        runtime: RuntimeFlags,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the node's images, as `crictl images` does.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        runtime: RuntimeFlags,
    },
}

/// Which runtime `kube image` talks to: the node's own containerd in the data dir,
/// or `--container-runtime-endpoint`.
#[derive(clap::Args)]
struct RuntimeFlags {
    #[arg(long, env = "KUBE_DATA_DIR", default_value = "/var/lib/kube")]
    data_dir: PathBuf,
    /// The CRI socket of an existing containerd.
    #[arg(long, env = "KUBE_CONTAINER_RUNTIME_ENDPOINT", value_name = "SOCKET")]
    container_runtime_endpoint: Option<String>,
}

impl RuntimeFlags {
    fn socket(&self) -> PathBuf {
        match &self.container_runtime_endpoint {
            Some(e) => PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)),
            None => kubelet::containerd::Paths::new(&self.data_dir).socket,
        }
    }
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Write a consistent snapshot of the store (the server may be running).
    Save {
        #[arg(long, env = "KUBE_DATA_DIR", default_value = "/var/lib/kube")]
        data_dir: PathBuf,
        /// Output file [default: <data-dir>/server/db/snapshots/snapshot-<unix time>].
        file: Option<PathBuf>,
    },
    /// Restore a snapshot into a data dir that has no store yet.
    Restore {
        #[arg(long, env = "KUBE_DATA_DIR", default_value = "/var/lib/kube")]
        data_dir: PathBuf,
        /// Snapshot written by `kube etcd-snapshot save` or `etcdctl snapshot save`.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kube: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates its own heap arena (up to 8 per core), and
/// memory freed in one arena is never reused by another: after a burst spread over the
/// runtime's threads the process keeps many half-empty heaps (bench-store: 74 MB after
/// its run with glibc's default, 36 MB with one arena per core). A single arena keeps
/// even less (32 MB) but makes the threads queue on its lock (bench-control-plane: 908
/// instead of 1,317 pods bound/s), so: one arena per core. Must run before any thread
/// starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: called first in main, before any other thread exists; mallopt only
        // sets an allocator tunable.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores as libc::c_int);
        }
    }
}

fn run() -> anyhow::Result<()> {
    let command = Cli::command();
    let args = config::merge_config_file(std::env::args_os().collect(), &command)?;
    let matches = command.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.debug);

    match cli.command {
        Command::Server(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
                .max_blocking_threads(16)
                .enable_all()
                .build()?;
            runtime.block_on(server::run(*args))
        }
        Command::Image(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match command {
                ImageCommand::Import { runtime: flags, files } => {
                    runtime.block_on(kubelet::images::import_command(&flags.socket(), &files))
                }
                ImageCommand::Ls { runtime: flags } => runtime.block_on(kubelet::images::list_command(&flags.socket())),
            }
        }
        Command::EtcdSnapshot(SnapshotCommand::Save { data_dir, file }) => {
            let file = match file {
                Some(f) => f,
                None => {
                    let dir = data_dir.join("server/db/snapshots");
                    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                    dir.join(format!("snapshot-{}", now.as_secs()))
                }
            };
            let revision = store::snapshot::save(&server::database_path(&data_dir), &file)?;
            println!("Snapshot saved to {} at revision {revision}", file.display());
            Ok(())
        }
        Command::EtcdSnapshot(SnapshotCommand::Restore { data_dir, file }) => {
            let revision = store::snapshot::restore(&file, &server::database_path(&data_dir))?;
            println!(
                "Snapshot {} restored into {} at revision {revision}",
                file.display(),
                data_dir.display()
            );
            Ok(())
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
