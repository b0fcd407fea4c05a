//! Server-side apply with the real kubectl against `kube server`: `kubectl apply
//! --server-side` creating, updating and pruning objects, field-manager conflicts
//! as kubectl reports them, `--force-conflicts`, two managers sharing a list of
//! containers, managedFields as `--show-managed-fields` shows them, and taking
//! over an object made by client-side `kubectl apply`.

mod common;

use common::{Out, Server};
use serde_json::{Value, json};

struct Cluster {
    server: Server,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            server: Server::start_api(),
        }
    }

    fn kubectl(&self, args: &[&str]) -> Out {
        self.server.kubectl(args)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args).ok()
    }

    /// `kubectl apply ARGS -f <yaml>`.
    fn apply(&self, yaml: &str, args: &[&str]) -> Out {
        let file = self.server.dir.path().join("manifest.yaml");
        std::fs::write(&file, yaml).unwrap();
        let mut all = vec!["apply"];
        all.extend_from_slice(args);
        all.extend(["-f", file.to_str().unwrap()]);
        self.kubectl(&all)
    }

    /// The object as JSON, managedFields included.
    #[track_caller]
    fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend(["-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

/// The managedFields entry of `manager` (Null if none).
fn entry(object: &Value, manager: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager)
        .cloned()
        .unwrap_or(Value::Null)
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const SETTINGS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels: {app: web}
data:
  color: blue
  size: large
"#;

#[test]
fn server_side_apply_creates_updates_and_removes_omitted_fields() {
    let c = Cluster::start();
    let out = c.apply(SETTINGS, &["--server-side"]).ok();
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    let created = c.get(&["cm", "settings"]);
    assert_eq!(created["data"], json!({"color": "blue", "size": "large"}));
    assert_eq!(managers(&created), [("kubectl".to_string(), "Apply".to_string())]);
    let kubectl = entry(&created, "kubectl");
    assert_eq!(kubectl["apiVersion"], "v1");
    assert_eq!(kubectl["fieldsType"], "FieldsV1");
    assert!(kubectl["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{kubectl}");
    assert_eq!(
        kubectl["fieldsV1"],
        json!({"f:data": {"f:color": {}, "f:size": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
    // Without the flag kubectl hides them, as it does against kube-apiserver.
    let yaml = c.ok(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(!yaml.contains("managedFields"), "{yaml}");
    let yaml = c.ok(&["get", "cm", "settings", "-o", "yaml", "--show-managed-fields"]);
    for line in ["managedFields:", "manager: kubectl", "operation: Apply", "f:color: {}"] {
        assert!(yaml.contains(line), "{line} missing in\n{yaml}");
    }

    // Applying the same manifest again changes nothing.
    let rv = created["metadata"]["resourceVersion"].clone();
    c.apply(SETTINGS, &["--server-side"]).ok();
    assert_eq!(c.get(&["cm", "settings"])["metadata"]["resourceVersion"], rv);

    // A changed value is updated; a field left out of the manifest is removed,
    // and so is the label map the manager no longer applies.
    let changed = SETTINGS
        .replace("color: blue", "color: green")
        .replace("  size: large\n", "")
        .replace("  labels: {app: web}\n", "");
    c.apply(&changed, &["--server-side"]).ok();
    let updated = c.get(&["cm", "settings"]);
    assert_eq!(updated["data"], json!({"color": "green"}));
    assert!(updated["metadata"].get("labels").is_none(), "{updated}");
    assert_eq!(
        entry(&updated, "kubectl")["fieldsV1"],
        json!({"f:data": {"f:color": {}}})
    );
}

#[test]
fn conflicting_managers_and_forced_takeover() {
    let c = Cluster::start();
    c.apply(SETTINGS, &["--server-side"]).ok();
    let other =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  color: red\n";
    let err = c.apply(other, &["--server-side", "--field-manager=other"]).err();
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .data.color"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "kubectl explains the way out: {err}");
    assert_eq!(
        c.get(&["cm", "settings"])["data"]["color"],
        "blue",
        "nothing was written"
    );

    // Co-owning with the same value is no conflict.
    let same = other.replace("color: red", "color: blue");
    c.apply(&same, &["--server-side", "--field-manager=other"]).ok();
    let shared = c.get(&["cm", "settings"]);
    assert_eq!(entry(&shared, "other")["fieldsV1"], json!({"f:data": {"f:color": {}}}));
    assert_eq!(
        entry(&shared, "kubectl")["fieldsV1"]["f:data"],
        json!({"f:color": {}, "f:size": {}})
    );

    // Forced: the value changes and `other` alone owns it.
    let out = c
        .apply(other, &["--server-side", "--field-manager=other", "--force-conflicts"])
        .ok();
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    let forced = c.get(&["cm", "settings"]);
    assert_eq!(forced["data"], json!({"color": "red", "size": "large"}));
    assert_eq!(entry(&forced, "kubectl")["fieldsV1"]["f:data"], json!({"f:size": {}}));
    assert_eq!(entry(&forced, "other")["fieldsV1"], json!({"f:data": {"f:color": {}}}));

    // Imperative commands are Update managers, and conflict too.
    c.ok(&["label", "cm", "settings", "app=api", "--overwrite"]);
    let labelled = c.get(&["cm", "settings"]);
    assert_eq!(
        entry(&labelled, "kubectl-label")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}}})
    );
    assert_eq!(entry(&labelled, "kubectl-label")["operation"], "Update");
    let err = c
        .apply(SETTINGS.replace("blue", "red").as_str(), &["--server-side"])
        .err();
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-label" using v1: .metadata.labels.app"#),
        "{err}"
    );
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports: [{containerPort: 80}]
"#;

const SIDECAR: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  template:
    spec:
      containers:
      - name: proxy
        image: envoy:1
"#;

#[test]
fn two_managers_share_the_containers_list() {
    let c = Cluster::start();
    c.apply(WEB, &["--server-side"]).ok();
    let created = c.get(&["deploy", "web"]);
    assert_eq!(
        entry(&created, "kubectl")["fieldsV1"],
        serde_json::from_str::<Value>(
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":
            {"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},
            "f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
        )
        .unwrap()
    );

    // Another manager adds its own container; the first one's stays.
    c.apply(SIDECAR, &["--server-side", "--field-manager=mesh"]).ok();
    let names = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name} {.spec.replicas}",
    ]);
    assert_eq!(names, "nginx proxy 2");

    // Re-applying the first manifest keeps the sidecar (kubectl never owned it)...
    c.apply(&WEB.replace("nginx:1.27", "nginx:1.28"), &["--server-side"])
        .ok();
    let images = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    ]);
    assert_eq!(images, "nginx:1.28 envoy:1");

    // ...and touching the sidecar's image is a conflict with its manager.
    let out = c.ok(&["set", "image", "deploy/web", "proxy=envoy:2"]);
    assert!(out.contains("image updated"), "{out}");
    let err = c.apply(SIDECAR, &["--server-side", "--field-manager=mesh"]).err();
    assert!(
        err.contains(
            r#"conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="proxy"].image"#
        ),
        "{err}"
    );

    // The sidecar manager lets go of its container by applying without it: the
    // item goes (nobody else owns the item itself, only its image), and with it
    // kubectl-set's ownership of that image.
    let without = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n";
    c.apply(without, &["--server-side", "--field-manager=mesh"]).ok();
    let after = c.get(&["deploy", "web"]);
    assert_eq!(entry(&after, "mesh"), Value::Null, "{after}");
    assert_eq!(entry(&after, "kubectl-set"), Value::Null, "{after}");
    let names = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    assert_eq!(names, "nginx");
}

#[test]
fn client_side_applied_objects_migrate_to_server_side_apply() {
    let c = Cluster::start();
    let legacy = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: default\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    assert!(c.apply(legacy, &[]).ok().contains("configmap/legacy created"));
    let csa = c.get(&["cm", "legacy"]);
    assert_eq!(
        managers(&csa),
        [("kubectl-client-side-apply".to_string(), "Update".to_string())]
    );
    assert_eq!(
        entry(&csa, "kubectl-client-side-apply")["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}, "f:b": {}},
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
    );

    // The same object, now applied server-side with `a` changed and `b` dropped:
    // no conflict with the client-side owner (its values are unchanged since its
    // last apply), and kubectl then takes over its fields, so `b` goes.
    let next =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: default\ndata:\n  a: \"changed\"\n";
    let out = c.apply(next, &["--server-side"]).ok();
    assert_eq!(out.trim(), "configmap/legacy serverside-applied");
    let migrated = c.get(&["cm", "legacy"]);
    assert_eq!(migrated["data"], json!({"a": "changed"}));
    let mut names = managers(&migrated);
    names.sort();
    assert_eq!(
        names,
        [
            ("kubectl".to_string(), "Apply".to_string()),
            ("kubectl-last-applied".to_string(), "Apply".to_string())
        ]
    );
    assert_eq!(entry(&migrated, "kubectl")["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    // The client-side annotation follows the applied configuration.
    let last: Value = serde_json::from_str(
        migrated["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["data"], json!({"a": "changed"}));

    // From here on it is plain server-side apply.
    c.apply(&next.replace("changed", "again"), &["--server-side"]).ok();
    assert_eq!(c.get(&["cm", "legacy"])["data"], json!({"a": "again"}));
    let diff = c.kubectl(&[
        "diff",
        "--server-side",
        "-f",
        c.server.dir.path().join("manifest.yaml").to_str().unwrap(),
    ]);
    assert_eq!(diff.status.code(), Some(0), "{diff:?}");
}
