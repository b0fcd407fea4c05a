//! The API server in-process (router as a tower service over a real store).

use super::*;
use axum::http::Request as HttpRequest;
use serde_json::json;
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    app: Router,
    store: Store,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db"), crate::store::Options::default()).unwrap();
    let api = Api::new(store.clone(), "127.0.0.1:6443".into(), kinds::default_ranges());
    bootstrap(&api).await.unwrap();
    Harness {
        _dir: dir,
        app: router(api, Arc::new(auth::Authenticator::new())),
        store,
    }
}

impl Harness {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .extension(auth::User::new("tester", ["system:masters"]));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    request = request.header("content-type", "application/json");
                }
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = self.app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn json(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        let (code, text) = self.call(method, uri, body, &[]).await;
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[tokio::test]
async fn discovery_and_version() {
    let h = harness().await;
    let (code, v) = h.json("GET", "/version", None).await;
    assert_eq!((code, v["major"].as_str()), (200, Some("1")));
    let (_, core) = h.json("GET", "/api", None).await;
    assert_eq!(core["versions"], json!(["v1"]));
    let (_, apps) = h.json("GET", "/apis/apps/v1", None).await;
    assert!(
        apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments")
    );
    let (code, body) = h.call("GET", "/apis/nope/v1/things", None, &[]).await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"the server could not find the requested resource\",\"reason\":\"NotFound\",\"code\":404}\n"
    );
}

#[tokio::test]
async fn create_get_update_conflict_delete() {
    let h = harness().await;
    let (code, created) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("a", json!({}))),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert_eq!(rv, h.store.revision().to_string());
    assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);

    let (code, again) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("a", json!({}))),
        )
        .await;
    assert_eq!((code, again["reason"].as_str()), (409, Some("AlreadyExists")));

    let mut changed = created.clone();
    changed["data"]["k"] = json!("v2");
    let (code, updated) = h
        .json("PUT", "/api/v1/namespaces/default/configmaps/a", Some(changed.clone()))
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_ne!(updated["metadata"]["resourceVersion"].as_str().unwrap(), rv);
    let (code, stale) = h
        .json("PUT", "/api/v1/namespaces/default/configmaps/a", Some(changed))
        .await;
    assert_eq!((code, stale["reason"].as_str()), (409, Some("Conflict")));

    let (code, got) = h.json("GET", "/api/v1/namespaces/default/configmaps/a", None).await;
    assert_eq!((code, got["data"]["k"].as_str()), (200, Some("v2")));
    let (code, _) = h.json("DELETE", "/api/v1/namespaces/default/configmaps/a", None).await;
    assert_eq!(code, 200);
    let (code, missing) = h.json("GET", "/api/v1/namespaces/default/configmaps/a", None).await;
    assert_eq!(
        (code, missing["message"].as_str()),
        (404, Some("configmaps \"a\" not found"))
    );
}

#[tokio::test]
async fn bad_input_gets_status_errors() {
    let h = harness().await;
    let (code, v) = h
        .json(
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            Some(configmap("a", json!({}))),
        )
        .await;
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("namespaces \"nowhere\" not found"))
    );
    let (code, v) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("Bad_Name", json!({}))),
        )
        .await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    let (code, _) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(json!({})),
            &[("content-type", "text/csv")],
        )
        .await;
    assert_eq!(code, 415);
    let big = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(4 * 1024 * 1024)}});
    let (code, _) = h.json("POST", "/api/v1/namespaces/default/configmaps", Some(big)).await;
    assert_eq!(code, 413);
    let (code, v) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"kind": "Pod", "metadata": {"name": "x"}})),
        )
        .await;
    assert_eq!((code, v["reason"].as_str()), (400, Some("BadRequest")));
    let (code, _) = h
        .json("PUT", "/api/v1/namespaces/default/configmaps", Some(json!({})))
        .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn list_with_selectors_and_pages() {
    let h = harness().await;
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        let (code, _) = h
            .json(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(configmap(&format!("cm{i}"), json!({"tier": tier}))),
            )
            .await;
        assert_eq!(code, 201);
    }
    let (_, even) = h
        .json(
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Deven",
            None,
        )
        .await;
    assert_eq!(even["items"].as_array().unwrap().len(), 4);
    let (_, named) = h
        .json("GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm3", None)
        .await;
    assert_eq!(named["items"].as_array().unwrap().len(), 1);

    let mut names = Vec::new();
    let mut uri = "/api/v1/namespaces/default/configmaps?limit=3".to_string();
    let mut pages = 0;
    let mut revisions = Vec::new();
    loop {
        let (code, page) = h.json("GET", &uri, None).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        revisions.push(page["metadata"]["resourceVersion"].clone());
        for item in page["items"].as_array().unwrap() {
            names.push(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        // A write between pages does not change what the pages show.
        h.json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap(&format!("late{pages}"), json!({}))),
        )
        .await;
        match page["metadata"]["continue"].as_str() {
            Some(token) => uri = format!("/api/v1/namespaces/default/configmaps?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("cm{i}")).collect::<Vec<_>>());
    assert!(revisions.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_ends_at_timeout() {
    let h = harness().await;
    let (_, list) = h.json("GET", "/api/v1/namespaces/default/configmaps", None).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    h.json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(configmap("w", json!({}))),
    )
    .await;
    let (_, mut cm) = h.json("GET", "/api/v1/namespaces/default/configmaps/w", None).await;
    cm["data"]["k"] = json!("changed");
    h.json("PUT", "/api/v1/namespaces/default/configmaps/w", Some(cm)).await;
    h.json("DELETE", "/api/v1/namespaces/default/configmaps/w", None).await;

    let (code, body) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 200);
    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(body.ends_with('\n'));
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_an_expired_error_event() {
    let h = harness().await;
    for i in 0..3 {
        h.json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap(&format!("c{i}"), json!({}))),
        )
        .await;
    }
    h.store.compact(h.store.revision(), false).await.unwrap();
    let (code, body) = h
        .call(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2",
            None,
            &[],
        )
        .await;
    assert_eq!(code, 200);
    let event: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(
        (event["object"]["code"].as_i64(), event["object"]["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
}

#[tokio::test]
async fn patches_merge_and_json() {
    let h = harness().await;
    h.json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(configmap("p", json!({"a": "1"}))),
    )
    .await;
    let (code, merged) = h
        .call(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/p",
            Some(json!({"metadata": {"labels": {"a": null, "b": "2"}}, "data": {"x": "y"}})),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 200, "{merged}");
    let merged: Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(merged["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(merged["data"], json!({"k": "v", "x": "y"}));
    let (code, patched) = h
        .call(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/p",
            Some(json!([{"op": "replace", "path": "/data/k", "value": "w"}])),
            &[("content-type", "application/json-patch+json")],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&patched).unwrap()["data"]["k"], "w");
    let (code, _) = h
        .call(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/p",
            Some(json!([{"op": "test", "path": "/data/k", "value": "nope"}])),
            &[("content-type", "application/json-patch+json")],
        )
        .await;
    assert_eq!(code, 422);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let h = harness().await;
    let mut cm = configmap("f", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    h.json("POST", "/api/v1/namespaces/default/configmaps", Some(cm)).await;
    let (code, held) = h.json("DELETE", "/api/v1/namespaces/default/configmaps/f", None).await;
    assert_eq!(code, 200);
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let (code, _) = h.json("GET", "/api/v1/namespaces/default/configmaps/f", None).await;
    assert_eq!(code, 200, "still there while a finalizer remains");
    let (code, _) = h
        .call(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/f",
            Some(json!({"metadata": {"finalizers": null}})),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = h.json("GET", "/api/v1/namespaces/default/configmaps/f", None).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn propagation_policies_set_the_garbage_collector_finalizers() {
    let h = harness().await;
    let uri = "/api/v1/namespaces/default/configmaps";
    for name in ["orphaned", "foreground", "background", "query"] {
        h.json("POST", uri, Some(configmap(name, json!({})))).await;
    }
    let (code, held) = h
        .json(
            "DELETE",
            &format!("{uri}/orphaned"),
            Some(json!({"propagationPolicy": "Orphan"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(held["metadata"]["finalizers"], json!(["orphan"]));
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    // A second delete may change the policy of a pending deletion.
    let (_, switched) = h
        .json(
            "DELETE",
            &format!("{uri}/orphaned"),
            Some(json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(switched["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (_, held) = h
        .json(
            "DELETE",
            &format!("{uri}/foreground"),
            Some(json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(held["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (_, gone) = h
        .json(
            "DELETE",
            &format!("{uri}/background"),
            Some(json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert!(gone["metadata"]["finalizers"].is_null());
    let (code, _) = h.json("GET", &format!("{uri}/background"), None).await;
    assert_eq!(code, 404, "background deletion removes the owner at once");
    let (_, held) = h
        .json("DELETE", &format!("{uri}/query?propagationPolicy=Orphan"), None)
        .await;
    assert_eq!(held["metadata"]["finalizers"], json!(["orphan"]));
    let (code, body) = h
        .json(
            "DELETE",
            &format!("{uri}/query"),
            Some(json!({"propagationPolicy": "Sideways"})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let (code, _) = h
        .json(
            "DELETE",
            &format!("{uri}/query"),
            Some(json!({"propagationPolicy": "Orphan", "orphanDependents": true})),
        )
        .await;
    assert_eq!(code, 422);

    // A pod on a node deleted in the foreground: the kubelet's final delete shortens
    // the grace period while the finalizer holds it; once the finalizer goes, so does it.
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    h.json("POST", pods, Some(pod)).await;
    let (_, terminating) = h
        .json(
            "DELETE",
            &format!("{pods}/p"),
            Some(json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, held) = h.json("DELETE", &format!("{pods}/p?gracePeriodSeconds=0"), None).await;
    assert_eq!(code, 200);
    assert_eq!(held["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(held["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (code, _) = h
        .call(
            "PATCH",
            &format!("{pods}/p"),
            Some(json!({"metadata": {"finalizers": null}})),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(h.json("GET", &format!("{pods}/p"), None).await.0, 404);
}

#[tokio::test]
async fn namespaces_terminate_until_finalized() {
    let h = harness().await;
    let (code, ns) = h
        .json(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "temp"}})),
        )
        .await;
    assert_eq!((code, ns["status"]["phase"].as_str()), (201, Some("Active")));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    h.json(
        "POST",
        "/api/v1/namespaces/temp/configmaps",
        Some(configmap("x", json!({}))),
    )
    .await;
    // The API only marks it: emptying it is the namespace controller's job.
    let (code, ns) = h.json("DELETE", "/api/v1/namespaces/temp", None).await;
    assert_eq!((code, ns["status"]["phase"].as_str()), (200, Some("Terminating")));
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let (code, _) = h
        .json(
            "POST",
            "/api/v1/namespaces/temp/configmaps",
            Some(configmap("y", json!({}))),
        )
        .await;
    assert_eq!(code, 403, "no new content in a terminating namespace");
    assert_eq!(h.json("GET", "/api/v1/namespaces/temp/configmaps/x", None).await.0, 200);
    // Removing the last finalizer through `finalize` deletes it.
    let mut finalized = ns.clone();
    finalized["spec"]["finalizers"] = json!([]);
    let (code, _) = h.json("PUT", "/api/v1/namespaces/temp/finalize", Some(finalized)).await;
    assert_eq!(code, 200);
    assert_eq!(h.json("GET", "/api/v1/namespaces/temp", None).await.0, 404);

    // A namespace without finalizers goes at once.
    h.json(
        "POST",
        "/api/v1/namespaces",
        Some(json!({"metadata": {"name": "bare"}, "spec": {"finalizers": []}})),
    )
    .await;
    assert_eq!(h.json("DELETE", "/api/v1/namespaces/bare", None).await.0, 200);
    assert_eq!(h.json("GET", "/api/v1/namespaces/bare", None).await.0, 404);
}

#[tokio::test]
async fn tables_for_kubectl() {
    let h = harness().await;
    let (code, body) = h
        .call(
            "GET",
            "/api/v1/namespaces",
            None,
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
        )
        .await;
    assert_eq!(code, 200);
    let table: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cells"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    assert_eq!(table["rows"][0]["cells"][1], "Active");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports_that_are_released() {
    let h = harness().await;
    let (code, k8s) = h
        .json("GET", "/api/v1/namespaces/default/services/kubernetes", None)
        .await;
    assert_eq!((code, k8s["spec"]["clusterIP"].as_str()), (200, Some("10.43.0.1")));
    let (_, eps) = h
        .json("GET", "/api/v1/namespaces/default/endpoints/kubernetes", None)
        .await;
    assert_eq!(eps["subsets"][0]["ports"][0]["port"], 6443);

    let (code, a) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(service("a", json!({"type": "NodePort", "ports": [{"port": 80}]}))),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
    let node_port = a["spec"]["ports"][0]["nodePort"].as_i64().unwrap();

    let (code, clash) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(service("b", json!({"clusterIP": ip, "ports": [{"port": 80}]}))),
        )
        .await;
    assert_eq!(code, 422, "{clash}");
    assert!(clash["message"].as_str().unwrap().contains("already allocated"));
    let (code, _) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(service(
                "c",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": node_port}]}),
            )),
        )
        .await;
    assert_eq!(code, 422);

    // An update without the IP keeps it; changing it is refused.
    let mut update = a.clone();
    update["spec"].as_object_mut().unwrap().remove("clusterIP");
    update["spec"].as_object_mut().unwrap().remove("clusterIPs");
    update["metadata"]["labels"] = json!({"x": "y"});
    let (code, updated) = h
        .json("PUT", "/api/v1/namespaces/default/services/a", Some(update))
        .await;
    assert_eq!(
        (code, updated["spec"]["clusterIP"].as_str()),
        (200, Some(ip.as_str())),
        "{updated}"
    );
    let mut moved = updated.clone();
    moved["spec"]["clusterIP"] = json!("10.43.9.9");
    moved["spec"]["clusterIPs"] = json!(["10.43.9.9"]);
    let (code, _) = h
        .json("PUT", "/api/v1/namespaces/default/services/a", Some(moved))
        .await;
    assert_eq!(code, 422);

    // Deleting the Service frees its IP and port for the next one.
    let (code, _) = h.json("DELETE", "/api/v1/namespaces/default/services/a", None).await;
    assert_eq!(code, 200);
    let (code, reuse) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(service(
                "d",
                json!({"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": node_port}]}),
            )),
        )
        .await;
    assert_eq!(code, 201, "{reuse}");
    let reservations = h
        .store
        .range(crate::store::Range::of(crate::store::KeyRange::prefix(
            "/registry/ranges/",
        )))
        .await;
    assert_eq!(
        reservations.unwrap().count,
        3,
        "kubernetes' IP, d's IP and d's node port"
    );
}

#[tokio::test]
async fn workloads_and_pods_get_defaults_and_validation() {
    let h = harness().await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}}});
    let (code, created) = h
        .json(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            Some(deployment.clone()),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["replicas"], 1);
    assert_eq!(created["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let pod_spec = &created["spec"]["template"]["spec"];
    assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod_spec["dnsPolicy"], "ClusterFirst");

    let mut bad = deployment.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    bad["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let (code, invalid) = h
        .json("POST", "/apis/apps/v1/namespaces/default/deployments", Some(bad))
        .await;
    assert_eq!(code, 422);
    let fields: Vec<&str> = invalid["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.template.metadata.labels",
            "spec.template.spec.containers[0].image"
        ]
    );

    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Running"}});
    let (code, pod) = h.json("POST", "/api/v1/namespaces/default/pods", Some(pod)).await;
    assert_eq!(code, 201);
    assert_eq!(
        pod["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"}),
        "status is the server's"
    );
}

fn crontab_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                        "cronSpec": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1, "default": 1}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}})
}

#[tokio::test]
async fn custom_resources_are_served_validated_and_removed_with_their_crd() {
    let h = harness().await;
    let (code, crd) = h
        .json(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(crontab_crd()),
        )
        .await;
    assert_eq!(code, 201, "{crd}");
    assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
    let (code, discovery) = h.json("GET", "/apis/stable.example.com/v1", None).await;
    assert_eq!(code, 200);
    assert_eq!(discovery["resources"][0]["name"], "crontabs");

    let base = "/apis/stable.example.com/v1/namespaces/default/crontabs";
    let cr = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c1"},
        "spec": {"cronSpec": "* * * * */5", "unknown": true}});
    let (code, created) = h.json("POST", base, Some(cr.clone())).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"],
        json!({"cronSpec": "* * * * */5", "replicas": 1}),
        "pruned and defaulted"
    );
    assert_eq!(created["metadata"]["generation"], 1);

    let mut strict = cr.clone();
    strict["metadata"]["name"] = json!("c2");
    let (code, refused) = h
        .json("POST", &format!("{base}?fieldValidation=Strict"), Some(strict))
        .await;
    assert_eq!(code, 400);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.unknown\"")
    );
    let invalid = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c3"},
        "spec": {"replicas": 0}});
    let (code, refused) = h.json("POST", base, Some(invalid)).await;
    assert_eq!(code, 422, "{refused}");

    let (code, with_status) = h
        .call(
            "PATCH",
            &format!("{base}/c1/status"),
            Some(json!({"status": {"phase": "Ok"}})),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 200, "{with_status}");
    let (_, list) = h.json("GET", "/apis/stable.example.com/v1/crontabs", None).await;
    assert_eq!(list["items"][0]["status"]["phase"], "Ok");

    let (code, _) = h
        .json(
            "DELETE",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.stable.example.com",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(h.json("GET", base, None).await.0, 404, "no longer served");
    for _ in 0..50 {
        let left = h
            .store
            .range(crate::store::Range::of(crate::store::KeyRange::prefix(
                "/registry/stable.example.com/",
            )))
            .await;
        if left.unwrap().count == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the CRD's objects were not removed");
}

#[tokio::test]
async fn binding_eviction_and_graceful_pod_deletion() {
    let h = harness().await;
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 20}})
    };
    let pods = "/api/v1/namespaces/default/pods";
    h.json("POST", pods, Some(pod("a"))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = h
        .json("POST", &format!("{pods}/a/binding"), Some(binding.clone()))
        .await;
    assert_eq!(code, 201);
    let (_, bound) = h.json("GET", &format!("{pods}/a"), None).await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, again) = h.json("POST", &format!("{pods}/a/binding"), Some(binding)).await;
    assert_eq!((code, again["reason"].as_str()), (409, Some("Conflict")));

    // A pod on a node terminates gracefully; a forced delete finishes it.
    let (code, terminating) = h.json("DELETE", &format!("{pods}/a"), None).await;
    assert_eq!(
        (code, terminating["metadata"]["deletionGracePeriodSeconds"].as_i64()),
        (200, Some(20))
    );
    let (_, mut still) = h.json("GET", &format!("{pods}/a"), None).await;
    still["status"]["phase"] = json!("Running");
    let (code, _) = h.json("PUT", &format!("{pods}/a/status"), Some(still)).await;
    assert_eq!(code, 200, "a terminating pod still takes status updates");
    let (code, _) = h.json("DELETE", &format!("{pods}/a?gracePeriodSeconds=0"), None).await;
    assert_eq!(code, 200);
    assert_eq!(h.json("GET", &format!("{pods}/a"), None).await.0, 404);

    // Eviction honours PodDisruptionBudgets: a running pod a budget selects goes
    // only when the budget's status (the disruption controller's) allows it.
    h.json("POST", pods, Some(pod("b"))).await;
    let (_, mut running) = h.json("GET", &format!("{pods}/b"), None).await;
    running["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    assert_eq!(h.json("PUT", &format!("{pods}/b/status"), Some(running)).await.0, 200);
    let budgets = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    h.json("POST", budgets, Some(pdb)).await;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "b"}});
    let evict_uri = format!("{pods}/b/eviction");
    let evict = || h.json("POST", &evict_uri, Some(eviction.clone()));
    let (code, refused) = evict().await;
    assert_eq!(
        (code, refused["reason"].as_str()),
        (429, Some("TooManyRequests")),
        "{refused}"
    );
    assert_eq!(
        refused["details"]["causes"][0]["message"],
        "The disruption budget db is still being processed by the server."
    );
    let set_status = |allowed: i64| {
        let h = &h;
        async move {
            let (_, mut budget) = h.json("GET", &format!("{budgets}/db"), None).await;
            budget["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": allowed,
                "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
            assert_eq!(
                h.json("PUT", &format!("{budgets}/db/status"), Some(budget)).await.0,
                200
            );
        }
    };
    set_status(0).await;
    let (code, refused) = evict().await;
    assert_eq!(code, 429);
    assert_eq!(
        refused["details"]["causes"][0],
        json!({"reason": "DisruptionBudget", "message": "The disruption budget db needs 1 healthy pods and has 1 currently"})
    );
    set_status(1).await;
    assert_eq!(evict().await.0, 201);
    assert_eq!(h.json("GET", &format!("{pods}/b"), None).await.0, 404);
    let (_, budget) = h.json("GET", &format!("{budgets}/db"), None).await;
    assert_eq!(
        budget["status"]["disruptionsAllowed"], 0,
        "the eviction took the disruption"
    );
    assert!(budget["status"]["disruptedPods"]["b"].is_string());
    assert_eq!(budget["status"]["conditions"][0]["reason"], "InsufficientPods");

    // A pod that is not running yet is evicted whatever the budget says.
    h.json("POST", pods, Some(pod("c"))).await;
    let pending = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "c"}});
    assert_eq!(
        h.json("POST", &format!("{pods}/c/eviction"), Some(pending)).await.0,
        201
    );
    assert_eq!(h.json("GET", &format!("{pods}/c"), None).await.0, 404);
}

#[tokio::test]
async fn partial_object_metadata_for_metadata_clients() {
    let h = harness().await;
    h.json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(configmap("m", json!({"a": "b"}))),
    )
    .await;
    let accept = [(
        "accept",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    )];
    let (code, body) = h
        .call("GET", "/api/v1/namespaces/default/configmaps", None, &accept)
        .await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["metadata"]["labels"]["a"], "b");
    assert!(list["items"][0].get("data").is_none());
    let one = [("accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")];
    let (_, body) = h
        .call("GET", "/api/v1/namespaces/default/configmaps/m", None, &one)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["kind"],
        "PartialObjectMetadata"
    );
}

#[tokio::test]
async fn health_checks_and_metrics() {
    let h = harness().await;
    assert_eq!(h.call("GET", "/readyz", None, &[]).await, (200, "ok".to_string()));
    let (code, verbose) = h.call("GET", "/readyz?verbose", None, &[]).await;
    assert_eq!(code, 200);
    assert_eq!(verbose, "[+]ping ok\n[+]etcd ok\nreadyz check passed\n");
    let (code, excluded) = h
        .call("GET", "/livez?verbose&exclude=etcd&exclude=nope", None, &[])
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        excluded,
        "[+]ping ok\n[+]etcd excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nlivez check passed\n"
    );
    assert_eq!(h.call("GET", "/livez/etcd", None, &[]).await.0, 200);
    assert_eq!(h.call("GET", "/livez/nope", None, &[]).await.0, 404);
    h.call("GET", "/api/v1/namespaces", None, &[]).await;
    h.call("GET", "/api/v1/namespaces/missing", None, &[]).await;
    let cm = configmap("counted", json!({}));
    h.json(
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        Some(cm.clone()),
    )
    .await;
    h.json("POST", "/api/v1/namespaces/default/configmaps", Some(cm)).await;
    h.call(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/counted?fieldManager=t",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "counted"}})),
        &[("content-type", "application/apply-patch+yaml")],
    )
    .await;
    h.call("DELETE", "/api/v1/namespaces/default/configmaps", None, &[])
        .await;
    let (code, metrics) = h.call("GET", "/metrics", None, &[]).await;
    assert_eq!(code, 200);
    let count = |code: u16, dry_run: &str, resource: &str, scope: &str, verb: &str| {
        format!(
            r#"apiserver_request_total{{code="{code}",component="apiserver",dry_run="{dry_run}",group="",resource="{resource}",scope="{scope}",subresource="",verb="{verb}",version="v1"}} 1"#
        )
    };
    for expected in [
        count(200, "", "namespaces", "cluster", "LIST"),
        count(404, "", "namespaces", "resource", "GET"),
        count(201, "All", "configmaps", "namespace", "POST"),
        count(201, "", "configmaps", "namespace", "POST"),
        count(200, "", "configmaps", "resource", "APPLY"),
        count(200, "", "configmaps", "namespace", "DELETECOLLECTION"),
    ] {
        assert!(metrics.contains(&expected), "{expected} in {metrics}");
    }
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket{"));
}

#[test]
fn resource_versions_are_spliced_into_the_top_level_metadata() {
    let kv = |value: &str| crate::store::KeyValue {
        key: b"/k".to_vec(),
        value: value.as_bytes().to_vec(),
        mod_revision: 42,
        ..Default::default()
    };
    for stored in [
        r#"{"aaa":{"metadata":{"x":1}},"kind":"T","metadata":{"name":"a"}}"#,
        r#"{"data":{"k":"\"metadata\":{"},"metadata":{}}"#,
        r#"{"metadata" : { "name" : "b" } , "spec":[{"metadata":{}}]}"#,
        r#"{"kind":"NoMetadata"}"#,
    ] {
        let spliced: Value = serde_json::from_slice(&handlers::object_bytes(&kv(stored)).unwrap()).unwrap();
        let mut expected: Value = serde_json::from_str(stored).unwrap();
        handlers::set_resource_version(&mut expected, 42);
        assert_eq!(spliced, expected, "{stored}");
    }
}

#[tokio::test]
async fn events_are_one_storage_served_by_both_apis_and_expire() {
    let h = harness().await;
    let recorded = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "default-scheduler",
        "reportingInstance": "kube", "action": "Binding", "reason": "Scheduled", "type": "Normal",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web"},
        "note": "Successfully assigned default/web to n1"
    });
    let (code, created) = h
        .json(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            Some(recorded),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["regarding"]["name"], "web");
    let (code, list) = h
        .json(
            "GET",
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let core = &list["items"][0];
    assert_eq!(core["message"], "Successfully assigned default/web to n1");
    assert_eq!(core["reportingComponent"], "default-scheduler");
    assert_eq!(
        core["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    let legacy = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.2"},
        "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Pulled", "message": "pulled", "count": 3});
    assert_eq!(
        h.json("POST", "/api/v1/namespaces/default/events", Some(legacy))
            .await
            .0,
        201
    );
    let (code, served) = h
        .json("GET", "/apis/events.k8s.io/v1/namespaces/default/events/web.2", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (served["note"].as_str(), served["deprecatedCount"].as_i64()),
        (Some("pulled"), Some(3))
    );
    // Patching through events.k8s.io updates the stored core/v1 event.
    let patch = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}});
    let (code, _) = h
        .call(
            "PATCH",
            "/apis/events.k8s.io/v1/namespaces/default/events/web.1",
            Some(patch),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 200);
    let (_, core) = h.json("GET", "/api/v1/namespaces/default/events/web.1", None).await;
    assert_eq!(core["series"]["count"], 2);
    assert_eq!(core["involvedObject"]["name"], "web");

    // Both writes share one lease of an hour (plus the reuse minute).
    let stored = h
        .store
        .get(b"/registry/events/default/web.1".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.lease, 0);
    let other = h
        .store
        .get(b"/registry/events/default/web.2".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.lease, other.lease);
    let cm = h
        .store
        .get(b"/registry/configmaps/default/kube-root-ca.crt".to_vec())
        .await
        .unwrap();
    assert!(cm.is_none_or(|kv| kv.lease == 0));
}

#[tokio::test]
async fn strict_field_validation_names_unknown_fields_of_built_in_kinds() {
    let h = harness().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicyy": "Always"}]}});
    let (code, status) = h
        .json(
            "POST",
            "/api/v1/namespaces/default/pods?fieldValidation=Strict",
            Some(pod.clone()),
        )
        .await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.containers[0].imagePullPolicyy\""
    );
    // Without Strict the object is accepted as before.
    assert_eq!(
        h.json("POST", "/api/v1/namespaces/default/pods", Some(pod)).await.0,
        201
    );
}

#[tokio::test]
async fn racing_patches_are_retried_unless_they_pin_a_version() {
    let h = harness().await;
    h.json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(configmap("race", json!({}))),
    )
    .await;
    let uri = "/api/v1/namespaces/default/configmaps/race";
    let patch = |i: usize| {
        let body = json!({"metadata": {"labels": {format!("l{i}"): "x"}}});
        let h = &h;
        async move {
            h.call(
                "PATCH",
                uri,
                Some(body),
                &[("content-type", "application/merge-patch+json")],
            )
            .await
            .0
        }
    };
    let codes = futures_util::future::join_all((0..8).map(patch)).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let (_, cm) = h.json("GET", uri, None).await;
    assert_eq!(cm["metadata"]["labels"].as_object().unwrap().len(), 8);
    // A patch naming an old resourceVersion is refused, not retried.
    let stale = json!({"metadata": {"resourceVersion": "1", "labels": {"late": "x"}}});
    let (code, _) = h
        .call(
            "PATCH",
            uri,
            Some(stale),
            &[("content-type", "application/merge-patch+json")],
        )
        .await;
    assert_eq!(code, 409);
}

#[tokio::test]
async fn openapi_v2_negotiates_encoding_and_honours_etags() {
    let h = harness().await;
    let get = |accept: &'static str, if_none_match: Option<String>| {
        let app = h.app.clone();
        async move {
            let mut request = HttpRequest::builder()
                .uri("/openapi/v2")
                .header("accept", accept)
                .extension(auth::User::new("tester", ["system:masters"]));
            if let Some(tag) = if_none_match {
                request = request.header("if-none-match", tag);
            }
            let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            let (code, etag, content_type) = (response.status().as_u16(), header("etag"), header("content-type"));
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (code, etag, content_type, body)
        }
    };
    let (code, etag, content_type, body) = get("application/json", None).await;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
    assert!(etag.starts_with('"') && etag.len() == 130, "{etag}");

    let (code, proto_etag, content_type, body) =
        get("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", None).await;
    assert_eq!(
        (code, content_type.as_str(), proto_etag.as_str()),
        (200, openapi_v2::PROTOBUF, etag.as_str())
    );
    let decoded = <openapi_v2::proto::Document as prost::Message>::decode(body).unwrap();
    assert_eq!(decoded.swagger, "2.0");

    let (code, _, _, body) = get("application/json", Some(etag.clone())).await;
    assert_eq!((code, body.len()), (304, 0));
    let (code, _, _, _) = get("application/json", Some("\"stale\"".into())).await;
    assert_eq!(code, 200);
    let (code, _, _, _) = get("text/html", None).await;
    assert_eq!(code, 406);
}

#[tokio::test]
async fn field_validation_warns_drops_or_refuses_unknown_fields() {
    let h = harness().await;
    let mut cm = configmap("lenient", json!({}));
    cm["bogus"] = json!({"x": 1});
    let post = |query: &str, cm: &Value| {
        let app = h.app.clone();
        let uri = format!("/api/v1/namespaces/default/configmaps{query}");
        let body = cm.to_string();
        async move {
            let request = HttpRequest::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/json")
                .extension(auth::User::new("tester", ["system:masters"]))
                .body(Body::from(body))
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let warnings: Vec<String> = response
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let code = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (code, warnings, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (code, warnings, created) = post("", &cm).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, ["299 - \"unknown field \\\"bogus\\\"\""]);
    assert!(created.get("bogus").is_none());
    let (_, stored) = h
        .json("GET", "/api/v1/namespaces/default/configmaps/lenient", None)
        .await;
    assert!(stored.get("bogus").is_none());

    cm["metadata"]["name"] = json!("quiet");
    let (code, warnings, created) = post("?fieldValidation=Ignore", &cm).await;
    assert_eq!((code, warnings.len()), (201, 0), "{created}");
    assert!(created.get("bogus").is_none());

    cm["metadata"]["name"] = json!("refused");
    let (code, _, status) = post("?fieldValidation=Strict", &cm).await;
    assert_eq!(code, 400);
    assert_eq!(status["message"], "strict decoding error: unknown field \"bogus\"");

    let (code, _, status) = post("?fieldValidation=Sometimes", &cm).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Sometimes\": supported values: \"Ignore\", \"Strict\", \"Warn\""
    );
}

#[tokio::test]
async fn duplicate_fields_are_warned_about_or_refused() {
    let h = harness().await;
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"twice","name":"twice"},"data":{"k":"1","k":"2"}}"#;
    let post = |query: &'static str| {
        let app = h.app.clone();
        async move {
            let request = HttpRequest::builder()
                .method("POST")
                .uri(format!("/api/v1/namespaces/default/configmaps{query}"))
                .header("content-type", "application/json")
                .extension(auth::User::new("tester", ["system:masters"]))
                .body(Body::from(body))
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let warnings: Vec<String> = response
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let code = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (code, warnings, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (code, _, status) = post("?fieldValidation=Strict").await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.k\""
    );
    let (code, warnings, created) = post("").await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        warnings,
        [
            "299 - \"duplicate field \\\"metadata.name\\\"\"",
            "299 - \"duplicate field \\\"data.k\\\"\""
        ]
    );
    assert_eq!(created["data"]["k"], "2");
}
