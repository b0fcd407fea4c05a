//! kube-rs, the Rust Kubernetes client, against `kube server` over HTTPS with the admin
//! kubeconfig the server writes: typed `Api<ConfigMap>`, `Api<Namespace>` and
//! `Api<Deployment>` (create, get, list with label selectors, replace with a stale
//! resourceVersion, merge/JSON/strategic merge patch, delete) and kube-runtime's
//! `watcher` (list-then-watch and streaming lists) and `reflector` store.
//!
//! Every wait is bounded, so a misbehaving server fails a test instead of hanging it.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{Server, run};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The longest any single step (a request, the next watch event) may take.
const STEP: Duration = Duration::from_secs(15);

/// A running server and a kube-rs client for it.
struct Cluster {
    /// Kept for its lifetime: dropping it kills the server.
    _server: Server,
    client: Client,
}

impl Cluster {
    /// Starts the server, waits until `kubectl get --raw /readyz` succeeds and builds a
    /// client from the kubeconfig the server wrote.
    async fn start() -> Cluster {
        let server = Server::start();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let kubeconfig = server.kubeconfig();
            if kubeconfig.exists()
                && run(std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["get", "--raw", "/readyz"]))
                .status
                .success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the API did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a kube-rs config from the admin kubeconfig");
        assert_eq!(config.cluster_url.to_string().trim_end_matches('/'), server.api_url());
        let client = Client::try_from(config).expect("a kube-rs client");
        Cluster {
            _server: server,
            client,
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates namespace `name` (labelled `suite=kube-rs`) and returns it as stored.
    async fn namespace(&self, name: &str) -> Namespace {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = from_json(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"suite": "kube-rs"}},
        }));
        step(namespaces.create(&PostParams::default(), &ns)).await.unwrap()
    }
}

/// `fut`, failing the test if it takes longer than [`STEP`].
async fn step<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("step took longer than 15 s")
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid typed object")
}

fn config_map(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    from_json(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
}

/// The `Status` of a failed request; panics on success or a non-API error.
#[track_caller]
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn names<K: ResourceExt>(objects: impl IntoIterator<Item = K>) -> Vec<String> {
    objects.into_iter().map(|o| o.name_any()).collect()
}

#[tokio::test]
async fn typed_config_maps_and_namespaces() {
    let c = Cluster::start().await;
    let ns = c.namespace("typed").await;
    assert_eq!(ns.name_any(), "typed");
    assert!(ns.uid().is_some() && ns.resource_version().is_some());
    let namespaces: Api<Namespace> = Api::all(c.client.clone());

    // Namespaces: get, list (all and by label).
    let got = step(namespaces.get("typed")).await.unwrap();
    assert_eq!(got.uid(), ns.uid());
    assert_eq!(got.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let all = step(namespaces.list(&ListParams::default())).await.unwrap();
    for expected in ["default", "kube-system", "typed"] {
        assert!(
            all.items.iter().any(|n| n.name_any() == expected),
            "{expected} not listed"
        );
    }
    let labelled = step(namespaces.list(&ListParams::default().labels("suite=kube-rs")))
        .await
        .unwrap();
    assert_eq!(names(labelled), ["typed"]);

    // ConfigMaps: create, get, list with label selectors.
    let cms: Api<ConfigMap> = c.api("typed");
    for (name, tier) in [("alpha", "web"), ("beta", "db"), ("gamma", "web")] {
        let cm = config_map(name, json!({"tier": tier}), json!({"name": name}));
        let created = step(cms.create(&PostParams::default(), &cm)).await.unwrap();
        assert_eq!(created.name_any(), name);
        assert_eq!(created.namespace().as_deref(), Some("typed"));
        assert!(created.uid().is_some());
        assert!(created.creation_timestamp().is_some());
    }
    let again = api_error(step(cms.create(&PostParams::default(), &config_map("alpha", json!({}), json!({})))).await);
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"), "{again:?}");

    let alpha = step(cms.get("alpha")).await.unwrap();
    assert_eq!(data(&alpha)["name"], "alpha");
    assert_eq!(alpha.labels()["tier"], "web");
    let missing = api_error(step(cms.get("nope")).await);
    assert_eq!(
        (missing.code, missing.reason.as_str()),
        (404, "NotFound"),
        "{missing:?}"
    );
    assert_eq!(step(cms.get_opt("nope")).await.unwrap(), None);

    let web = step(cms.list(&ListParams::default().labels("tier=web"))).await.unwrap();
    assert_eq!(names(web.items), ["alpha", "gamma"]);
    let not_web = step(cms.list(&ListParams::default().labels("tier!=web")))
        .await
        .unwrap();
    assert_eq!(names(not_web.items), ["beta"]);
    let set = step(cms.list(&ListParams::default().labels("tier in (db,cache)")))
        .await
        .unwrap();
    assert_eq!(names(set.items), ["beta"]);
    let all = step(cms.list(&ListParams::default())).await.unwrap();
    assert!(all.metadata.resource_version.is_some());
    // The paged list kube-rs' watcher uses: limit + continue.
    let page = step(cms.list(&ListParams::default().labels("tier").limit(1)))
        .await
        .unwrap();
    assert_eq!(names(page.items), ["alpha"]);
    let token = page.metadata.continue_.expect("a continue token");
    let rest = step(cms.list(&ListParams::default().labels("tier").limit(5).continue_token(&token)))
        .await
        .unwrap();
    assert_eq!(names(rest.items), ["beta", "gamma"]);

    // Replace: with the current resourceVersion it succeeds, with a stale one it is a 409.
    let mut fresh = alpha.clone();
    fresh.data = Some(BTreeMap::from([("name".to_string(), "alpha-2".to_string())]));
    let replaced = step(cms.replace("alpha", &PostParams::default(), &fresh))
        .await
        .unwrap();
    assert_eq!(data(&replaced)["name"], "alpha-2");
    assert_ne!(replaced.resource_version(), alpha.resource_version());
    let mut stale = alpha.clone();
    stale.data = Some(BTreeMap::from([("name".to_string(), "lost".to_string())]));
    let conflict = api_error(step(cms.replace("alpha", &PostParams::default(), &stale)).await);
    assert_eq!(
        (conflict.code, conflict.reason.as_str()),
        (409, "Conflict"),
        "{conflict:?}"
    );
    assert!(
        conflict.message.contains("the object has been modified"),
        "{}",
        conflict.message
    );
    assert_eq!(data(&step(cms.get("alpha")).await.unwrap())["name"], "alpha-2");

    // Merge patch: add a key and a label, remove a key with null.
    let patched = step(cms.patch(
        "beta",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}, "data": {"added": "1", "name": null}})),
    ))
    .await
    .unwrap();
    assert_eq!(data(&patched), BTreeMap::from([("added".to_string(), "1".to_string())]));
    assert_eq!(patched.labels()["extra"], "yes");
    assert_eq!(patched.labels()["tier"], "db");

    // JSON patch: a successful test+replace, then a failing test is rejected.
    let ops: json_patch::Patch = from_json(json!([
        {"op": "test", "path": "/data/added", "value": "1"},
        {"op": "replace", "path": "/data/added", "value": "2"},
        {"op": "add", "path": "/metadata/labels/json", "value": "patched"},
    ]));
    let patched = step(cms.patch("beta", &PatchParams::default(), &Patch::Json::<()>(ops)))
        .await
        .unwrap();
    assert_eq!(data(&patched)["added"], "2");
    assert_eq!(patched.labels()["json"], "patched");
    let failing: json_patch::Patch = from_json(json!([{"op": "test", "path": "/data/added", "value": "1"}]));
    let err = api_error(step(cms.patch("beta", &PatchParams::default(), &Patch::Json::<()>(failing))).await);
    assert!(err.code == 422 || err.code == 409 || err.code == 400, "{err:?}");
    assert_eq!(data(&step(cms.get("beta")).await.unwrap())["added"], "2");

    // Patching something that does not exist is a 404.
    let err = api_error(step(cms.patch("nope", &PatchParams::default(), &Patch::Merge(json!({"data": {}})))).await);
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"), "{err:?}");

    // Delete: the object comes back (no finalizers), then it is gone.
    let deleted = step(cms.delete("gamma", &DeleteParams::default())).await.unwrap();
    let gone = deleted
        .left()
        .expect("a config map without finalizers is deleted at once");
    assert_eq!(gone.name_any(), "gamma");
    assert_eq!(step(cms.get_opt("gamma")).await.unwrap(), None);
    let err = api_error(step(cms.delete("gamma", &DeleteParams::default())).await);
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"), "{err:?}");
    let left = step(cms.list(&ListParams::default().labels("tier"))).await.unwrap();
    assert_eq!(names(left.items), ["alpha", "beta"]);

    // Namespaces: patch labels, then delete (it terminates and takes its objects along).
    let labelled = step(namespaces.patch(
        "typed",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"phase": "done"}}})),
    ))
    .await
    .unwrap();
    assert_eq!(labelled.labels()["phase"], "done");
    step(namespaces.delete("typed", &DeleteParams::default()))
        .await
        .unwrap();
    let deadline = Instant::now() + STEP;
    while step(namespaces.get_opt("typed")).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "namespace typed was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = api_error(step(cms.get("alpha")).await);
    assert_eq!(err.code, 404, "{err:?}");
}

#[tokio::test]
async fn deployments_and_strategic_merge_patch() {
    let c = Cluster::start().await;
    c.namespace("apps").await;
    let deployments: Api<Deployment> = c.api("apps");
    let deployment: Deployment = from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "app", "image": "busybox", "env": [{"name": "MODE", "value": "one"}, {"name": "KEEP", "value": "k"}]},
                    {"name": "sidecar", "image": "busybox"},
                ]},
            },
        },
    }));
    let created = step(deployments.create(&PostParams::default(), &deployment))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let listed = step(deployments.list(&ListParams::default().labels("app=web")))
        .await
        .unwrap();
    assert_eq!(names(listed.items), ["web"]);

    let containers = |d: &Deployment| d.spec.clone().unwrap().template.spec.unwrap().containers;

    // Strategic merge patch: containers merge by name, env entries merge by name.
    let patched = step(deployments.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "app", "image": "busybox:1.36", "env": [{"name": "MODE", "value": "two"}]},
        ]}}}})),
    ))
    .await
    .unwrap();
    let cs = containers(&patched);
    assert_eq!(
        names_of(&cs),
        ["app", "sidecar"],
        "the sidecar survives a strategic merge"
    );
    assert_eq!(cs[0].image.as_deref(), Some("busybox:1.36"));
    let env: Vec<(String, Option<String>)> = cs[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(
        env,
        [
            ("MODE".to_string(), Some("two".to_string())),
            ("KEEP".to_string(), Some("k".to_string()))
        ]
    );
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );

    // A new container is added, the `$patch: delete` directive removes one.
    let patched = step(deployments.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"},
            {"name": "logger", "image": "busybox"},
        ]}}}})),
    ))
    .await
    .unwrap();
    let mut got = names_of(&containers(&patched));
    got.sort();
    assert_eq!(got, ["app", "logger"]);

    // A JSON merge patch replaces the list as a whole.
    let patched = step(deployments.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "busybox"}]}}}})),
    ))
    .await
    .unwrap();
    assert_eq!(names_of(&containers(&patched)), ["only"]);

    // A JSON patch addresses list entries by index.
    let ops: json_patch::Patch = from_json(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "busybox:stable"},
    ]));
    let patched = step(deployments.patch("web", &PatchParams::default(), &Patch::Json::<()>(ops)))
        .await
        .unwrap();
    assert_eq!(containers(&patched)[0].image.as_deref(), Some("busybox:stable"));

    // Replace with a stale resourceVersion is a conflict, with a fresh one it works.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().replicas = Some(9);
    let conflict = api_error(step(deployments.replace("web", &PostParams::default(), &stale)).await);
    assert_eq!(
        (conflict.code, conflict.reason.as_str()),
        (409, "Conflict"),
        "{conflict:?}"
    );
    // The deployment controller writes the object too (status, revision
    // annotation), so a fresh read-modify-replace may race it: retry on 409 as
    // clients do against any cluster.
    let mut replaced = None;
    for _ in 0..20 {
        let mut fresh = step(deployments.get("web")).await.unwrap();
        fresh.spec.as_mut().unwrap().replicas = Some(1);
        match step(deployments.replace("web", &PostParams::default(), &fresh)).await {
            Ok(deployment) => {
                replaced = Some(deployment);
                break;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => panic!("replace failed: {err}"),
        }
    }
    let replaced = replaced.expect("replace succeeds within 20 attempts");
    assert_eq!(replaced.spec.unwrap().replicas, Some(1));

    // An invalid deployment (selector does not match the template) is a 422.
    let mut invalid = deployment.clone();
    invalid.metadata.name = Some("broken".into());
    invalid.spec.as_mut().unwrap().selector.match_labels = Some(BTreeMap::from([("app".into(), "other".into())]));
    let err = api_error(step(deployments.create(&PostParams::default(), &invalid)).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{err:?}");

    step(deployments.delete("web", &DeleteParams::default())).await.unwrap();
    assert!(step(deployments.get_opt("web")).await.unwrap().is_none());
}

fn names_of(containers: &[k8s_openapi::api::core::v1::Container]) -> Vec<String> {
    containers.iter().map(|c| c.name.clone()).collect()
}

/// The next watcher event as `Kind(name)`, failing after [`STEP`] or on an error.
async fn next_event<S>(stream: &mut S) -> Event<ConfigMap>
where
    S: Stream<Item = watcher::Result<Event<ConfigMap>>> + Unpin,
{
    match step(stream.next()).await {
        Some(Ok(event)) => event,
        Some(Err(e)) => panic!("watcher error: {e:?}"),
        None => panic!("watcher stream ended"),
    }
}

/// Drives a watcher through its initial list and a series of changes.
async fn watcher_sees_init_and_changes(streaming: bool) {
    let c = Cluster::start().await;
    c.namespace("watched").await;
    let cms: Api<ConfigMap> = c.api("watched");
    for name in ["a", "b", "c"] {
        step(cms.create(
            &PostParams::default(),
            &config_map(name, json!({"watch": "me"}), json!({})),
        ))
        .await
        .unwrap();
    }
    step(cms.create(&PostParams::default(), &config_map("other", json!({}), json!({}))))
        .await
        .unwrap();

    let mut config = watcher::Config::default().labels("watch=me");
    if streaming {
        config = config.streaming_lists();
    }
    let mut events = Box::pin(watcher::watcher(cms.clone(), config));
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut events).await;
        let done = matches!(event, Event::InitDone);
        seen.push(event.to_string());
        if done {
            break;
        }
    }
    assert_eq!(
        seen,
        ["Init", "InitApply(a)", "InitApply(b)", "InitApply(c)", "InitDone"]
    );

    // Changes made after the initial list arrive as Apply and Delete.
    let d = step(cms.create(
        &PostParams::default(),
        &config_map("d", json!({"watch": "me"}), json!({"v": "1"})),
    ))
    .await
    .unwrap();
    let event = next_event(&mut events).await;
    let Event::Apply(applied) = &event else {
        panic!("expected Apply(d), got {event}")
    };
    assert_eq!(applied.name_any(), "d");
    assert_eq!(applied.resource_version(), d.resource_version());

    // A change to an object outside the selector is not seen; the next one is.
    step(cms.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "y"}})),
    ))
    .await
    .unwrap();
    let modified = step(cms.patch("d", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))))
        .await
        .unwrap();
    let event = next_event(&mut events).await;
    let Event::Apply(applied) = &event else {
        panic!("expected Apply(d), got {event}")
    };
    assert_eq!((applied.name_any(), data(applied)["v"].as_str()), ("d".into(), "2"));
    assert_eq!(applied.resource_version(), modified.resource_version());

    step(cms.delete("a", &DeleteParams::default())).await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event.to_string(), "Delete(a)");

    // Losing the label leaves the selector: a Delete for this watcher.
    step(cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watch": null}}})),
    ))
    .await
    .unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event.to_string(), "Delete(b)");
    // ... and gaining it back is an Apply.
    step(cms.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watch": "me"}}})),
    ))
    .await
    .unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event.to_string(), "Apply(other)");
}

#[tokio::test]
async fn watcher_list_then_watch() {
    watcher_sees_init_and_changes(false).await;
}

#[tokio::test]
async fn watcher_streaming_list() {
    watcher_sees_init_and_changes(true).await;
}

/// name → resourceVersion of every object in `objects`.
fn versions<'a>(objects: impl IntoIterator<Item = &'a ConfigMap>) -> BTreeMap<String, String> {
    objects
        .into_iter()
        .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
        .collect()
}

/// Waits until `store` holds exactly what the server lists.
async fn converges(store: &Store<ConfigMap>, cms: &Api<ConfigMap>) {
    let deadline = Instant::now() + STEP;
    loop {
        let server = versions(&step(cms.list(&ListParams::default())).await.unwrap().items);
        let state = store.state();
        let local = versions(state.iter().map(|o| o.as_ref()));
        if local == server {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the reflector store did not converge:\nstore:  {local:?}\nserver: {server:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reflector_store_converges() {
    let c = Cluster::start().await;
    c.namespace("mirrored").await;
    let cms: Api<ConfigMap> = c.api("mirrored");
    for i in 0..30 {
        let cm = config_map(&format!("pre-{i:02}"), json!({}), json!({"i": i.to_string()}));
        step(cms.create(&PostParams::default(), &cm)).await.unwrap();
    }

    let (store, writer) = reflector::store::<ConfigMap>();
    // A small page size so the initial list takes several pages (limit/continue).
    let stream = reflector::reflector(
        writer,
        watcher::watcher(cms.clone(), watcher::Config::default().page_size(7)),
    );
    let driver = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                panic!("watcher error: {e:?}");
            }
        }
    });
    step(store.wait_until_ready()).await.expect("the store becomes ready");
    assert_eq!(store.len(), 30);
    converges(&store, &cms).await;

    // Changes while the reflector runs: creates, updates, deletes, concurrently.
    let mut writers = Vec::new();
    for w in 0..4 {
        let cms = cms.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..15 {
                let name = format!("w{w}-{i:02}");
                step(cms.create(&PostParams::default(), &config_map(&name, json!({}), json!({}))))
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    step(cms.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"u": "1"}})),
                    ))
                    .await
                    .unwrap();
                }
                if i % 5 == 0 {
                    step(cms.delete(&name, &DeleteParams::default())).await.unwrap();
                }
                let pre = format!("pre-{:02}", w * 7 + i % 7);
                let _ = step(cms.delete(&pre, &DeleteParams::default())).await;
            }
        }));
    }
    for w in writers {
        step(w).await.unwrap();
    }
    converges(&store, &cms).await;
    let server = step(cms.list(&ListParams::default())).await.unwrap();
    assert_eq!(store.len(), server.items.len());
    assert_eq!(store.len(), 30 - 28 + 4 * 12, "{:?}", versions(&server.items).keys());
    // Objects in the store are the full objects, not just names.
    let one = store.find(|o| o.name_any() == "w0-03").expect("w0-03 is in the store");
    assert_eq!(data(&one)["u"], "1");
    driver.abort();
}
