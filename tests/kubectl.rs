//! The real kubectl against `kube server`'s API over HTTPS, with the admin
//! kubeconfig the server writes: discovery, apply (with kubectl's default strict
//! validation) and re-apply through strategic merge patch, get in its output
//! forms, label/annotate/diff, watch, delete, and the errors users see.

mod common;

use common::{Out, Server, run, run_timeout};
use std::process::Command;
use std::time::Duration;

struct Cluster {
    server: Server,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            server: Server::start_api(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        self.server.kubectl_command(args)
    }

    fn kubectl(&self, args: &[&str]) -> Out {
        self.server.kubectl(args)
    }

    /// kubectl that must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args).ok()
    }

    fn apply(&self, yaml: &str) -> Out {
        let file = self.server.dir.path().join("manifest.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.kubectl(&["apply", "-f", file.to_str().unwrap()])
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {tier: web}
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: busybox
        ports: [{containerPort: 8080}]
        env: [{name: MODE, value: one}]
      - name: sidecar
        image: busybox
"#;

#[test]
fn discovery_version_and_system_namespaces() {
    let c = Cluster::start();
    // kubectl explain reads the OpenAPI v3 schemas, descriptions included.
    let explained = c.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        explained.contains("FIELD: strategy <DeploymentStrategy>"),
        "{explained}"
    );
    assert!(
        explained.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{explained}"
    );
    let explained = c.ok(&["explain", "pods.spec.containers.resources.limits"]);
    assert!(
        explained.contains("Limits describes the maximum amount of compute resources allowed"),
        "{explained}"
    );
    let ready = c.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(
        ready.contains("[+]etcd ok") && ready.contains("readyz check passed"),
        "{ready}"
    );
    c.ok(&["get", "namespaces"]);
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains(r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="namespaces",scope="cluster",subresource="",verb="LIST",version="v1"}"#),
        "{metrics}"
    );
    let version = c.ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1");
    let resources = c.ok(&["api-resources", "--no-headers"]);
    for line in ["deployments", "configmaps", "namespaces", "customresourcedefinitions"] {
        assert!(
            resources.lines().any(|l| l.starts_with(line)),
            "{line} missing in\n{resources}"
        );
    }
    assert!(c.ok(&["api-versions"]).lines().any(|l| l == "apps/v1"));
    let namespaces = c.ok(&["get", "namespaces"]);
    let rows: Vec<Vec<&str>> = namespaces.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    assert!(rows[1..].iter().all(|r| r[1] == "Active"));
}

#[test]
fn field_validation_strict_warn_and_ignore() {
    let c = Cluster::start();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: lenient
  namespace: default
spec:
  selector: {matchLabels: {app: lenient}}
  foo: 1
  template:
    metadata: {labels: {app: lenient}}
    spec:
      containers:
      - name: app
        image: busybox
        imagePullPolicyy: Always
"#;
    let file = c.server.dir.path().join("lenient.yaml");
    std::fs::write(&file, manifest).unwrap();
    let file = file.to_str().unwrap();

    let strict = c.kubectl(&["apply", "--validate=strict", "-f", file]);
    assert!(!strict.status.success(), "{strict:?}");
    assert!(
        strict
            .stderr
            .contains("strict decoding error: unknown field \"spec.foo\""),
        "{strict:?}"
    );

    let warned = c.kubectl(&["apply", "--validate=warn", "-f", file]);
    assert!(warned.status.success(), "{warned:?}");
    assert!(warned.stdout.contains("deployment.apps/lenient created"), "{warned:?}");
    assert!(
        warned.stderr.contains("Warning: unknown field \"spec.foo\""),
        "{warned:?}"
    );
    assert!(
        warned
            .stderr
            .contains("Warning: unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""),
        "{warned:?}"
    );
    let stored = c.ok(&["get", "deploy", "lenient", "-o", "json"]);
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert!(stored["spec"].get("foo").is_none(), "{stored}");
    assert!(
        stored["spec"]["template"]["spec"]["containers"][0]
            .get("imagePullPolicyy")
            .is_none()
    );

    c.ok(&["delete", "deploy", "lenient"]);
    let ignored = c.kubectl(&["apply", "--validate=false", "-f", file]);
    assert!(ignored.status.success(), "{ignored:?}");
    assert!(!ignored.stderr.contains("Warning"), "{ignored:?}");
    let stored = c.ok(&["get", "deploy", "lenient", "-o", "jsonpath={.spec}"]);
    assert!(!stored.contains("\"foo\""), "{stored}");
}

#[test]
fn openapi_v2_for_explain_and_raw_reads() {
    let c = Cluster::start();
    // kubectl reads the v2 document in gnostic's protobuf encoding for this output.
    let explained = c.ok(&["explain", "deployment.spec", "--output", "plaintext-openapiv2"]);
    assert!(explained.contains("RESOURCE: spec <Object>"), "{explained}");
    assert!(explained.contains("replicas\t<integer>"), "{explained}");
    assert!(explained.contains("template\t<Object> -required-"), "{explained}");
    let explained = c.ok(&[
        "explain",
        "pods.spec.containers.ports",
        "--output",
        "plaintext-openapiv2",
    ]);
    assert!(explained.contains("containerPort\t<integer> -required-"), "{explained}");
    let raw = c.ok(&["get", "--raw", "/openapi/v2"]);
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    assert_eq!(
        doc["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["env"]["x-kubernetes-patch-merge-key"],
        "name"
    );
}

#[test]
fn apply_reapply_and_read_back() {
    let c = Cluster::start();
    let first = c.apply(APP).ok();
    assert!(first.contains("namespace/shop created"), "{first}");
    assert!(first.contains("deployment.apps/web created"), "{first}");

    // A changed manifest goes through kubectl's strategic merge patch.
    let changed = APP
        .replace("color: blue", "color: green")
        .replace("value: one", "value: two");
    let second = c.apply(&changed);
    // The patch comes from the OpenAPI v2 merge keys, without complaint.
    assert!(!second.stderr.to_lowercase().contains("warning"), "{second:?}");
    let second = second.ok();
    assert!(second.contains("configmap/settings configured"), "{second}");
    assert!(second.contains("namespace/shop unchanged"), "{second}");
    assert_eq!(
        c.ok(&["-n", "shop", "get", "cm", "settings", "-o", "jsonpath={.data.color}"]),
        "green"
    );
    let containers = c.ok(&[
        "-n",
        "shop",
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}|{.spec.template.spec.containers[0].env[0].value}|{.spec.template.spec.containers[0].ports[0].containerPort}|{.metadata.generation}",
    ]);
    assert_eq!(containers, "app sidecar|two|8080|2");

    // Applying the same manifest again changes nothing, and diff agrees.
    let third = c.apply(&changed).ok();
    assert!(third.lines().all(|l| l.ends_with("unchanged")), "{third}");
    let file = c.server.dir.path().join("manifest.yaml");
    let diff = c.kubectl(&["diff", "-f", file.to_str().unwrap()]);
    assert_eq!(diff.status.code(), Some(0), "{diff:?}");

    // Scaling goes through the scale subresource and counts as a spec change.
    let scaled = c.ok(&["-n", "shop", "scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(scaled.trim(), "deployment.apps/web scaled");
    let after = c.ok(&[
        "-n",
        "shop",
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas}/{.metadata.generation}",
    ]);
    assert_eq!(after, "5/3");
    let table = c.ok(&["-n", "shop", "get", "deploy", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(table.lines().nth(1).unwrap().contains("0/5"), "{table}");

    let yaml = c.ok(&["-n", "shop", "get", "cm", "settings", "-o", "yaml"]);
    assert!(yaml.contains("resourceVersion:") && yaml.contains("uid:"), "{yaml}");
    let wide = c.ok(&["get", "cm", "-A", "-l", "tier=web"]);
    assert!(wide.lines().nth(1).unwrap().starts_with("shop"), "{wide}");
}

#[test]
fn label_annotate_watch_and_delete() {
    let c = Cluster::start();
    c.apply(APP).ok();
    c.ok(&["-n", "shop", "label", "cm", "settings", "owner=team-a"]);
    c.ok(&["-n", "shop", "annotate", "cm", "settings", "note=hello"]);
    let meta = c.ok(&[
        "-n",
        "shop",
        "get",
        "cm",
        "settings",
        "-o",
        "jsonpath={.metadata.labels.owner} {.metadata.annotations.note}",
    ]);
    assert_eq!(meta, "team-a hello");
    let labelled = c.ok(&["-n", "shop", "get", "cm", "-l", "owner=team-a", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/settings");

    // A watch sees the change made while it runs.
    let mut watch = c.command(&[
        "-n",
        "shop",
        "get",
        "cm",
        "settings",
        "-w",
        "-o",
        "jsonpath={.data.color}{\"\\n\"}",
    ]);
    let mut child = watch.stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.ok(&[
        "-n",
        "shop",
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ]);
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&output.stdout);
    assert_eq!(seen.lines().collect::<Vec<_>>(), ["blue", "red"], "{seen}");

    c.ok(&["-n", "shop", "delete", "cm", "settings"]);
    let missing = c.kubectl(&["-n", "shop", "get", "cm", "settings"]);
    assert!(!missing.status.success());
    assert!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): configmaps "settings" not found"#),
        "{missing:?}"
    );
    let deleted = run_timeout(
        &mut c.command(&["delete", "namespace", "shop", "--timeout=20s"]),
        Duration::from_secs(30),
    )
    .expect("namespace deletion finishes");
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!c.kubectl(&["get", "namespace", "shop"]).status.success());
}

#[test]
fn bad_requests_are_reported_like_kubernetes() {
    let c = Cluster::start();
    let out = c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n  namespace: default\n");
    assert!(!out.status.success());
    assert!(out.stderr.contains("is invalid"), "{out:?}");
    let out = c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lost\n  namespace: nowhere\n");
    assert!(out.stderr.contains(r#"namespaces "nowhere" not found"#), "{out:?}");
    // kubectl validates strictly by default: a typo in a field name is refused.
    let out = c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicyy: Always\n",
    );
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(r#"strict decoding error: unknown field "spec.containers[0].imagePullPolicyy""#),
        "{out:?}"
    );
    let out = c.kubectl(&["get", "widgets"]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("the server doesn't have a resource type \"widgets\""),
        "{out:?}"
    );

    // A wrong bearer token (and no client certificate) is refused.
    let admin = std::fs::read_to_string(c.server.kubeconfig()).unwrap();
    let without_cert: String = admin
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = c.server.dir.path().join("token-only.yaml");
    std::fs::write(&file, without_cert).unwrap();
    let denied =
        run(Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&file)
            .args(["--token=not-a-token", "get", "namespaces"]));
    assert!(!denied.status.success());
    assert!(denied.stderr.contains("Unauthorized"), "{denied:?}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec: {type: string}
              replicas: {type: integer, minimum: 1, default: 1}
"#;

#[test]
fn custom_resources_through_kubectl() {
    let c = Cluster::start();
    assert!(
        c.apply(CRD)
            .ok()
            .contains("customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created")
    );
    c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=20s",
        "crd/crontabs.stable.example.com",
    ]);
    let created = c.apply(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nightly\n  namespace: default\nspec:\n  cronSpec: \"0 3 * * *\"\n",
    );
    assert!(created.ok().contains("crontab.stable.example.com/nightly created"));
    let table = c.ok(&["get", "ct"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "SPEC", "REPLICAS", "AGE"]);
    assert_eq!(&rows[1][..2], &["nightly", "0"]);
    assert_eq!(
        c.ok(&["get", "crontab", "nightly", "-o", "jsonpath={.spec.replicas}"]),
        "1",
        "schema default"
    );

    let invalid = c.apply(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: broken\n  namespace: default\nspec:\n  replicas: 0\n",
    );
    assert!(!invalid.status.success());
    assert!(invalid.stderr.contains("spec.cronSpec: Required value"), "{invalid:?}");

    // Unknown fields in custom resources are pruned; kubectl's --validate decides what the user hears.
    let file = c.server.dir.path().join("crontab-extra.yaml");
    std::fs::write(
        &file,
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: extra\n  namespace: default\nspec:\n  cronSpec: \"* * * * *\"\n  bogus: 1\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let strict = c.kubectl(&["apply", "-f", file]);
    assert!(!strict.status.success());
    assert!(strict.stderr.contains("unknown field \"spec.bogus\""), "{strict:?}");
    let warned = c.kubectl(&["apply", "--validate=warn", "-f", file]);
    assert!(warned.status.success(), "{warned:?}");
    assert!(
        warned.stderr.contains("Warning: unknown field \"spec.bogus\""),
        "{warned:?}"
    );
    let stored = c.ok(&["get", "crontab", "extra", "-o", "jsonpath={.spec}"]);
    assert!(!stored.contains("bogus") && stored.contains("cronSpec"), "{stored}");

    // The OpenAPI v2 document (gnostic protobuf, as client-go fetches it) covers custom resources too.
    let explained = c.ok(&["explain", "crontab.spec", "--output", "plaintext-openapiv2"]);
    assert!(explained.contains("cronSpec\t<string> -required-"), "{explained}");

    c.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    let gone = c.kubectl(&["get", "crontabs"]);
    assert!(!gone.status.success(), "{gone:?}");
}
