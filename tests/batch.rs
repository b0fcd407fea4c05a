//! The batch and node-bound workload controllers against a real `kube server`
//! with no agent: Job, CronJob, DaemonSet and StatefulSet. The test plays the
//! kubelet: it registers nodes and posts pod phases and readiness through the
//! API (kube-rs), and checks what the controllers do with the real kubectl
//! where users would (`wait`, `rollout`, `create job --from`).
//!
//! Every wait is bounded; each test runs its own server.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Out, Server};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// How long any one expected change may take.
const PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    server: Server,
    client: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = tokio::task::spawn_blocking(Server::start_api).await.unwrap();
        let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a kube-rs config");
        let client = Client::try_from(config).expect("a kube-rs client");
        Cluster { server, client }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Runs kubectl off the async threads.
    async fn kubectl(&self, args: &[&str]) -> Out {
        let mut cmd = self.server.kubectl_command(args);
        tokio::task::spawn_blocking(move || common::run(&mut cmd))
            .await
            .unwrap()
    }

    /// Creates an object from JSON through the API.
    async fn create<K>(&self, value: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let object: K = serde_json::from_value(value).expect("a valid object");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .expect("created")
    }

    /// The pods with these labels, oldest first.
    async fn pods(&self, selector: &str) -> Vec<Pod> {
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list pods")
            .items;
        pods.sort_by(|a, b| {
            (a.metadata.creation_timestamp.clone(), a.name_any())
                .cmp(&(b.metadata.creation_timestamp.clone(), b.name_any()))
        });
        pods
    }

    /// Posts the pod's phase as a kubelet would (Running means Running and Ready).
    async fn set_phase(&self, name: &str, phase: &str) {
        let ready = if phase == "Running" { "True" } else { "False" };
        let now = jiff::Timestamp::now().to_string();
        let status = json!({"status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": now}]}});
        // Other writers (scheduler, controllers) may race the patch; retry as a kubelet would.
        for attempt in 0.. {
            match self
                .api::<Pod>()
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("set {name} {phase}: {e}"),
            }
        }
    }

    /// What a failed wait leaves to look at.
    async fn dump(&self, what: &str) -> String {
        let out = self.kubectl(&["get", what, "-o", "yaml"]).await;
        format!("{}{}", out.stdout, out.stderr)
    }
}

/// Polls `check` every 100 ms until it returns `Some`, failing after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job(name: &str, spec: Value) -> Value {
    let mut value = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}}},
    });
    for (key, field) in spec.as_object().cloned().unwrap_or_default() {
        value["spec"][key] = field;
    }
    value
}

fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.labels().clone()
}

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_pods_until_completions_succeed() {
    let c = Cluster::start().await;
    let created: Job = c.create(job("work", json!({"completions": 3, "parallelism": 2}))).await;
    let uid = created.uid().unwrap();
    let selector = format!("batch.kubernetes.io/controller-uid={uid}");
    assert_eq!(
        created
            .spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["batch.kubernetes.io/controller-uid"],
        uid,
        "the API generates the selector"
    );

    let first = eventually("two pods", || async {
        let pods = c.pods(&selector).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    for pod in &first {
        let l = labels(pod);
        assert_eq!(l["batch.kubernetes.io/job-name"], "work");
        assert_eq!(l["job-name"], "work");
        assert_eq!(l["controller-uid"], uid);
        assert!(pod.name_any().starts_with("work-"));
        assert_eq!(pod.finalizers(), ["batch.kubernetes.io/job-tracking"]);
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", uid.as_str(), Some(true))
        );
    }
    // Parallelism holds: no third pod while two run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.pods(&selector).await.len(), 2);
    let status = c.api::<Job>().get("work").await.unwrap().status.unwrap();
    assert_eq!((status.active, status.ready), (Some(2), Some(0)));
    assert!(status.start_time.is_some());

    c.set_phase(&first[0].name_any(), "Running").await;
    eventually("ready counted", || async {
        let status = c.api::<Job>().get("work").await.ok()?.status?;
        (status.ready == Some(1)).then_some(())
    })
    .await;
    c.set_phase(&first[0].name_any(), "Succeeded").await;
    let third = eventually("a third pod", || async {
        let pods = c.pods(&selector).await;
        if pods.len() != 3 {
            return None;
        }
        pods.into_iter()
            .find(|p| first.iter().all(|f| f.name_any() != p.name_any()))
    })
    .await;
    // The finished pod is counted and released.
    eventually("one success counted", || async {
        let job = c.api::<Job>().get("work").await.ok()?;
        let pod = c.api::<Pod>().get(&first[0].name_any()).await.ok()?;
        (job.status?.succeeded == Some(1) && pod.finalizers().is_empty()).then_some(())
    })
    .await;
    c.set_phase(&first[1].name_any(), "Succeeded").await;
    c.set_phase(&third.name_any(), "Succeeded").await;
    let out = c
        .kubectl(&["wait", "--for=condition=complete", "job/work", "--timeout=30s"])
        .await;
    assert!(
        out.stdout.contains("job.batch/work condition met"),
        "{out:?}\n{}\n{}",
        c.dump("job").await,
        c.dump("pods").await
    );
    let status = c.api::<Job>().get("work").await.unwrap().status.unwrap();
    assert_eq!((status.succeeded, status.failed, status.active), (Some(3), None, None));
    assert!(status.completion_time.is_some());
    assert_eq!(c.pods(&selector).await.len(), 3, "no pod beyond completions");
    let table = c.kubectl(&["get", "job", "work"]).await.ok();
    assert!(table.contains("3/3"), "{table}");
    let described = eventually("the job's events", || async {
        let out = c.kubectl(&["describe", "job", "work"]).await.ok();
        (out.contains("Completed") && out.contains("Job completed")).then_some(out)
    })
    .await;
    assert!(
        described.contains("SuccessfulCreate") && described.contains("Created pod: work-"),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_fails_when_failures_pass_the_backoff_limit() {
    let c = Cluster::start().await;
    let created: Job = c.create(job("flaky", json!({"backoffLimit": 1}))).await;
    let selector = format!("batch.kubernetes.io/controller-uid={}", created.uid().unwrap());
    let first = eventually("a pod", || async { c.pods(&selector).await.into_iter().next() }).await;
    c.set_phase(&first.name_any(), "Failed").await;
    // One failure is within the limit: a replacement comes after the back-off (10 s).
    let second = eventually("a replacement", || async {
        c.pods(&selector)
            .await
            .into_iter()
            .find(|p| p.name_any() != first.name_any())
    })
    .await;
    let status = c.api::<Job>().get("flaky").await.unwrap().status.unwrap();
    assert_eq!(status.failed, Some(1));
    c.set_phase(&second.name_any(), "Failed").await;
    let failed = eventually("the Failed condition", || async {
        let job = c.api::<Job>().get("flaky").await.ok()?;
        condition(&job, "Failed").map(|_| job)
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed"),
        Some(("True".to_string(), "BackoffLimitExceeded".to_string()))
    );
    assert_eq!(
        condition(&failed, "FailureTarget").map(|c| c.1).as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(failed.status.as_ref().unwrap().failed, Some(2));
    let out = c
        .kubectl(&["wait", "--for=condition=failed", "job/flaky", "--timeout=10s"])
        .await
        .ok();
    assert!(out.contains("condition met"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.pods(&selector).await.len(), 2, "no retry after the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_runs_each_index_once() {
    let c = Cluster::start().await;
    let created: Job = c
        .create(job(
            "shards",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed", "ttlSecondsAfterFinished": 0}),
        ))
        .await;
    let selector = format!("batch.kubernetes.io/controller-uid={}", created.uid().unwrap());
    let pods = eventually("three pods", || async {
        let pods = c.pods(&selector).await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let mut indexes: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            let index = p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
            assert_eq!(labels(p)["batch.kubernetes.io/job-completion-index"], index);
            assert!(p.name_any().starts_with(&format!("shards-{index}-")));
            let hostname = p.spec.as_ref().unwrap().hostname.clone().unwrap();
            (index, hostname)
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [("0", "shards-0"), ("1", "shards-1"), ("2", "shards-2")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let by_index = |i: &str| {
        pods.iter()
            .find(|p| p.annotations()["batch.kubernetes.io/job-completion-index"] == i)
            .unwrap()
            .name_any()
    };
    c.set_phase(&by_index("1"), "Succeeded").await;
    eventually("index 1 completed", || async {
        let status = c.api::<Job>().get("shards").await.ok()?.status?;
        (status.completed_indexes.as_deref() == Some("1")).then_some(())
    })
    .await;
    // A failed index is retried with a pod of the same index.
    c.set_phase(&by_index("0"), "Failed").await;
    c.set_phase(&by_index("2"), "Succeeded").await;
    let retry = eventually("index 0 again", || async {
        c.pods(&selector).await.into_iter().find(|p| {
            p.annotations()["batch.kubernetes.io/job-completion-index"] == "0" && p.name_any() != by_index("0")
        })
    })
    .await;
    c.set_phase(&retry.name_any(), "Succeeded").await;
    // Complete, then deleted at once by ttlSecondsAfterFinished: 0.
    eventually("the job deleted after it completed", || async {
        c.api::<Job>().get_opt("shards").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_starts_a_job_at_the_next_minute() {
    let c = Cluster::start().await;
    let cronjob: CronJob = c
        .create(json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
            "spec": {"schedule": "* * * * *", "timeZone": "Europe/Paris", "concurrencyPolicy": "Forbid",
                "jobTemplate": {"metadata": {"labels": {"from": "tick"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}],
                        "restartPolicy": "OnFailure"}}}}},
        }))
        .await;

    // Made by hand meanwhile, as kubectl does it (client-side): owned, not scheduled.
    let out = c
        .kubectl(&["create", "job", "tick-manual", "--from=cronjob/tick"])
        .await
        .ok();
    assert!(out.contains("job.batch/tick-manual created"), "{out}");
    let manual = c.api::<Job>().get("tick-manual").await.unwrap();
    assert_eq!(manual.owner_references()[0].uid, cronjob.uid().unwrap());

    let deadline = Instant::now() + Duration::from_secs(75);
    let scheduled = loop {
        let jobs = c
            .api::<Job>()
            .list(&ListParams::default().labels("from=tick"))
            .await
            .unwrap()
            .items;
        if let Some(job) = jobs.into_iter().find(|j| j.name_any() != "tick-manual") {
            break job;
        }
        assert!(Instant::now() < deadline, "no job within a minute");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let minutes: i64 = scheduled.name_any().strip_prefix("tick-").unwrap().parse().unwrap();
    let now = jiff::Timestamp::now().as_second() / 60;
    assert!((now - 1..=now).contains(&minutes), "{minutes} vs {now}");
    let stamp = &scheduled.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    assert!(stamp.ends_with("+01:00") || stamp.ends_with("+02:00"), "{stamp}");
    let status = eventually("the job listed as active", || async {
        let status = c.api::<CronJob>().get("tick").await.ok()?.status?;
        status
            .active
            .as_ref()?
            .iter()
            .any(|r| r.name.as_deref() == Some(&scheduled.name_any()))
            .then_some(status)
    })
    .await;
    let last = status.last_schedule_time.unwrap().0;
    assert_eq!(last.as_second(), minutes * 60);
}

/// Plays the kubelet for pods with `selector`: finishes their deletion at once
/// and, while `ready` is set, reports new ones Running and Ready.
struct FakeKubelet {
    ready: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKubelet {
    fn start(client: Client, selector: &str, ready: bool) -> FakeKubelet {
        let ready_flag = Arc::new(AtomicBool::new(ready));
        let flag = ready_flag.clone();
        let selector = selector.to_string();
        let task = tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            loop {
                let pods = api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                for pod in pods {
                    let name = pod.name_any();
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = api.delete(&name, &DeleteParams::default().grace_period(0)).await;
                    } else if flag.load(Ordering::SeqCst) && !is_ready(&pod) {
                        let now = jiff::Timestamp::now().to_string();
                        let status = json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                        let _ = api
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        FakeKubelet {
            ready: ready_flag,
            task,
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Registers a Ready node, optionally tainted.
async fn register_node(c: &Cluster, name: &str, taints: Value) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.expect("node created");
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

/// The node a daemon pod is pinned to by its `matchFields` node affinity.
fn pinned_node(pod: &Pod) -> String {
    let affinity = pod.spec.as_ref().unwrap().affinity.as_ref().unwrap();
    let terms = &affinity
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!((field.key.as_str(), field.operator.as_str()), ("metadata.name", "In"));
    field.values.as_ref().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_one_pod_per_eligible_node_and_rolls() {
    let c = Cluster::start().await;
    for name in ["n1", "n2", "n3"] {
        register_node(&c, name, json!([])).await;
    }
    register_node(
        &c,
        "n4",
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    let _kubelet = FakeKubelet::start(c.client.clone(), "app=agent", true);
    let _ds: DaemonSet = c
        .create(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}},
        }))
        .await;
    let out = c
        .kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
        .await
        .ok();
    assert!(out.contains("daemon set \"agent\" successfully rolled out"), "{out}");
    let pods = c.pods("app=agent").await;
    let mut placed: Vec<String> = pods.iter().map(pinned_node).collect();
    placed.sort();
    assert_eq!(placed, ["n1", "n2", "n3"], "one per node, none on the tainted one");
    for pod in &pods {
        let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap_or_default();
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unschedulable"] {
            assert!(tolerations.iter().any(|t| t.key.as_deref() == Some(key)), "{key}");
        }
        assert!(labels(pod).contains_key("controller-revision-hash"));
        assert_eq!(pod.owner_references()[0].kind, "DaemonSet");
    }
    let status = c.api::<DaemonSet>().get("agent").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled,
            status.number_ready
        ),
        (3, 3, 3)
    );
    assert_eq!(
        (status.number_misscheduled, status.updated_number_scheduled),
        (0, Some(3))
    );

    // A new template rolls out node by node.
    c.kubectl(&["set", "image", "daemonset/agent", "main=busybox:2"])
        .await
        .ok();
    let out = c
        .kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
        .await
        .ok();
    assert!(out.contains("successfully rolled out"), "{out}");
    let images = eventually("every pod on busybox:2", || async {
        let pods = c.pods("app=agent").await;
        (pods.len() == 3 && pods.iter().all(|p| image(p) == "busybox:2")).then_some(pods)
    })
    .await;
    assert_eq!(images.len(), 3);
    let history = c.kubectl(&["rollout", "history", "daemonset/agent"]).await.ok();
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    let out = c.kubectl(&["rollout", "undo", "daemonset/agent"]).await.ok();
    assert!(out.contains("rolled back"), "{out}");
    eventually("every pod back on busybox:1", || async {
        let pods = c.pods("app=agent").await;
        (pods.len() == 3 && pods.iter().all(|p| image(p) == "busybox:1" && is_ready(p))).then_some(())
    })
    .await;

    // The taint goes: the fourth node gets its pod.
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "n4",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": null}})),
        )
        .await
        .unwrap();
    eventually("a pod on n4", || async {
        c.pods("app=agent")
            .await
            .iter()
            .any(|p| pinned_node(p) == "n4")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_orders_pods_keeps_claims_and_rolls_back() {
    let c = Cluster::start().await;
    let kubelet = FakeKubelet::start(c.client.clone(), "app=web", false);
    let _set: StatefulSet = c
        .create(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        }))
        .await;
    let names = |pods: &[Pod]| pods.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    let first = eventually("web-0", || async {
        let pods = c.pods("app=web").await;
        (!pods.is_empty()).then_some(pods)
    })
    .await;
    assert_eq!(names(&first), ["web-0"]);
    let spec = first[0].spec.as_ref().unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-0"), Some("web"))
    );
    let volume = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-0"
    );
    let claims: Api<PersistentVolumeClaim> = c.api();
    assert!(
        claims.get_opt("data-web-0").await.unwrap().is_some(),
        "the claim comes first"
    );
    // OrderedReady: web-1 waits for web-0 to be Running and Ready.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(names(&c.pods("app=web").await), ["web-0"]);
    c.set_phase("web-0", "Running").await;
    eventually("web-1", || async {
        let pods = c.pods("app=web").await;
        (names(&pods) == ["web-0", "web-1"]).then_some(())
    })
    .await;
    kubelet.set_ready(true);
    let out = c
        .kubectl(&["rollout", "status", "statefulset/web", "--timeout=30s"])
        .await
        .ok();
    assert!(out.contains("roll out complete"), "{out}");
    for claim in ["data-web-0", "data-web-1", "data-web-2"] {
        assert!(claims.get_opt(claim).await.unwrap().is_some(), "{claim}");
    }
    let status = c.api::<StatefulSet>().get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.replicas, status.ready_replicas, status.available_replicas),
        (3, Some(3), Some(3))
    );
    assert_eq!(status.current_revision, status.update_revision);

    // Scale down: the highest ordinal goes first; claims stay (Retain).
    let deleted = deletions(&c).await;
    c.kubectl(&["scale", "statefulset/web", "--replicas=1"]).await.ok();
    eventually("one pod left", || async {
        (names(&c.pods("app=web").await) == ["web-0"]).then_some(())
    })
    .await;
    assert_eq!(deleted.take(2).await, ["web-2", "web-1"]);
    assert!(claims.get_opt("data-web-2").await.unwrap().is_some());
    c.kubectl(&["scale", "statefulset/web", "--replicas=3"]).await.ok();
    let out = c
        .kubectl(&["rollout", "status", "statefulset/web", "--timeout=30s"])
        .await
        .ok();
    assert!(out.contains("roll out complete"), "{out}");

    // A rolling update replaces pods from the highest ordinal down, and undoes.
    let before = c
        .api::<StatefulSet>()
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .update_revision;
    let deleted = deletions(&c).await;
    c.kubectl(&["set", "image", "statefulset/web", "main=busybox:2"])
        .await
        .ok();
    let out = c
        .kubectl(&["rollout", "status", "statefulset/web", "--timeout=30s"])
        .await
        .ok();
    assert!(out.contains("roll out complete"), "{out}");
    assert_eq!(deleted.take(3).await, ["web-2", "web-1", "web-0"]);
    assert!(c.pods("app=web").await.iter().all(|p| image(p) == "busybox:2"));
    let history = c.kubectl(&["rollout", "history", "statefulset/web"]).await.ok();
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    let out = c.kubectl(&["rollout", "undo", "statefulset/web"]).await.ok();
    assert!(out.contains("rolled back"), "{out}");
    let status = eventually("the first revision current again", || async {
        let status = c.api::<StatefulSet>().get("web").await.ok()?.status?;
        let pods = c.pods("app=web").await;
        (status.current_revision == before
            && status.ready_replicas == Some(3)
            && pods.iter().all(|p| image(p) == "busybox:1"))
        .then_some(status)
    })
    .await;
    assert_eq!(status.update_revision, before);
}

/// Names of pods as their deletions are seen, from now on.
struct Deletions(
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
);

async fn deletions(c: &Cluster) -> Deletions {
    use kube::runtime::watcher;
    let api: Api<Pod> = c.api();
    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
    let (ready_send, ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready_send = Some(ready_send);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default().labels("app=web")));
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(ready) = ready_send.take() {
                        let _ = ready.send(());
                    }
                }
                Ok(watcher::Event::Delete(pod)) => {
                    let _ = send.send(pod.name_any());
                }
                _ => {}
            }
        }
    });
    let _ = tokio::time::timeout(PATIENCE, ready).await;
    Deletions(receive, task)
}

impl Deletions {
    /// The next `n` deletions.
    async fn take(mut self, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        while names.len() < n {
            match tokio::time::timeout(PATIENCE, self.0.recv()).await {
                Ok(Some(name)) => names.push(name),
                _ => panic!("only saw deletions {names:?}"),
            }
        }
        self.1.abort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batch_specs_are_refused() {
    let c = Cluster::start().await;
    let err = c
        .kubectl(&["create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *"])
        .await
        .err();
    assert!(
        err.contains("spec.schedule") && err.contains("above maximum (59)"),
        "{err}"
    );
    let bad_zone = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "zoned"},
        "spec": {"schedule": "@daily", "timeZone": "Mars/Olympus",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}});
    let object: CronJob = serde_json::from_value(bad_zone).unwrap();
    match c.api::<CronJob>().create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(status.message.contains("spec.timeZone"), "{}", status.message);
        }
        other => panic!("accepted an unknown time zone: {other:?}"),
    }
    let indexed: Job =
        serde_json::from_value(job("shards", json!({"completionMode": "Indexed", "parallelism": 2}))).unwrap();
    match c.api::<Job>().create(&PostParams::default(), &indexed).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(status.message.contains("spec.completions"), "{}", status.message);
        }
        other => panic!("accepted an Indexed job without completions: {other:?}"),
    }
    let always: Job = serde_json::from_value(job(
        "forever",
        json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Always"}}}),
    ))
    .unwrap();
    let err = c
        .api::<Job>()
        .create(&PostParams::default(), &always)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restartPolicy"), "{err}");
}
