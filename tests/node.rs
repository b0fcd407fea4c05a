//! The node agent of `kube server` on a real containerd: registration, heartbeat and
//! status, the sandbox and airgap images, `kube image`, containerd supervision and
//! restart safety. Each test runs its own server with its own containerd, bridge and
//! pod range ([`AgentServer`]), cleaned up even on failure.
//!
//! Needs root, containerd, runc, the CNI plugins, busybox-static and zstd
//! (`scripts/install-deps`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::{AgentServer, build_busybox_image, condition};
use common::{eventually, kube, run};

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn kube_image(agent: &AgentServer, args: &[&str]) -> common::Out {
    let data_dir = agent.data_dir.to_string_lossy().to_string();
    let mut all = vec!["image"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", &data_dir]);
    kube(&all)
}

/// `kube image ls` rows as (repository, tag).
fn image_rows(agent: &AgentServer) -> Vec<(String, String)> {
    let out = kube_image(agent, &["ls"]).ok();
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect()
}

#[test]
fn node_becomes_ready_with_labels_capacity_and_info() {
    let started = Instant::now();
    let agent = AgentServer::start(&["--node-name", "Node-One"]);
    let node = agent.wait_node_ready("node-one", Duration::from_secs(30));
    eprintln!("node Ready {:?} after spawn", started.elapsed());

    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node-one");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");

    let status = &node["status"];
    let cpus = std::thread::available_parallelism().unwrap().get().to_string();
    assert_eq!(status["capacity"]["cpu"], cpus.as_str());
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["allocatable"]["pods"], "110");
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert_eq!(status["capacity"]["memory"], format!("{mem_kb}Ki").as_str());
    assert!(
        status["capacity"]["ephemeral-storage"]
            .as_str()
            .unwrap()
            .ends_with("Ki")
    );
    for kind in ["MemoryPressure", "PIDPressure"] {
        assert_eq!(condition(&node, kind), Some("False"), "{kind}: {status}");
    }
    assert!(condition(&node, "DiskPressure").is_some());

    let info = &status["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://1."),
        "{info}"
    );
    let version = common::json(&agent.kubectl(&["version", "-o", "json"]).ok());
    assert_eq!(info["kubeletVersion"], version["serverVersion"]["gitVersion"]);
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(info["architecture"], "amd64");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(info["bootID"], boot_id.trim());
    assert!(!info["kernelVersion"].as_str().unwrap().is_empty());
    assert!(!info["osImage"].as_str().unwrap().is_empty());
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], agent.kubelet_port);
    let addresses = status["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "Hostname" && a["address"] == "node-one")
    );
    assert!(addresses.iter().any(|a| a["type"] == "InternalIP"));
    let images: Vec<String> = status["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        images.iter().any(|n| n == "docker.io/library/busybox:latest"),
        "{images:?}"
    );

    // The pod range is inside the cluster range, and the CNI config uses it.
    let pod_cidr = node["spec"]["podCIDR"].as_str().unwrap();
    let prefix = agent.cluster_cidr.trim_end_matches(".0.0/16");
    assert!(pod_cidr.starts_with(prefix) && pod_cidr.ends_with("/24"), "{pod_cidr}");
    let conflist = agent.data_dir.join("agent/etc/cni/net.d/10-kube.conflist");
    let conflist = common::json(&std::fs::read_to_string(conflist).unwrap());
    assert_eq!(conflist["plugins"][0]["bridge"], agent.bridge.as_str());
    assert_eq!(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], pod_cidr);

    // The heartbeat Lease, owned by the Node.
    let lease = common::json(
        &agent
            .kubectl(&["get", "lease", "-n", "kube-node-lease", "node-one", "-o", "json"])
            .ok(),
    );
    assert_eq!(lease["spec"]["holderIdentity"], "node-one");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], node["metadata"]["uid"]);

    // At idle, the node writes only its Lease: the Node's resourceVersion stays put
    // across a Lease renewal.
    let before = agent.node_json("node-one").unwrap()["metadata"]["resourceVersion"].clone();
    let renewed = lease["spec"]["renewTime"].clone();
    let renewed_again = eventually(Duration::from_secs(15), || {
        let l = agent.kubectl(&["get", "lease", "-n", "kube-node-lease", "node-one", "-o", "json"]);
        common::json(&l.ok())["spec"]["renewTime"] != renewed
    });
    assert!(renewed_again, "the Lease was not renewed within 15 s");
    let after = agent.node_json("node-one").unwrap()["metadata"]["resourceVersion"].clone();
    assert_eq!(before, after, "the Node was rewritten although nothing changed");
}

#[test]
fn images_are_imported_listed_and_bad_files_rejected() {
    let agent = AgentServer::start(&["--node-name", "images-node"]);
    // Images are imported before the node registers.
    agent.wait_node_ready("images-node", Duration::from_secs(30));
    // The airgap archive placed before start is there, and so is the sandbox image.
    let rows = image_rows(&agent);
    assert!(
        rows.contains(&("docker.io/library/busybox".into(), "latest".into())),
        "{rows:?}"
    );
    assert!(rows.iter().any(|(repo, _)| repo == "kube.local/pause"), "{rows:?}");
    let table = kube_image(&agent, &["ls"]).ok();
    assert!(table.starts_with("REPOSITORY"), "{table}");
    let pinned = agent.ctr(&["images", "ls"]).ok();
    assert!(pinned.contains("io.cri-containerd.pinned=pinned"), "{pinned}");

    // By hand: gzip and zstd compressed archives, with their own references.
    let dir = agent.dir.path();
    let gz = dir.join("extra.tar");
    build_busybox_image(&gz, Some("example.com/tools/box:1.0"));
    assert!(run(Command::new("gzip").arg(&gz)).status.success());
    let zst = dir.join("other.tar");
    build_busybox_image(&zst, Some("registry.local:5000/box"));
    assert!(
        run(Command::new("zstd").args(["-q", "--rm"]).arg(&zst))
            .status
            .success()
    );
    let out = kube_image(
        &agent,
        &[
            "import",
            &dir.join("extra.tar.gz").to_string_lossy(),
            &dir.join("other.tar.zst").to_string_lossy(),
        ],
    );
    let stderr = out.stderr.clone();
    out.ok();
    assert!(stderr.contains("imported example.com/tools/box:1.0"), "{stderr}");
    let rows = image_rows(&agent);
    assert!(
        rows.contains(&("example.com/tools/box".into(), "1.0".into())),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("registry.local:5000/box".into(), "latest".into())),
        "{rows:?}"
    );

    // A `docker save` archive of the same image (manifest.json, <id>.json, <id>/layer.tar).
    let docker = dir.join("docker-save");
    std::fs::create_dir_all(docker.join("layer")).unwrap();
    let oci = dir.join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    let source = dir.join("source.tar");
    build_busybox_image(&source, None);
    assert!(
        run(Command::new("tar").arg("-xf").arg(&source).arg("-C").arg(&oci))
            .status
            .success()
    );
    let blob = |digest: &str| oci.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index = common::json(&std::fs::read_to_string(oci.join("index.json")).unwrap());
    let manifest =
        common::json(&std::fs::read_to_string(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap());
    std::fs::copy(
        blob(manifest["config"]["digest"].as_str().unwrap()),
        docker.join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        blob(manifest["layers"][0]["digest"].as_str().unwrap()),
        docker.join("layer/layer.tar"),
    )
    .unwrap();
    std::fs::write(
        docker.join("manifest.json"),
        r#"[{"Config":"config.json","RepoTags":["dockerbox:2"],"Layers":["layer/layer.tar"]}]"#,
    )
    .unwrap();
    let archive = dir.join("docker-save.tar");
    assert!(
        run(Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&docker)
            .arg("."))
        .status
        .success()
    );
    kube_image(&agent, &["import", &archive.to_string_lossy()]).ok();
    let rows = image_rows(&agent);
    assert!(
        rows.contains(&("docker.io/library/dockerbox".into(), "2".into())),
        "{rows:?}"
    );
    let out = agent.ctr(&[
        "run",
        "--rm",
        "docker.io/library/dockerbox:2",
        "kube-node-test-docker",
        "echo",
        "docker",
    ]);
    assert_eq!(out.ok().trim(), "docker");

    // The imported image is unpacked: a container runs from it at once.
    let out = agent.ctr(&[
        "run",
        "--rm",
        "example.com/tools/box:1.0",
        "kube-node-test-run",
        "echo",
        "hello",
    ]);
    assert_eq!(out.ok().trim(), "hello");

    // Bad files: a non-zero exit and one line naming the file.
    let junk = common::write_file(dir, "junk.tar", "this is not a tar archive at all");
    for (file, expect) in [
        (junk.to_string_lossy().to_string(), "junk.tar"),
        (dir.join("missing.tar").to_string_lossy().to_string(), "missing.tar"),
    ] {
        let out = kube_image(&agent, &["import", &file]);
        let err = out.err();
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("kube: ") && last.contains(expect), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An archive whose blob does not match its digest is refused.
    let corrupt = dir.join("corrupt.tar");
    build_busybox_image(&corrupt, Some("docker.io/library/corrupt:1"));
    let tampered = dir.join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    assert!(
        run(Command::new("tar").arg("-xf").arg(&corrupt).arg("-C").arg(&tampered))
            .status
            .success()
    );
    let index = common::json(&std::fs::read_to_string(tampered.join("index.json")).unwrap());
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest_path = tampered.join("blobs/sha256").join(manifest);
    let manifest = common::json(&std::fs::read_to_string(&manifest_path).unwrap());
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    std::fs::write(tampered.join("blobs/sha256").join(config), "{}").unwrap();
    assert!(
        run(Command::new("tar")
            .arg("-cf")
            .arg(&corrupt)
            .arg("-C")
            .arg(&tampered)
            .arg("."))
        .status
        .success()
    );
    let err = kube_image(&agent, &["import", &corrupt.to_string_lossy()]).err();
    assert!(err.contains("corrupt"), "{err}");
    assert!(!image_rows(&agent).iter().any(|(r, _)| r.contains("corrupt")));
}

#[test]
fn containerd_is_restarted_and_kube_restarts_keep_containers() {
    let mut agent = AgentServer::start(&["--node-name", "restart-node"]);
    agent.wait_node_ready("restart-node", Duration::from_secs(30));

    // A long-running container straight through containerd (no pod needed).
    agent
        .ctr(&[
            "run",
            "-d",
            "docker.io/library/busybox:latest",
            "kube-node-sleeper",
            "sleep",
            "3600",
        ])
        .ok();
    let task_pid = |agent: &AgentServer| -> Option<String> {
        let out = agent.ctr(&["tasks", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.starts_with("kube-node-sleeper"))
            .filter(|l| l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1).map(String::from))
    };
    let sleeper = task_pid(&agent).expect("sleeper not running");

    // containerd killed: the agent starts it again, the container keeps running.
    let first = agent.containerd_pid().expect("no containerd pid file");
    common::send_signal(first, "KILL");
    let restarted = eventually(Duration::from_secs(20), || {
        agent.containerd_pid().is_some_and(|p| p != first) && kube_image(&agent, &["ls"]).status.success()
    });
    assert!(restarted, "containerd was not restarted; log:\n{}", agent.log_text());
    assert_eq!(task_pid(&agent).as_deref(), Some(sleeper.as_str()));
    assert!(agent.log_text().contains("containerd exited; restarting"));

    // kube itself restarted (SIGTERM, then a new process on the same data dir): the
    // same containerd state, the container untouched, the node Ready again.
    let containerd = agent.containerd_pid().expect("no containerd pid file");
    let status = agent.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "kube did not stop cleanly");
    assert!(
        eventually(Duration::from_secs(5), || !alive(containerd)),
        "containerd still runs after kube stopped"
    );
    assert!(alive(sleeper.parse().unwrap()), "the container died with containerd");
    agent.spawn();
    agent.wait_ready();
    agent.wait_api();
    agent.wait_node_ready("restart-node", Duration::from_secs(30));
    assert_eq!(task_pid(&agent).as_deref(), Some(sleeper.as_str()));
    let rows = image_rows(&agent);
    assert!(rows.contains(&("docker.io/library/busybox".into(), "latest".into())));

    // SIGKILL of kube: containerd goes too (parent-death signal), the container stays.
    let containerd = agent.containerd_pid().unwrap();
    agent.kill9();
    let gone = eventually(Duration::from_secs(15), || !alive(containerd));
    assert!(gone, "containerd outlived a SIGKILLed kube");
    assert!(alive(sleeper.parse().unwrap()));
    agent.spawn();
    agent.wait_ready();
    agent.wait_api();
    agent.wait_node_ready("restart-node", Duration::from_secs(30));
    assert_eq!(task_pid(&agent).as_deref(), Some(sleeper.as_str()));
}

#[test]
fn agent_start_errors_stop_the_server_with_one_line() {
    // A bridge name Linux cannot have: the agent cannot start, so neither does kube.
    let mut agent = AgentServer::new(&["--cni-bridge", "this-name-is-too-long"]);
    agent.spawn();
    let status = agent.wait_exit(Duration::from_secs(30)).expect("kube did not exit");
    assert!(!status.success());
    let log = agent.log_text();
    let last = log.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kube: ") && last.contains("not a valid bridge name"),
        "{log}"
    );
}
