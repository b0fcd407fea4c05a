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
use std::time::{Duration, Instant};

use common::{Out, Server};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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
