//! kubectl's typed-client commands against `kube server`: `kubectl create
//! <generator>` sends `application/vnd.kubernetes.protobuf` bodies, which the API
//! server decodes into the JSON object kubectl would otherwise have sent. Every
//! test reads the stored objects back (as JSON) and checks the fields the command
//! set, including the ones the protobuf encoding makes tricky: base64 bytes,
//! quantities, int-or-strings, pointer fields set to zero and inlined structs.

mod common;

use common::{Out, Server, run};
use serde_json::{Value, json};
use std::process::Command;

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

    /// kubectl that must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args).ok()
    }

    /// `kubectl get WHAT -o jsonpath=PATH`.
    #[track_caller]
    fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend(what);
        let path = format!("jsonpath={path}");
        args.extend(["-o", &path]);
        self.ok(&args)
    }

    /// `kubectl get WHAT -o json`.
    #[track_caller]
    fn json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend(what);
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn file(&self, name: &str, data: &[u8]) -> String {
        let path = self.server.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// curl against the API with the admin credentials of the kubeconfig.
    fn curl(&self, args: &[&str]) -> Out {
        let kubeconfig = std::fs::read_to_string(self.server.kubeconfig()).unwrap();
        let field = |name: &str| -> Vec<u8> {
            let line = kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in the kubeconfig"));
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(line.trim().trim_matches('"'))
                .unwrap()
        };
        let ca = self.file("ca.pem", &field("certificate-authority-data"));
        let cert = self.file("admin.pem", &field("client-certificate-data"));
        let key = self.file("admin-key.pem", &field("client-key-data"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &ca, "--cert", &cert, "--key", &key])
            .args(args);
        run(&mut cmd)
    }
}

#[test]
fn namespace_configmap_and_secrets() {
    let c = Cluster::start();
    assert_eq!(c.ok(&["create", "namespace", "team"]).trim(), "namespace/team created");
    assert_eq!(c.jsonpath(&["namespace", "team"], "{.status.phase}"), "Active");

    let blob = c.file("blob.bin", &[0, 1, 0xfe, 0xff, b'\n']);
    let text = c.file("motd.txt", b"hello\nworld\n");
    c.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=10",
        &format!("--from-file=motd={text}"),
        &format!("--from-file=blob={blob}"),
    ]);
    let cm = c.json(&["-n", "team", "configmap", "settings"]);
    assert_eq!(
        cm["data"],
        json!({"color": "blue", "size": "10", "motd": "hello\nworld\n"})
    );
    // Not UTF-8: binaryData, a map<string, bytes>, base64 in JSON.
    assert_eq!(cm["binaryData"], json!({"blob": "AAH+/wo="}));
    assert_eq!(cm["metadata"]["namespace"], "team");

    c.ok(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--from-literal=password=s3cr3t!",
        &format!("--from-file=key={blob}"),
    ]);
    let secret = c.json(&["-n", "team", "secret", "creds"]);
    assert_eq!(
        secret["data"],
        json!({"user": "YWRtaW4=", "password": "czNjcjN0IQ==", "key": "AAH+/wo="})
    );

    c.ok(&[
        "-n",
        "team",
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    let pull = c.json(&["-n", "team", "secret", "pull"]);
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    let config = pull["data"][".dockerconfigjson"].as_str().unwrap();
    use base64::Engine;
    let config: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(config).unwrap()).unwrap();
    assert_eq!(config["auths"]["registry.example"]["username"], "u");

    c.ok(&["-n", "team", "create", "serviceaccount", "robot"]);
    assert_eq!(
        c.jsonpath(&["-n", "team", "serviceaccount", "robot"], "{.metadata.name}"),
        "robot"
    );
}

#[test]
fn deployments_and_services() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=8080",
    ]);
    let d = c.json(&["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d["spec"]["template"]["metadata"]["labels"], json!({"app": "web"}));
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"], json!([{"containerPort": 8080, "protocol": "TCP"}]));

    // replicas is a pointer: zero must arrive as zero, not as "unset" (which defaults to 1).
    c.ok(&[
        "create",
        "deployment",
        "idle",
        "--image=busybox",
        "--replicas=0",
        "--",
        "sleep",
        "3600",
    ]);
    let idle = c.json(&["deployment", "idle"]);
    assert_eq!(idle["spec"]["replicas"], 0);
    assert_eq!(
        idle["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["sleep", "3600"])
    );

    c.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443"]);
    let svc = c.json(&["service", "web"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([
            {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "443", "port": 443, "protocol": "TCP", "targetPort": 443},
        ])
    );
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10."))
    );

    c.ok(&["create", "service", "clusterip", "headless", "--clusterip=None"]);
    assert_eq!(c.jsonpath(&["service", "headless"], "{.spec.clusterIP}"), "None");

    c.ok(&[
        "create",
        "service",
        "nodeport",
        "edge",
        "--tcp=5678:8080",
        "--node-port=30080",
    ]);
    assert_eq!(
        c.jsonpath(
            &["service", "edge"],
            "{.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].nodePort}"
        ),
        "NodePort 5678 8080 30080"
    );

    c.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=db.example.com",
    ]);
    assert_eq!(
        c.jsonpath(&["service", "ext"], "{.spec.type} {.spec.externalName}"),
        "ExternalName db.example.com"
    );

    // expose builds a Service from the deployment's selector (kubectl 1.33 sends
    // this one as JSON; it is here for the selector and port round trip).
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-public",
        "--port=80",
        "--target-port=8080",
    ]);
    assert_eq!(
        c.jsonpath(
            &["service", "web-public"],
            "{.spec.selector.app} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ),
        "web 80 8080"
    );
}

/// A CronJob with a pod template that uses much of PodSpec, applied as JSON.
const RICH_CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: rich
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata:
      labels: {team: data}
      annotations: {note: nightly}
    spec:
      backoffLimit: 0
      completions: 2
      parallelism: 1
      activeDeadlineSeconds: 600
      ttlSecondsAfterFinished: 0
      completionMode: Indexed
      podFailurePolicy:
        rules:
        - action: FailJob
          onExitCodes: {operator: In, values: [42, 43]}
        - action: Ignore
          onPodConditions: [{type: DisruptionTarget, status: "True"}]
      template:
        metadata:
          labels: {app: rich}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 0
          automountServiceAccountToken: false
          enableServiceLinks: false
          hostNetwork: true
          nodeSelector: {disk: ssd}
          priorityClassName: low
          securityContext:
            runAsUser: 0
            runAsNonRoot: false
            fsGroup: 2000
            supplementalGroups: [1, 2, 70000]
            sysctls: [{name: net.core.somaxconn, value: "1024"}]
            seccompProfile: {type: RuntimeDefault}
          hostAliases: [{ip: 10.1.2.3, hostnames: [a.local, b.local]}]
          dnsConfig:
            nameservers: [1.1.1.1]
            options: [{name: ndots, value: "2"}, {name: edns0}]
          tolerations:
          - {key: dedicated, operator: Equal, value: batch, effect: NoExecute, tolerationSeconds: 3600}
          affinity:
            nodeAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
                nodeSelectorTerms:
                - matchExpressions: [{key: zone, operator: In, values: [a, b]}]
              preferredDuringSchedulingIgnoredDuringExecution:
              - weight: 10
                preference: {matchExpressions: [{key: gpu, operator: Exists}]}
            podAntiAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
              - labelSelector: {matchLabels: {app: rich}}
                topologyKey: kubernetes.io/hostname
          topologySpreadConstraints:
          - maxSkew: 1
            topologyKey: zone
            whenUnsatisfiable: DoNotSchedule
            labelSelector: {matchExpressions: [{key: app, operator: In, values: [rich]}]}
            minDomains: 2
          readinessGates: [{conditionType: example.com/ready}]
          os: {name: linux}
          initContainers:
          - name: init
            image: busybox
            command: [sh, -c, "true"]
            restartPolicy: Always
          containers:
          - name: main
            image: busybox:1.36
            imagePullPolicy: IfNotPresent
            workingDir: /work
            args: [--verbose]
            stdin: true
            tty: true
            ports:
            - {name: metrics, containerPort: 9090, protocol: UDP, hostPort: 19090}
            env:
            - {name: PLAIN, value: "x"}
            - {name: EMPTY, value: ""}
            - name: NODE
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: MEM
              valueFrom: {resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}}
            - name: CM
              valueFrom: {configMapKeyRef: {name: settings, key: color, optional: false}}
            - name: PW
              valueFrom: {secretKeyRef: {name: creds, key: password, optional: true}}
            envFrom:
            - {prefix: CFG_, configMapRef: {name: settings}}
            - secretRef: {name: creds, optional: false}
            resources:
              requests: {cpu: 250m, memory: 64Mi, ephemeral-storage: 1Gi}
              limits: {cpu: "1", memory: 128Mi}
            volumeMounts:
            - {name: scratch, mountPath: /scratch}
            - {name: config, mountPath: /etc/config, readOnly: true, subPath: app}
            - {name: token, mountPath: /var/run/token, mountPropagation: HostToContainer}
            livenessProbe:
              httpGet:
                path: /healthz
                port: metrics
                scheme: HTTPS
                httpHeaders: [{name: X-Probe, value: "1"}]
              initialDelaySeconds: 5
              periodSeconds: 7
              failureThreshold: 1
              terminationGracePeriodSeconds: 0
            readinessProbe:
              tcpSocket: {port: 9090}
              timeoutSeconds: 2
            startupProbe:
              grpc: {port: 9091, service: health}
            lifecycle:
              postStart: {exec: {command: [touch, /tmp/started]}}
              preStop: {sleep: {seconds: 5}}
            securityContext:
              privileged: false
              allowPrivilegeEscalation: false
              readOnlyRootFilesystem: true
              runAsGroup: 0
              capabilities: {add: [NET_ADMIN], drop: [ALL]}
              seLinuxOptions: {level: "s0:c123,c456"}
            terminationMessagePolicy: FallbackToLogsOnError
          volumes:
          - name: scratch
            emptyDir: {medium: Memory, sizeLimit: 512Mi}
          - name: config
            configMap:
              name: settings
              defaultMode: 0440
              optional: true
              items: [{key: color, path: color.txt, mode: 0400}]
          - name: token
            projected:
              sources:
              - serviceAccountToken: {audience: vault, expirationSeconds: 3600, path: token}
              - downwardAPI:
                  items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
              - secret: {name: creds, items: [{key: user, path: user}]}
          - name: host
            hostPath: {path: /var/log, type: Directory}
          - name: claim
            persistentVolumeClaim: {claimName: data, readOnly: true}
          - name: eph
            ephemeral:
              volumeClaimTemplate:
                metadata: {labels: {kind: scratch}}
                spec:
                  accessModes: [ReadWriteOnce]
                  storageClassName: fast
                  resources: {requests: {storage: 5Gi}}
          - name: nfs
            nfs: {server: nfs.local, path: /exports, readOnly: true}
          - name: csi
            csi: {driver: csi.example.com, volumeAttributes: {size: small}, nodePublishSecretRef: {name: creds}}
"#;

/// Every field of `expected` is in `actual` with the same value (the server may
/// add defaults); arrays must have the same length. An empty string may be
/// missing: kubectl's Go types drop it from `omitempty` fields (`env[].value`).
#[track_caller]
fn assert_contains(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                let at = format!("{path}.{k}");
                match a.get(k) {
                    Some(got) => assert_contains(got, v, &at),
                    None if v == "" => {}
                    None => panic!("{at} is missing"),
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} vs {expected}");
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert_contains(a, e, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

#[test]
fn jobs_and_cronjobs() {
    let c = Cluster::start();
    c.ok(&["create", "job", "once", "--image=busybox", "--", "echo", "hi"]);
    let job = c.json(&["job", "once"]);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox");
    assert_eq!(container["command"], json!(["echo", "hi"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    c.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--restart=OnFailure",
        "--",
        "date",
    ]);
    let cj = c.json(&["cronjob", "tick"]);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(pod["containers"][0]["command"], json!(["date"]));

    // `create job --from=cronjob/...` copies the CronJob's whole job template into
    // a protobuf Job: a round trip of most of PodSpec.
    let file = c.file("rich.yaml", RICH_CRONJOB.as_bytes());
    c.ok(&["apply", "-f", &file]);
    c.ok(&["create", "job", "rich-now", "--from=cronjob/rich"]);
    let cronjob = c.json(&["cronjob", "rich"]);
    let template = &cronjob["spec"]["jobTemplate"];
    let job = c.json(&["job", "rich-now"]);
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["annotations"]["note"], "nightly");
    assert_eq!(job["metadata"]["labels"]["team"], "data");
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["controller"], &owner["uid"]),
        (
            &json!("CronJob"),
            &json!("rich"),
            &json!(true),
            &cronjob["metadata"]["uid"]
        )
    );
    assert_contains(&job["spec"], &template["spec"], "spec");
    // Spot checks of what is easy to lose on the way: pointer zeros, quantities,
    // int-or-strings, inlined structs, file modes.
    let spec = &job["spec"];
    let pod = &spec["template"]["spec"];
    let main = &pod["containers"][0];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["ttlSecondsAfterFinished"], 0);
    assert_eq!(pod["terminationGracePeriodSeconds"], 0);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["securityContext"]["supplementalGroups"], json!([1, 2, 70000]));
    assert_eq!(main["env"][1], json!({"name": "EMPTY"}));
    assert_eq!(main["env"][3]["valueFrom"]["resourceFieldRef"]["divisor"], "1Mi");
    assert_eq!(main["resources"]["requests"]["cpu"], "250m");
    assert_eq!(main["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(main["readinessProbe"]["tcpSocket"]["port"], 9090);
    assert_eq!(main["lifecycle"]["preStop"], json!({"sleep": {"seconds": 5}}));
    assert_eq!(main["securityContext"]["privileged"], false);
    assert_eq!(pod["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(
        pod["volumes"][0]["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "512Mi"})
    );
    assert_eq!(pod["volumes"][1]["configMap"]["defaultMode"], 0o440);
    assert_eq!(
        pod["volumes"][5]["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 3600);
}

#[test]
fn roles_and_bindings() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list,watch",
        "--resource=pods,deployments.apps",
        "--resource-name=web",
    ]);
    assert_eq!(
        c.json(&["role", "reader"])["rules"],
        json!([
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]},
            {"verbs": ["get", "list", "watch"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"]},
        ])
    );
    c.ok(&[
        "create",
        "rolebinding",
        "read-it",
        "--role=reader",
        "--user=bob",
        "--group=devs",
        "--serviceaccount=default:robot",
    ]);
    let rb = c.json(&["rolebinding", "read-it"]);
    assert_eq!(
        rb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"})
    );
    assert_eq!(
        rb["subjects"],
        json!([
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
            {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
        ])
    );

    c.ok(&[
        "create",
        "clusterrole",
        "health",
        "--verb=get",
        "--non-resource-url=/healthz",
    ]);
    assert_eq!(
        c.json(&["clusterrole", "health"])["rules"],
        json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}])
    );
    c.ok(&[
        "create",
        "clusterrole",
        "combined",
        "--aggregation-rule=rbac.example.com/aggregate=true",
    ]);
    assert_eq!(
        c.json(&["clusterrole", "combined"])["aggregationRule"],
        json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate": "true"}}]})
    );
    c.ok(&[
        "create",
        "clusterrolebinding",
        "health-all",
        "--clusterrole=health",
        "--group=system:authenticated",
    ]);
    assert_eq!(
        c.jsonpath(
            &["clusterrolebinding", "health-all"],
            "{.roleRef.kind}/{.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}"
        ),
        "ClusterRole/health Group/system:authenticated"
    );
}

#[test]
fn quotas_and_disruption_budgets() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "quota",
        "compute",
        "--hard=pods=10,requests.cpu=1500m,requests.memory=1Gi,limits.memory=2Gi",
    ]);
    assert_eq!(
        c.json(&["resourcequota", "compute"])["spec"]["hard"],
        json!({"pods": "10", "requests.cpu": "1500m", "requests.memory": "1Gi", "limits.memory": "2Gi"})
    );
    c.ok(&[
        "create",
        "quota",
        "besteffort",
        "--hard=pods=5",
        "--scopes=BestEffort,NotTerminating",
    ]);
    assert_eq!(
        c.jsonpath(&["resourcequota", "besteffort"], "{.spec.scopes}"),
        r#"["BestEffort","NotTerminating"]"#
    );

    // minAvailable as a string, maxUnavailable as a number: both IntOrString.
    c.ok(&[
        "create",
        "poddisruptionbudget",
        "half",
        "--selector=app=web",
        "--min-available=50%",
    ]);
    let pdb = c.json(&["poddisruptionbudget", "half"]);
    assert_eq!(pdb["spec"]["minAvailable"], "50%");
    assert_eq!(pdb["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    c.ok(&["create", "pdb", "one", "--selector=app=db", "--max-unavailable=1"]);
    assert_eq!(c.json(&["pdb", "one"])["spec"]["maxUnavailable"], 1);
}

/// The same decoder over plain HTTP: a hand-made protobuf ConfigMap is stored, a
/// malformed body is a 400 that says what is wrong.
#[test]
fn protobuf_bodies_over_http() {
    let c = Cluster::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.server.api_url());
    // k8s\0 + Unknown{typeMeta{v1, ConfigMap}, raw: ConfigMap{metadata{name: pb}, data{k: v}}}
    let mut body = b"k8s\x00".to_vec();
    body.extend([0x0a, 0x0f, 0x0a, 0x02, b'v', b'1', 0x12, 0x09]);
    body.extend(b"ConfigMap");
    body.extend([
        0x12, 0x0e, 0x0a, 0x04, 0x0a, 0x02, b'p', b'b', 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v',
    ]);
    let file = c.file("cm.pb", &body);
    let out = c
        .curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.kubernetes.protobuf",
            "-H",
            "Accept: application/vnd.kubernetes.protobuf, application/json",
            "--data-binary",
            &format!("@{file}"),
            "-w",
            "\n%{http_code} %{content_type}",
            &url,
        ])
        .ok();
    let (json_text, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "201 application/json", "{out}");
    let created: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(created["data"], json!({"k": "v"}));
    assert_eq!(c.jsonpath(&["configmap", "pb"], "{.data.k}"), "v");

    let file = c.file("bad.pb", &body[..body.len() - 4]);
    let out = c
        .curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.kubernetes.protobuf",
            "--data-binary",
            &format!("@{file}"),
            "-w",
            "\n%{http_code}",
            &url,
        ])
        .ok();
    let (json_text, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "400", "{out}");
    let status: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(status["reason"], "BadRequest");
    assert!(
        status["message"].as_str().unwrap().contains("runs past the end"),
        "{status}"
    );
}
