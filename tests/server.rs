//! The `kube server` and `kube etcd-snapshot` processes as an operator meets them:
//! one server per data dir, clean stop on SIGTERM/SIGINT, flags from the command line,
//! `KUBE_*` environment variables and the YAML config file, the loopback-only etcd
//! endpoint, and online snapshot save/restore.

mod common;

use base64::Engine;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::{Out, Server, eventually, free_port, grpc, int, json, kube, kube_command, run_timeout, write_file};
use kubebox::etcd::proto::etcdserverpb::{PutRequest, RangeRequest};

const EXIT_WAIT: Duration = Duration::from_secs(10);

fn state_db(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// `kube server ARGS` that is expected to give up: its result within 10 s.
#[track_caller]
fn server_fails(args: &[&str]) -> Out {
    let out = run_timeout(kube_command().arg("server").args(args), EXIT_WAIT)
        .unwrap_or_else(|| panic!("`kube server {}` kept running", args.join(" ")));
    assert!(
        !out.status.success(),
        "`kube server {}` exited 0:\n{}",
        args.join(" "),
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "panic: {}", out.stderr);
    out
}

/// Error lines of a failed command, leaving out ordinary INFO/DEBUG log lines.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.contains(" INFO ") || l.contains(" DEBUG ") || l.contains(" TRACE ")))
        .collect()
}

#[test]
fn second_server_on_same_data_dir_is_refused() {
    let mut a = Server::start();
    a.etcdctl(&["put", "k", "v"]).ok();
    let data_dir = a.data_dir.to_str().unwrap().to_string();
    let other = format!("127.0.0.1:{}", free_port());
    let args = ["--data-dir", &data_dir, "--etcd-listen-address", &other];

    let out = server_fails(&args);
    assert!(out.stderr.contains("already running"), "stderr: {}", out.stderr);
    // The first server was not disturbed.
    assert_eq!(a.etcdctl(&["get", "k"]).ok(), "k\nv\n");
    a.etcdctl(&["put", "k2", "v2"]).ok();

    // A kill -9 leaves no stale lock behind: the same dir starts again, and is
    // again guarded.
    a.restart();
    assert_eq!(a.etcdctl(&["get", "k2"]).ok(), "k2\nv2\n");
    let out = server_fails(&args);
    assert!(out.stderr.contains("already running"), "stderr: {}", out.stderr);
}

#[test]
fn sigterm_and_sigint_stop_cleanly() {
    let mut s = Server::start();
    s.etcdctl(&["put", "k", "v"]).ok();
    let status = s.signal_and_wait("TERM", Duration::from_secs(5));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "SIGTERM: want exit 0 within 5 s"
    );

    // Also with a watch stream open, which a graceful shutdown must not wait for.
    s.spawn();
    s.wait_ready();
    assert_eq!(s.etcdctl(&["get", "k"]).ok(), "k\nv\n");
    let mut watch = s.etcdctl_stream(&["watch", "--prefix", "w/"]);
    let mut i = 0;
    assert!(
        eventually(Duration::from_secs(10), || {
            i += 1;
            s.etcdctl(&["put", "w/x", &i.to_string()]).ok();
            watch.next_line(Duration::from_millis(300)).is_some()
        }),
        "watch never saw a put"
    );
    let status = s.signal_and_wait("TERM", Duration::from_secs(5));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "SIGTERM with an open watch: want exit 0 within 5 s"
    );

    s.spawn();
    s.wait_ready();
    assert_eq!(s.etcdctl(&["get", "w/x"]).ok(), format!("w/x\n{i}\n"));
    let status = s.signal_and_wait("INT", Duration::from_secs(5));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "SIGINT: want exit 0 within 5 s"
    );
}

#[test]
fn sigterm_with_open_lease_keepalive_stream() {
    let mut s = Server::start();
    let grant = s.etcdctl(&["lease", "grant", "60"]).ok();
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    // `etcdctl lease keep-alive` keeps a LeaseKeepAlive stream open until killed.
    let mut keepalive = s.etcdctl_stream(&["lease", "keep-alive", &lease]);
    assert_eq!(
        keepalive.next_line(Duration::from_secs(10)),
        Some(format!("lease {lease} keepalived with TTL(60)"))
    );
    let status = s.signal_and_wait("TERM", Duration::from_secs(5));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "SIGTERM with an open lease keep-alive stream: want exit 0 within 5 s"
    );
}

#[test]
fn config_file_sets_flags() {
    let mut s = Server::bare(&[]);
    let config = write_file(
        s.dir.path(),
        "config.yaml",
        &format!(
            "# comments are fine\ndata-dir: {}\netcd-listen-address: 127.0.0.1:{}\ndatastore-sync: normal\n",
            s.data_dir.display(),
            s.port
        ),
    );
    s.args(&["--config", config.to_str().unwrap()]);
    s.spawn();
    s.wait_ready();
    // The etcd port answers before the store is opened.
    assert!(
        eventually(Duration::from_secs(10), || state_db(&s.data_dir).exists()),
        "no database under the configured data dir"
    );
    s.etcdctl(&["put", "from", "config"]).ok();
    assert_eq!(s.etcdctl(&["get", "from"]).ok(), "from\nconfig\n");
}

#[test]
fn kube_env_vars_set_flags() {
    let mut s = Server::bare(&[]);
    let data_dir = s.data_dir.to_str().unwrap().to_string();
    let endpoint = s.endpoint();
    s.env("KUBE_DATA_DIR", &data_dir)
        .env("KUBE_ETCD_LISTEN_ADDRESS", &endpoint)
        .env("KUBE_DATASTORE_SYNC", "full");
    s.spawn();
    s.wait_ready();
    // The etcd port answers before the store is opened.
    assert!(
        eventually(Duration::from_secs(10), || state_db(&s.data_dir).exists()),
        "no database under KUBE_DATA_DIR"
    );
    s.etcdctl(&["put", "from", "env"]).ok();
    assert_eq!(s.etcdctl(&["get", "from"]).ok(), "from\nenv\n");
}

#[test]
fn kube_config_env_var_names_the_config_file() {
    let mut s = Server::bare(&[]);
    let config = write_file(
        s.dir.path(),
        "config.yaml",
        &format!(
            "data-dir: {}\netcd-listen-address: 127.0.0.1:{}\n",
            s.data_dir.display(),
            s.port
        ),
    );
    s.env("KUBE_CONFIG", config.to_str().unwrap());
    s.spawn();
    s.wait_ready();
    // The etcd port answers before the store is opened.
    assert!(eventually(Duration::from_secs(10), || state_db(&s.data_dir).exists()));
}

#[test]
fn command_line_flag_beats_config_file() {
    // As in k3s: the config file gives defaults, flags override them.
    let config_port = free_port();
    let mut s = Server::new(&[]);
    let config = write_file(
        s.dir.path(),
        "config.yaml",
        &format!("etcd-listen-address: 127.0.0.1:{config_port}\n"),
    );
    s.args(&["--config", config.to_str().unwrap()]);
    s.spawn();
    s.wait_ready(); // on the flag's port
    assert!(!port_answers(config_port), "also listening on the config file's port");
}

#[test]
fn kube_env_var_beats_config_file() {
    let config_port = free_port();
    let mut s = Server::bare(&[]);
    let config = write_file(
        s.dir.path(),
        "config.yaml",
        &format!(
            "data-dir: {}\netcd-listen-address: 127.0.0.1:{config_port}\n",
            s.data_dir.display()
        ),
    );
    let endpoint = s.endpoint();
    s.args(&["--config", config.to_str().unwrap()])
        .env("KUBE_ETCD_LISTEN_ADDRESS", &endpoint);
    s.spawn();
    s.wait_ready(); // on the env var's port
    assert!(!port_answers(config_port), "also listening on the config file's port");
}

#[test]
fn unknown_config_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "config.yaml",
        &format!(
            "data-dir: {}\netcd-listen-address: 127.0.0.1:{}\nno-such-option: 1\n",
            dir.path().join("data").display(),
            free_port()
        ),
    );
    let out = server_fails(&["--config", config.to_str().unwrap()]);
    assert!(out.stderr.contains("no-such-option"), "stderr: {}", out.stderr);
}

#[test]
fn bad_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for addr in [format!("0.0.0.0:{}", free_port()), format!("[::]:{}", free_port())] {
        let out = server_fails(&["--data-dir", data, "--etcd-listen-address", &addr]);
        assert!(!out.stderr.trim().is_empty(), "no error message for {addr}");
    }
    let local = format!("127.0.0.1:{}", free_port());
    server_fails(&[
        "--data-dir",
        data,
        "--etcd-listen-address",
        &local,
        "--datastore-sync",
        "sometimes",
    ]);
    server_fails(&["--data-dir", data, "--etcd-listen-address", &local, "--no-such-flag"]);
    server_fails(&["--data-dir", data, "--etcd-listen-address", "not-an-address"]);
}

#[test]
fn datastore_sync_normal_works() {
    let s = Server::start_with(&["--datastore-sync", "normal"]);
    s.etcdctl(&["put", "k", "v"]).ok();
    assert_eq!(s.etcdctl(&["get", "k"]).ok(), "k\nv\n");
}

#[test]
fn disable_etcd_endpoint() {
    let mut s = Server::new(&["--disable-etcd-endpoint"]);
    s.spawn();
    let db = state_db(&s.data_dir);
    assert!(
        eventually(Duration::from_secs(20), || db.exists()),
        "store never opened:\n{}",
        s.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        s.wait_exit(Duration::from_millis(100)).is_none(),
        "server exited:\n{}",
        s.log_text()
    );
    assert!(!port_answers(s.port), "etcd endpoint listening although disabled");
    let status = s.signal_and_wait("TERM", Duration::from_secs(5));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

#[test]
fn help_lists_the_documented_commands_and_flags() {
    let help = kube(&["server", "--help"]).ok();
    for flag in [
        "--data-dir",
        "--etcd-listen-address",
        "--datastore-sync",
        "--disable-etcd-endpoint",
        "--config",
    ] {
        assert!(help.contains(flag), "`kube server --help` lacks {flag}:\n{help}");
    }
    let help = kube(&["etcd-snapshot", "--help"]).ok();
    for cmd in ["save", "restore"] {
        assert!(help.contains(cmd), "`kube etcd-snapshot --help` lacks {cmd}:\n{help}");
    }
}

/// All keys with their metadata (not the header) as etcdctl prints them.
/// The test's own keys (the API server keeps its objects under /registry/ and
/// refreshes some of them, such as the kubernetes Endpoints, when it starts) and
/// the store revision.
fn dump(s: &Server) -> (serde_json::Value, i64) {
    let v = json(&s.etcdctl(&["get", "", "--prefix", "-w", "json"]).ok());
    let registry = base64::engine::general_purpose::STANDARD.encode("/registry/");
    let ours: Vec<serde_json::Value> = v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| !kv["key"].as_str().unwrap_or_default().starts_with(&registry[..12]))
        .collect();
    (serde_json::Value::Array(ours), int(&v, "/header/revision"))
}

/// The revision `kube etcd-snapshot restore` reports for what it restored.
fn restored_revision(out: Out) -> i64 {
    let text = out.ok();
    text.trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {text:?}"))
}

fn snapshot_save(data_dir: &Path, file: &Path) -> Out {
    run_timeout(
        kube_command()
            .args(["etcd-snapshot", "save", "--data-dir"])
            .arg(data_dir)
            .arg(file),
        Duration::from_secs(60),
    )
    .expect("etcd-snapshot save hung")
}

fn snapshot_restore(data_dir: &Path, file: &Path) -> Out {
    run_timeout(
        kube_command()
            .args(["etcd-snapshot", "restore", "--data-dir"])
            .arg(data_dir)
            .arg(file),
        Duration::from_secs(60),
    )
    .expect("etcd-snapshot restore hung")
}

#[test]
fn snapshot_save_while_running_then_restore() {
    let a = Server::start();
    for i in 0..20 {
        a.etcdctl(&["put", &format!("k/{i:02}"), &format!("v{i}")]).ok();
    }
    let out = a.etcdctl(&["put", "x", "1", "-w", "json"]).ok();
    let x1 = int(&json(&out), "/header/revision");
    a.etcdctl(&["put", "x", "2"]).ok();
    a.etcdctl(&["del", "k/05"]).ok();
    let grant = a.etcdctl(&["lease", "grant", "3600"]).ok();
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    a.etcdctl(&["put", "leased", "yes", &format!("--lease={lease}")]).ok();
    let (kvs, rev) = dump(&a);

    let file = a.dir.path().join("snap.db");
    snapshot_save(&a.data_dir, &file).ok();
    let size = fs::metadata(&file).expect("snapshot file").len();
    assert!(size > 0, "empty snapshot");
    // The source keeps running and serving.
    a.etcdctl(&["put", "after-snapshot", "1"]).ok();

    let mut b = Server::new(&[]);
    let restored = restored_revision(snapshot_restore(&b.data_dir, &file));
    assert!(state_db(&b.data_dir).exists(), "restore wrote no database");
    assert_eq!(restored, rev, "restored store revision");
    b.spawn();
    b.wait_ready();
    let (kvs_b, rev_b) = dump(&b);
    assert_eq!(kvs_b, kvs, "restored keys differ (values or revisions)");
    assert!(rev_b >= rev, "the revision went back");
    assert_eq!(b.etcdctl(&["get", "after-snapshot"]).ok(), "");
    assert_eq!(b.etcdctl(&["get", "x", &format!("--rev={x1}")]).ok(), "x\n1\n");
    // Leases come along with their keys.
    let ttl = b.etcdctl(&["lease", "timetolive", &lease, "--keys"]).ok();
    assert!(
        ttl.contains("granted with TTL(3600s)") && ttl.contains("[leased]"),
        "{ttl}"
    );
    // And the restored server takes writes, continuing the revision sequence.
    let out = b.etcdctl(&["put", "new", "1", "-w", "json"]).ok();
    assert_eq!(int(&json(&out), "/header/revision"), rev_b + 1);

    // A data dir that already has a database is refused, running or not.
    let err = snapshot_restore(&b.data_dir, &file).err();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(b.etcdctl(&["get", "new"]).ok(), "new\n1\n", "refused restore hurt b");
    let err = snapshot_restore(&a.data_dir, &file).err();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(a.etcdctl(&["get", "after-snapshot"]).ok(), "after-snapshot\n1\n");
}

/// The value of the i-th sequential write: its number, padded to 2 KiB.
fn value(i: i64) -> Vec<u8> {
    format!("{i:-<2048}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_writes_is_consistent() {
    // No control-plane loops: their writes would interleave with the numbered puts.
    let a = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    let mut kv = grpc::kv(&a.url()).await;
    let acked = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                kv.put(PutRequest {
                    key: format!("seq/{i:08}").into_bytes(),
                    value: value(i),
                    ..Default::default()
                })
                .await
                .expect("put during snapshot");
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
        })
    };
    // A few MB of data, so the copy takes a while and overlaps the writes.
    while acked.load(Ordering::Relaxed) < 2000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = acked.load(Ordering::Relaxed);
    let file = a.dir.path().join("snap.db");
    let data_dir = a.data_dir.clone();
    let f = file.clone();
    let out = tokio::task::spawn_blocking(move || snapshot_save(&data_dir, &f))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    out.ok();
    let during = acked.load(Ordering::Relaxed) - before;
    eprintln!("{before} puts before the snapshot, {during} while it ran");

    let mut b = Server::new(&[]);
    let restored = restored_revision(snapshot_restore(&b.data_dir, &file));
    b.spawn();
    b.wait_ready();
    let mut kv = grpc::kv(&b.url()).await;
    let resp = kv
        .range(RangeRequest {
            key: b"seq/".to_vec(),
            range_end: b"seq0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let n = resp.kvs.len() as i64;
    assert!(
        n >= before,
        "snapshot has {n} keys, {before} were acknowledged before it"
    );
    let first_rev = resp.kvs[0].mod_revision;
    for (i, kv) in resp.kvs.iter().enumerate() {
        let i = i as i64;
        assert_eq!(kv.key, format!("seq/{i:08}").into_bytes(), "hole in the snapshot");
        assert_eq!(kv.value, value(i));
        assert_eq!(kv.mod_revision, first_rev + i, "revisions not contiguous");
    }
    assert_eq!(
        restored,
        first_rev + n - 1,
        "snapshot revision does not match its last write"
    );
}

#[test]
fn corrupt_snapshots_are_refused() {
    let a = Server::start();
    for i in 0..200 {
        // Enough data for a multi-page database.
        a.etcdctl(&["put", &format!("k/{i:03}"), &"v".repeat(500)]).ok();
    }
    let good = a.dir.path().join("good.db");
    snapshot_save(&a.data_dir, &good).ok();
    let bytes = fs::read(&good).unwrap();
    assert!(bytes.len() > 8192, "snapshot only {} bytes", bytes.len());

    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 0xff;
    let garbage: Vec<u8> = (0..bytes.len()).map(|i| (i * 7919 % 251) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated to half", bytes[..bytes.len() / 2].to_vec()),
        ("truncated by one byte", bytes[..bytes.len() - 1].to_vec()),
        ("one byte flipped in the middle", flipped),
        ("garbage", garbage),
        ("empty", Vec::new()),
    ];
    for (i, (name, content)) in cases.into_iter().enumerate() {
        let file = a.dir.path().join(format!("bad-{i}.db"));
        fs::write(&file, content).unwrap();
        let target = a.dir.path().join(format!("restore-{i}"));
        let out = snapshot_restore(&target, &file);
        assert!(!out.status.success(), "{name} snapshot was restored:\n{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
        let errors = error_lines(&out.stderr);
        assert_eq!(errors.len(), 1, "{name}: want a one-line error, got:\n{}", out.stderr);
        // Nothing half-restored is left behind: the same dir takes a good snapshot.
        snapshot_restore(&target, &good).ok();
    }
    let out = snapshot_restore(&a.dir.path().join("restore-x"), &a.dir.path().join("missing.db"));
    assert!(!out.status.success(), "restore of a missing file succeeded");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn etcdctl_snapshot_restores_and_save_has_a_default_path() {
    let a = Server::start();
    for i in 0..10 {
        a.etcdctl(&["put", &format!("e/{i}"), &format!("v{i}")]).ok();
    }
    let (kvs, rev) = dump(&a);

    // `etcdctl snapshot save` (the Maintenance.Snapshot stream) restores with kube.
    let file = a.dir.path().join("etcdctl.db");
    a.etcdctl(&["snapshot", "save", file.to_str().unwrap()]).ok();
    let mut b = Server::new(&[]);
    assert_eq!(restored_revision(snapshot_restore(&b.data_dir, &file)), rev);
    b.spawn();
    b.wait_ready();
    assert_eq!(dump(&b).0, kvs, "restored from etcdctl's snapshot");

    // Without a file name, save writes under <data-dir>/server/db/snapshots/.
    let out = run_timeout(
        kube_command()
            .args(["etcd-snapshot", "save", "--data-dir"])
            .arg(&a.data_dir),
        Duration::from_secs(60),
    )
    .expect("etcd-snapshot save hung");
    out.ok();
    let dir = a.data_dir.join("server/db/snapshots");
    let files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(fs::metadata(&files[0]).unwrap().len() > 0);
}
