//! The workload controllers and the garbage collector of a real `kube server`
//! (no agent: pods stay unscheduled until the test binds them and reports them
//! Running and Ready through the API, as a kubelet would), driven by the real
//! kubectl: ReplicaSets and ReplicationControllers keep, adopt and release pods;
//! Deployments scale, roll within maxSurge/maxUnavailable, miss their progress
//! deadline, pause, recreate, and `kubectl rollout status/history/undo/restart`
//! work; `kubectl delete --cascade=background|foreground|orphan` behaves as in
//! Kubernetes, for custom resources too.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Out, Server, run};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The longest a controller may take to converge in these tests.
const SETTLE: Duration = Duration::from_secs(30);

struct Cluster {
    server: Server,
    client: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = tokio::task::spawn_blocking(Server::start_api)
            .await
            .expect("server start");
        let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a kube-rs config");
        let client = Client::try_from(config).expect("a kube-rs client");
        Cluster { server, client }
    }

    async fn kubectl(&self, args: &[&str]) -> Out {
        let mut cmd = self.server.kubectl_command(args);
        tokio::task::spawn_blocking(move || run(&mut cmd))
            .await
            .expect("kubectl ran")
    }

    /// kubectl that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    async fn apply(&self, yaml: &str) {
        let file = self
            .server
            .dir
            .path()
            .join(format!("manifest-{}.yaml", rand::random::<u32>()));
        std::fs::write(&file, yaml).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()]).await;
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn pods(&self, selector: &str) -> Vec<Pod> {
        let list = self.api::<Pod>().list(&ListParams::default().labels(selector)).await;
        list.map(|l| l.items).unwrap_or_default()
    }

    async fn sets(&self, selector: &str) -> Vec<ReplicaSet> {
        let list = self
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels(selector))
            .await;
        let mut sets = list.map(|l| l.items).unwrap_or_default();
        // Oldest revision first.
        sets.sort_by_key(|s| annotation(s, "deployment.kubernetes.io/revision").and_then(|r| r.parse::<i64>().ok()));
        sets
    }

    /// Binds every pending pod (but those whose image names `broken`) and
    /// reports it Running and Ready, every 100 ms, until the guard is dropped.
    fn kubelet(&self) -> Kubelet {
        let pods = self.api::<Pod>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                for pod in pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let _ = make_ready(&pods, &pod).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet { stop, task }
    }
}

/// A stand-in kubelet; stops when dropped.
struct Kubelet {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

async fn make_ready(pods: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let broken = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .any(|c| c.image.as_deref().unwrap_or("").contains("broken"));
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if broken || ready || pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = pod.name_any();
    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
        let _ = pods
            .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
            .await;
    }
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
        .await?;
    Ok(())
}

/// Polls `check` every 50 ms until it holds; fails the test after `SETTLE`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SETTLE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn annotation<'a>(meta: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    meta.annotations().get(key).map(String::as_str)
}

fn controller_kind(pod: &Pod) -> Option<(String, bool)> {
    let reference = pod.owner_references().iter().find(|r| r.controller == Some(true))?;
    Some((reference.kind.clone(), reference.block_owner_deletion == Some(true)))
}

fn deployment(name: &str, replicas: i32, strategy: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {strategy}
{extra}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: c, image: "busybox:1"}}]
"#
    )
}

/// Scale writes that name no resourceVersion land on whatever the Deployment is by then
/// (kube-apiserver retries them on a conflict); one that names an old version is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scale_patches_all_land() {
    let cluster = Cluster::start().await;
    cluster.apply(&deployment("scaled", 1, "{type: Recreate}", "")).await;
    let deployments = cluster.api::<Deployment>();
    let patches = (0..20).map(|replicas| {
        let deployments = deployments.clone();
        async move {
            let patch = json!({"spec": {"replicas": replicas}});
            deployments
                .patch_scale("scaled", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    });
    for result in futures_util::future::join_all(patches).await {
        result.expect("a scale patch without a resourceVersion never conflicts");
    }
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 5}});
    match deployments
        .patch_scale("scaled", &PatchParams::default(), &Patch::Merge(&stale))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("a stale resourceVersion must conflict: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_keep_adopt_and_release_pods() {
    let cluster = Cluster::start().await;
    let pods = cluster.api::<Pod>();
    // An orphan that the ReplicaSet will select.
    let lonely: Pod = serde_json::from_value(json!({"metadata": {"name": "lonely", "labels": {"app": "rs"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "busybox:1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &lonely).await.unwrap();
    cluster
        .apply(
            r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: c, image: "busybox:1"}]
"#,
        )
        .await;
    until("two pods of the ReplicaSet, the orphan adopted", || async {
        let all = cluster.pods("app=rs").await;
        all.len() == 2
            && all
                .iter()
                .all(|p| controller_kind(p) == Some(("ReplicaSet".into(), true)))
            && all.iter().any(|p| p.name_any() == "lonely")
    })
    .await;
    let created = cluster.pods("app=rs").await;
    assert!(
        created
            .iter()
            .any(|p| p.name_any().starts_with("rs-") && p.metadata.generate_name.as_deref() == Some("rs-"))
    );
    let _kubelet = cluster.kubelet();
    let sets = cluster.api::<ReplicaSet>();
    until("ready and available replicas reported", || async {
        let rs = sets.get("rs").await.unwrap();
        let status = rs.status.unwrap_or_default();
        status.replicas == 2
            && status.ready_replicas == Some(2)
            && status.available_replicas == Some(2)
            && status.fully_labeled_replicas == Some(2)
            && status.observed_generation == rs.metadata.generation
    })
    .await;
    // A pod that stops matching is released and replaced.
    cluster
        .ok(&["label", "pod", "lonely", "app=other", "--overwrite"])
        .await;
    until("the relabelled pod released and replaced", || async {
        let lonely = pods.get("lonely").await.unwrap();
        let owned = cluster.pods("app=rs").await;
        lonely.owner_references().is_empty() && owned.len() == 2 && owned.iter().all(|p| controller_kind(p).is_some())
    })
    .await;
    // A deleted pod is replaced.
    let victim = cluster.pods("app=rs").await[0].name_any();
    cluster.ok(&["delete", "pod", &victim]).await;
    until("the deleted pod replaced", || async {
        let owned = cluster.pods("app=rs").await;
        owned.len() == 2 && owned.iter().all(|p| p.name_any() != victim)
    })
    .await;
    cluster.ok(&["scale", "rs", "rs", "--replicas=0"]).await;
    until("scaled to zero", || async { cluster.pods("app=rs").await.is_empty() }).await;
    assert!(pods.get("lonely").await.is_ok(), "the released pod stays");
    let events = cluster
        .ok(&["get", "events", "--field-selector", "involvedObject.name=rs"])
        .await;
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Created pod: rs-"),
        "{events}"
    );
    assert!(events.contains("SuccessfulDelete"), "{events}");

    // A ReplicationController goes through the same loop.
    cluster
        .apply(
            r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: 3
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: c, image: "busybox:1"}]
"#,
        )
        .await;
    let controllers = cluster.api::<ReplicationController>();
    until("the ReplicationController's pods ready", || async {
        let owned = cluster.pods("app=rc").await;
        let rc = controllers.get("rc").await.unwrap();
        owned.len() == 3
            && owned
                .iter()
                .all(|p| controller_kind(p) == Some(("ReplicationController".into(), true)))
            && rc.status.is_some_and(|s| s.ready_replicas == Some(3))
    })
    .await;
    cluster.ok(&["scale", "rc", "rc", "--replicas=1"]).await;
    until("the ReplicationController scaled down", || async {
        cluster.pods("app=rc").await.len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_roll_out_undo_and_restart_with_kubectl() {
    let cluster = Cluster::start().await;
    let _kubelet = cluster.kubelet();
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}";
    cluster.apply(&deployment("web", 4, strategy, "")).await;
    let status = cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let sets = cluster.sets("app=web").await;
    assert_eq!(sets.len(), 1);
    let first = sets[0].name_any();
    let hash = sets[0].labels().get("pod-template-hash").cloned().unwrap();
    assert_eq!(first, format!("web-{hash}"));
    assert_eq!(annotation(&sets[0], "deployment.kubernetes.io/revision"), Some("1"));
    assert_eq!(
        annotation(&sets[0], "deployment.kubernetes.io/desired-replicas"),
        Some("4")
    );
    assert_eq!(annotation(&sets[0], "deployment.kubernetes.io/max-replicas"), Some("5"));
    for pod in cluster.pods("app=web").await {
        assert_eq!(pod.labels().get("pod-template-hash"), Some(&hash));
    }

    // Scaling resizes the only ReplicaSet.
    cluster.ok(&["scale", "deployment/web", "--replicas=6"]).await;
    until("scaled to six", || async {
        cluster.sets("app=web").await.iter().map(replicas).collect::<Vec<_>>() == [6]
    })
    .await;
    cluster.ok(&["scale", "deployment/web", "--replicas=4"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    until("scaled back to four", || async {
        cluster.pods("app=web").await.len() == 4
    })
    .await;

    // A new image rolls over to a new ReplicaSet within maxSurge and maxUnavailable.
    let watching = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sets = cluster.api::<ReplicaSet>();
        let watching = watching.clone();
        tokio::spawn(async move {
            let (mut most, mut fewest_available) = (0, i32::MAX);
            while watching.load(Ordering::Relaxed) {
                let all = sets.list(&ListParams::default().labels("app=web")).await.unwrap().items;
                most = most.max(all.iter().map(replicas).sum::<i32>());
                let available: i32 = all
                    .iter()
                    .map(|s| s.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0))
                    .sum();
                fewest_available = fewest_available.min(available);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (most, fewest_available)
        })
    };
    cluster.ok(&["set", "image", "deployment/web", "c=busybox:2"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    watching.store(false, Ordering::Relaxed);
    let (most, fewest_available) = sampler.await.unwrap();
    assert!(most <= 5, "at most replicas + maxSurge pods were wanted, saw {most}");
    assert!(
        fewest_available >= 3,
        "availability never fell below replicas - maxUnavailable, saw {fewest_available}"
    );
    let sets = cluster.sets("app=web").await;
    assert_eq!(sets.iter().map(replicas).collect::<Vec<_>>(), [0, 4]);
    assert_eq!(annotation(&sets[1], "deployment.kubernetes.io/revision"), Some("2"));
    let d = cluster.api::<Deployment>().get("web").await.unwrap();
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), Some("2"));
    let status = d.status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (Some(4), Some(4), Some(4), None)
    );
    let conditions: BTreeMap<String, (String, String)> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap_or_default())))
        .collect();
    assert_eq!(
        conditions["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        conditions["Progressing"],
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let history = cluster.ok(&["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo writes the first template back: its ReplicaSet becomes revision 3.
    cluster.ok(&["rollout", "undo", "deployment/web"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let image = cluster
        .ok(&[
            "get",
            "deployment/web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "busybox:1");
    until("the first ReplicaSet back in service as revision 3", || async {
        let sets = cluster.sets("app=web").await;
        sets.len() == 2
            && sets[1].name_any() == first
            && replicas(&sets[1]) == 4
            && replicas(&sets[0]) == 0
            && annotation(&sets[1], "deployment.kubernetes.io/revision") == Some("3")
            && annotation(&sets[1], "deployment.kubernetes.io/revision-history") == Some("1")
    })
    .await;
    let history = cluster.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );

    // Restart stamps the template and rolls every pod.
    cluster.ok(&["rollout", "restart", "deployment/web"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let sets = cluster.sets("app=web").await;
    assert_eq!(sets.len(), 3);
    let newest = &sets[2];
    assert_eq!(replicas(newest), 4);
    let template_annotations = newest
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert!(template_annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert_eq!(annotation(newest, "deployment.kubernetes.io/revision"), Some("4"));
    let events = cluster
        .ok(&["get", "events", "--field-selector", "involvedObject.name=web"])
        .await;
    assert!(events.contains("ScalingReplicaSet"), "{events}");
    assert!(
        events.contains(&format!("Scaled up replica set {first} from 0 to 4")),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_paused_and_recreated_rollouts() {
    let cluster = Cluster::start().await;
    let _kubelet = cluster.kubelet();
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}";
    cluster
        .apply(&deployment("stuck", 4, strategy, "  progressDeadlineSeconds: 3"))
        .await;
    cluster
        .ok(&["rollout", "status", "deployment/stuck", "--timeout=60s"])
        .await;
    // New pods never get ready: one old pod may go (25% of 4, rounded down),
    // one extra may come (rounded up).
    cluster.ok(&["set", "image", "deployment/stuck", "c=broken:1"]).await;
    until("the rollout stalled at maxUnavailable", || async {
        cluster.sets("app=stuck").await.iter().map(replicas).collect::<Vec<_>>() == [3, 2]
    })
    .await;
    let out = cluster
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=30s"])
        .await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("exceeded its progress deadline"), "{}", out.stderr);
    let reason = cluster
        .ok(&[
            "get",
            "deployment/stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ])
        .await;
    assert_eq!(reason, "ProgressDeadlineExceeded");
    assert_eq!(
        cluster.sets("app=stuck").await.iter().map(replicas).collect::<Vec<_>>(),
        [3, 2],
        "a stalled rollout stays where it stalled"
    );

    // Paused: template changes wait; resumed, they roll.
    cluster
        .apply(&deployment("paused", 2, "{type: RollingUpdate}", ""))
        .await;
    cluster
        .ok(&["rollout", "status", "deployment/paused", "--timeout=60s"])
        .await;
    cluster.ok(&["rollout", "pause", "deployment/paused"]).await;
    cluster.ok(&["set", "image", "deployment/paused", "c=busybox:2"]).await;
    until("the pause recorded", || async {
        let d = cluster.api::<Deployment>().get("paused").await.unwrap();
        d.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.sets("app=paused").await.len(), 1, "no rollout while paused");
    cluster.ok(&["rollout", "resume", "deployment/paused"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/paused", "--timeout=60s"])
        .await;
    assert_eq!(
        cluster
            .sets("app=paused")
            .await
            .iter()
            .map(replicas)
            .collect::<Vec<_>>(),
        [0, 2]
    );

    // Recreate: the old pods are gone before a new one exists.
    cluster.apply(&deployment("re", 2, "{type: Recreate}", "")).await;
    cluster
        .ok(&["rollout", "status", "deployment/re", "--timeout=60s"])
        .await;
    let watching = Arc::new(AtomicBool::new(true));
    let sampler = {
        let pods = cluster.api::<Pod>();
        let watching = watching.clone();
        tokio::spawn(async move {
            let mut overlap = false;
            while watching.load(Ordering::Relaxed) {
                let all = pods.list(&ListParams::default().labels("app=re")).await.unwrap().items;
                let hashes: std::collections::HashSet<_> = all
                    .iter()
                    .filter_map(|p| p.labels().get("pod-template-hash").cloned())
                    .collect();
                overlap |= hashes.len() > 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            overlap
        })
    };
    cluster.ok(&["set", "image", "deployment/re", "c=busybox:2"]).await;
    cluster
        .ok(&["rollout", "status", "deployment/re", "--timeout=60s"])
        .await;
    watching.store(false, Ordering::Relaxed);
    assert!(!sampler.await.unwrap(), "old and new pods ran side by side");
    assert_eq!(
        cluster.sets("app=re").await.iter().map(replicas).collect::<Vec<_>>(),
        [0, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_background_foreground_and_orphan() {
    let cluster = Cluster::start().await;
    for name in ["bg", "fg", "or"] {
        cluster.apply(&deployment(name, 2, "{type: RollingUpdate}", "")).await;
    }
    until("every deployment's pods", || async {
        let mut all = true;
        for name in ["bg", "fg", "or"] {
            all &= cluster.pods(&format!("app={name}")).await.len() == 2;
        }
        all
    })
    .await;

    // Background: the owner goes at once, the collector takes the rest.
    cluster
        .ok(&["delete", "deployment", "bg", "--cascade=background"])
        .await;
    until("the ReplicaSet and pods of bg collected", || async {
        cluster.sets("app=bg").await.is_empty() && cluster.pods("app=bg").await.is_empty()
    })
    .await;

    // Foreground: the owner waits for dependents that block it.
    let pods = cluster.api::<Pod>();
    let held = cluster.pods("app=fg").await[0].name_any();
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    pods.patch(&held, &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    cluster
        .ok(&["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"])
        .await;
    let deployments = cluster.api::<Deployment>();
    until("the other pod of fg collected", || async {
        cluster.pods("app=fg").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = deployments.get("fg").await.expect("the owner waits");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.finalizers(), ["foregroundDeletion"]);
    let set = &cluster.sets("app=fg").await[0];
    assert_eq!(set.finalizers(), ["foregroundDeletion"], "the chain waits as well");
    let release = json!({"metadata": {"finalizers": null}});
    pods.patch(&held, &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    until("fg and all it owned gone", || async {
        deployments.get_opt("fg").await.unwrap().is_none()
            && cluster.sets("app=fg").await.is_empty()
            && cluster.pods("app=fg").await.is_empty()
    })
    .await;

    // Orphan: dependents stay, without the reference.
    cluster.ok(&["delete", "deployment", "or", "--cascade=orphan"]).await;
    assert!(deployments.get_opt("or").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sets = cluster.sets("app=or").await;
    assert_eq!(sets.len(), 1, "the ReplicaSet stays");
    assert!(
        sets[0].owner_references().is_empty(),
        "{:?}",
        sets[0].owner_references()
    );
    let orphans = cluster.pods("app=or").await;
    assert_eq!(orphans.len(), 2, "its pods stay");
    assert!(orphans.iter().all(|p| controller_kind(p).is_some()));

    // Any kind: a custom resource owning a ConfigMap and a Secret, deleted in
    // the foreground (kubectl waits until the collector is done).
    cluster
        .apply(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
        )
        .await;
    until("the widget kind served", || async {
        cluster.kubectl(&["get", "widgets"]).await.status.success()
    })
    .await;
    cluster
        .apply("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
        .await;
    let uid = cluster
        .ok(&["get", "widget", "w", "-o", "jsonpath={.metadata.uid}"])
        .await;
    cluster
        .apply(&format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: widget-settings
  ownerReferences: [{{apiVersion: example.com/v1, kind: Widget, name: w, uid: {uid}, blockOwnerDeletion: true}}]
---
apiVersion: v1
kind: Secret
metadata:
  name: widget-secret
  ownerReferences: [{{apiVersion: example.com/v1, kind: Widget, name: w, uid: {uid}}}]
"#
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cluster
            .kubectl(&["get", "configmap", "widget-settings"])
            .await
            .status
            .success()
    );
    cluster
        .ok(&["delete", "widget", "w", "--cascade=foreground", "--timeout=30s"])
        .await;
    until("the widget's dependents collected", || async {
        !cluster
            .kubectl(&["get", "configmap", "widget-settings"])
            .await
            .status
            .success()
            && !cluster
                .kubectl(&["get", "secret", "widget-secret"])
                .await
                .status
                .success()
    })
    .await;

    // One watch per kind for the whole process: the collector reads the shared
    // informers of pods and replica sets, and watches itself only what no other
    // loop does (config maps, secrets). Not counted: deployments and widgets,
    // which `kubectl delete` watched to wait for their deletion.
    let metrics = cluster.ok(&["get", "--raw", "/metrics"]).await;
    for resource in ["pods", "replicasets", "configmaps", "secrets"] {
        assert_eq!(watches(&metrics, resource), 1, "watches of {resource}");
    }
}

/// How many watches of `resource` the API server has served.
fn watches(metrics: &str, resource: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(&format!("resource=\"{resource}\"")) && l.contains("verb=\"WATCH\""))
        .filter(|l| l.contains("subresource=\"\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
