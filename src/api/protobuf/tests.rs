use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A tiny protobuf encoder for hand-built messages.
#[derive(Default, Clone)]
struct Enc(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Enc {
    fn new() -> Enc {
        Enc::default()
    }
    fn key(mut self, number: u32, wire_type: u8) -> Enc {
        put_varint(&mut self.0, u64::from(number) << 3 | u64::from(wire_type));
        self
    }
    /// A varint field (negative numbers as Go writes them: 10-byte two's complement).
    fn int(self, number: u32, v: i64) -> Enc {
        let mut e = self.key(number, 0);
        put_varint(&mut e.0, v as u64);
        e
    }
    fn bytes(self, number: u32, b: &[u8]) -> Enc {
        let mut e = self.key(number, 2);
        put_varint(&mut e.0, b.len() as u64);
        e.0.extend_from_slice(b);
        e
    }
    fn str(self, number: u32, s: &str) -> Enc {
        self.bytes(number, s.as_bytes())
    }
    fn msg(self, number: u32, m: Enc) -> Enc {
        self.bytes(number, &m.0)
    }
    /// A `map<string, ...>` entry.
    fn entry(self, number: u32, key: &str, value: Enc) -> Enc {
        self.msg(number, Enc::new().str(1, key).msg(2, value))
    }
    fn entry_bytes(self, number: u32, key: &str, value: &[u8]) -> Enc {
        self.msg(number, Enc::new().str(1, key).bytes(2, value))
    }
    fn raw(self, b: &[u8]) -> Enc {
        let mut e = self;
        e.0.extend_from_slice(b);
        e
    }
}

/// `k8s\0` + runtime.Unknown around `raw`.
fn body(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, api_version).str(2, kind))
        .msg(2, raw)
        .str(3, "")
        .str(4, "");
    out.extend(unknown.0);
    out
}

fn meta(name: &str) -> Enc {
    Enc::new().str(1, name)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Bodies captured from kubectl v1.33.1 (`kubectl create ...` through a logging proxy).
const NAMESPACE: &str = "6b3873000a0f0a02763112094e616d65737061636512190a110a017812001a0022002a0032003800420012001a\
                         020a001a002200";
const SECRET: &str = "6b3873000a0c0a027631120653656372657412230a110a017312001a0022002a00320038004200120c0a0270771206\
                      7333637233741a001a002200";
const DEPLOYMENT: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bd010a1f0a0377656212001a0022002a00\
                          3200380042005a0a0a036170701203776562128b010803120c0a0a0a0361707012037765621a710a1c0a001200\
                          1a0022002a003200380042005a0a0a036170701203776562125112330a0762757379626f78120762757379626f\
                          782a00320b0a00100018903f22002a0042006a007200800100880100900100a201001a00320042004a00520058\
                          00600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";
const SERVICE: &str = "6b3873000a0d0a02763112075365727669636512690a1f0a0373766312001a0022002a003200380042005a0a0a03\
                       617070120373766312420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a03617070\
                       12037376631a002209436c757374657249503a00420052005a00600068001a020a001a002200";
const QUOTA: &str = "6b3873000a130a027631120d5265736f7572636551756f746112540a110a017112001a0022002a0032003800420012\
                     3d0a0c0a04706f647312040a0231300a130a0c72657175657374732e63707512030a01320a180a0f72657175657374\
                     732e6d656d6f727912050a033147691a001a002200";
const PDB: &str = "6b3873000a200a09706f6c6963792f76311213506f6444697372757074696f6e427564676574123c0a130a0370646212\
                   001a0022002a0032003800420012190a09080110001a03353025120c0a0a0a0361707012037765621a0a080018002000\
                   280030001a002200";
const PRIORITY_CLASS: &str = "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c617373\
                              12320a120a02706312001a0022002a0032003800420010e80718002201642a14507265656d70744c6f7765\
                              725072696f726974791a002200";
const INGRESS: &str = "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e6772657373125e0a130a03696e67\
                       12001a0022002a00320038004200124312120a07666f6f2e636f6d12076d792d636572741a2d0a07666f6f2e636f\
                       6d12220a200a1e0a042f626172120f220d0a047376633112050a0010903f1a0545786163741a020a001a002200";

fn captured(hex_text: &str) -> Value {
    let bytes = hex(&hex_text.split_whitespace().collect::<String>());
    decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kubectl_namespace_and_secret() {
    assert_eq!(
        captured(NAMESPACE),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {}, "status": {}})
    );
    // Secret.data is map<string, bytes>: base64 in JSON; the empty type is left out.
    assert_eq!(
        captured(SECRET),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "czNjcjN0"}})
    );
}

#[test]
fn kubectl_deployment() {
    let d = captured(DEPLOYMENT);
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["metadata"], json!({"name": "web", "labels": {"app": "web"}}));
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d["spec"]["strategy"], json!({}));
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"], json!({"labels": {"app": "web"}}));
    assert_eq!(
        pod["spec"]["containers"],
        json!([{"name": "busybox", "image": "busybox", "ports": [{"containerPort": 8080}], "resources": {}}])
    );
    assert_eq!(d["status"], json!({}));
}

#[test]
fn kubectl_service_quota_pdb() {
    let s = captured(SERVICE);
    assert_eq!(
        s["spec"],
        json!({
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "svc"},
            "type": "ClusterIP",
        })
    );
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
    let q = captured(QUOTA);
    assert_eq!(
        q["spec"]["hard"],
        json!({"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi"})
    );
    let p = captured(PDB);
    assert_eq!(p["spec"]["minAvailable"], "50%");
    assert_eq!(p["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    // Status has non-omitempty zero counters, as Go's JSON writes them.
    assert_eq!(
        p["status"],
        json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
    );
}

#[test]
fn kubectl_priority_class_and_ingress() {
    let pc = captured(PRIORITY_CLASS);
    assert_eq!(pc["value"], 1000);
    assert_eq!(pc["description"], "d");
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    assert!(pc.get("globalDefault").is_none(), "{pc}");
    let ing = captured(INGRESS);
    // IngressRule inlines IngressRuleValue (http).
    assert_eq!(
        ing["spec"],
        json!({
            "tls": [{"hosts": ["foo.com"], "secretName": "my-cert"}],
            "rules": [{"host": "foo.com", "http": {"paths": [{
                "path": "/bar", "pathType": "Exact",
                "backend": {"service": {"name": "svc1", "port": {"number": 8080}}},
            }]}}],
        })
    );
}

#[test]
fn zero_values_follow_go_json() {
    // Pointer fields keep their zero (replicas: 0 is not "default to 1"), non-pointer
    // omitempty fields drop it, required fields keep it.
    let spec = Enc::new()
        .int(1, 0) // replicas *int32
        .int(5, 0) // minReadySeconds int32 omitempty
        .int(7, 0) // paused bool omitempty
        .msg(
            3,
            Enc::new().msg(
                2,
                Enc::new()
                    .msg(2, Enc::new().str(1, "").str(2, "").str(14, "")) // name "" is kept
                    .int(21, 0), // automountServiceAccountToken *bool: false kept
            ),
        );
    let d = decode(&body(
        "apps/v1",
        "Deployment",
        Enc::new().msg(1, meta("w").str(3, "").int(7, 0)).msg(2, spec),
    ))
    .unwrap();
    assert_eq!(d["metadata"], json!({"name": "w"}));
    assert_eq!(
        d["spec"],
        json!({
            "replicas": 0,
            "template": {"spec": {"containers": [{"name": ""}], "automountServiceAccountToken": false}},
        })
    );
}

#[test]
fn integers() {
    let spec = Enc::new()
        .int(25, -5) // priority int32, sign-extended to 10 bytes on the wire
        .int(4, -1) // terminationGracePeriodSeconds int64
        .int(5, i64::MAX) // activeDeadlineSeconds
        .msg(
            14,
            Enc::new().int(2, 1000).int(4, 1).int(4, 2).bytes(4, &[3, 0x80, 0x01]),
        ); // supplementalGroups: unpacked and packed
    let p = decode(&body("v1", "Pod", Enc::new().msg(2, spec))).unwrap();
    assert_eq!(p["spec"]["priority"], -5);
    assert_eq!(p["spec"]["terminationGracePeriodSeconds"], -1);
    assert_eq!(p["spec"]["activeDeadlineSeconds"], i64::MAX);
    assert_eq!(
        p["spec"]["securityContext"],
        json!({"runAsUser": 1000, "supplementalGroups": [1, 2, 3, 128]})
    );
}

#[test]
fn times() {
    let ts = |s: i64, n: i64| Enc::new().int(1, s).int(2, n);
    let m = Enc::new()
        .str(1, "n")
        .msg(8, Enc::new()) // creationTimestamp: the zero time, JSON null
        .msg(9, ts(1_700_000_000, 999_999_999)); // deletionTimestamp: second precision
    let ns = decode(&body("v1", "Namespace", Enc::new().msg(1, m))).unwrap();
    assert_eq!(
        ns["metadata"],
        json!({"name": "n", "deletionTimestamp": "2023-11-14T22:13:20Z"})
    );
    // The epoch itself is a real time (seconds = 0 written explicitly).
    assert_eq!(time(&ts(0, 0).0, false), Ok(Some(json!("1970-01-01T00:00:00Z"))));
    assert_eq!(time(&ts(-1, 0).0, false), Ok(Some(json!("1969-12-31T23:59:59Z"))));
    assert_eq!(
        time(&ts(1_700_000_000, 123_456_789).0, true),
        Ok(Some(json!("2023-11-14T22:13:20.123456Z")))
    );
    assert_eq!(time(&[], true), Ok(None));
    assert!(time(&ts(i64::MAX, 0).0, false).is_err());
    assert!(time(&ts(MAX_SECONDS + 1, 0).0, false).is_err());
    assert_eq!(
        time(&ts(MAX_SECONDS, 0).0, false),
        Ok(Some(json!("9999-12-31T23:59:59Z")))
    );
    // A Job condition carries a Time inside a repeated message.
    let cond = Enc::new().str(1, "Complete").str(2, "True").msg(4, ts(86_400, 0));
    let job = decode(&body("batch/v1", "Job", Enc::new().msg(3, Enc::new().msg(1, cond)))).unwrap();
    assert_eq!(
        job["status"]["conditions"],
        json!([{"type": "Complete", "status": "True", "lastTransitionTime": "1970-01-02T00:00:00Z"}])
    );
}

#[test]
fn durations() {
    for (nanos, text) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (90 * 1_000_000_000, "1m30s"),
        (3_600 * 1_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000_000, "-2s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ] {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
    let d = element(
        Kind::Duration,
        wire::Value::Bytes(&Enc::new().int(1, 90_000_000_000).0),
        0,
    );
    assert_eq!(d, Ok(Some(json!("1m30s"))));
}

#[test]
fn quantities_and_int_or_string() {
    let limits = Enc::new()
        .entry(1, "cpu", Enc::new().str(1, "500m"))
        .entry(1, "memory", Enc::new().str(1, "128Mi"));
    let container = Enc::new().str(1, "c").msg(8, limits);
    let probe = Enc::new().msg(
        1,
        Enc::new().msg(
            2,
            Enc::new()
                .str(1, "/healthz")
                .msg(2, Enc::new().int(1, 1).str(3, "http")),
        ),
    );
    let container = container.msg(10, probe);
    let p = decode(&body("v1", "Pod", Enc::new().msg(2, Enc::new().msg(2, container)))).unwrap();
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
    // Probe inlines ProbeHandler; the port is an IntOrString holding a string.
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}})
    );

    let port = |t: i64| Enc::new().int(1, t).int(2, 8080).str(3, "web");
    let ok = element(Kind::IntOrString, wire::Value::Bytes(&port(0).0), 0);
    assert_eq!(ok, Ok(Some(json!(8080))));
    let ok = element(Kind::IntOrString, wire::Value::Bytes(&port(1).0), 0);
    assert_eq!(ok, Ok(Some(json!("web"))));
    assert!(element(Kind::IntOrString, wire::Value::Bytes(&port(2).0), 0).is_err());
    // A quantity without its string is zero.
    assert_eq!(
        element(Kind::Quantity, wire::Value::Bytes(&[]), 0),
        Ok(Some(json!("0")))
    );
}

#[test]
fn bytes_maps_and_inline_volumes() {
    let raw = Enc::new()
        .msg(1, meta("s"))
        .entry_bytes(2, "bin", &[0, 0xff, 0xfe])
        .entry_bytes(2, "empty", b"")
        .msg(2, Enc::new().str(1, "novalue")) // an entry without value: the zero value
        .msg(4, Enc::new().str(1, "plain").str(2, "text"))
        .str(3, "Opaque")
        .int(5, 1);
    let s = decode(&body("v1", "Secret", raw)).unwrap();
    assert_eq!(s["data"], json!({"bin": "AP/+", "empty": "", "novalue": ""}));
    assert_eq!(s["stringData"], json!({"plain": "text"}));
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["immutable"], true);

    // Volume inlines VolumeSource; EphemeralContainer inlines EphemeralContainerCommon.
    let volume = Enc::new().str(1, "cache").msg(
        2,
        Enc::new().msg(2, Enc::new().str(1, "Memory").msg(2, Enc::new().str(1, "1Gi"))),
    );
    let ephemeral = Enc::new()
        .msg(1, Enc::new().str(1, "debug").str(2, "busybox"))
        .str(2, "app");
    let p = decode(&body(
        "v1",
        "Pod",
        Enc::new().msg(2, Enc::new().msg(1, volume).msg(34, ephemeral)),
    ))
    .unwrap();
    assert_eq!(
        p["spec"]["volumes"],
        json!([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}])
    );
    assert_eq!(
        p["spec"]["ephemeralContainers"],
        json!([{"name": "debug", "image": "busybox", "targetContainerName": "app"}])
    );
}

#[test]
fn raw_extensions_and_embedded_objects() {
    let json_raw = Enc::new().bytes(1, br#"{"a":[1,2]}"#);
    assert_eq!(
        element(Kind::Raw, wire::Value::Bytes(&json_raw.0), 0),
        Ok(Some(json!({"a": [1, 2]})))
    );
    assert_eq!(element(Kind::Raw, wire::Value::Bytes(&[]), 0), Ok(None));
    let nested = Enc::new().bytes(1, &body("v1", "ConfigMap", Enc::new().msg(1, meta("c"))));
    assert_eq!(
        element(Kind::Raw, wire::Value::Bytes(&nested.0), 0),
        Ok(Some(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        ))
    );
    assert!(element(Kind::Raw, wire::Value::Bytes(&Enc::new().bytes(1, b"{nope").0), 0).is_err());
    let fields = Enc::new().bytes(1, br#"{"f:data":{}}"#);
    assert_eq!(
        element(Kind::FieldsV1, wire::Value::Bytes(&fields.0), 0),
        Ok(Some(json!({"f:data": {}})))
    );
}

#[test]
fn eviction_and_delete_options() {
    let opts = Enc::new()
        .int(1, 0)
        .msg(2, Enc::new().str(1, "uid-1"))
        .str(4, "Foreground")
        .str(5, "All");
    let e = decode(&body(
        "policy/v1",
        "Eviction",
        Enc::new().msg(1, meta("p").str(3, "ns")).msg(2, opts.clone()),
    ))
    .unwrap();
    assert_eq!(
        e,
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "p", "namespace": "ns"},
            "deleteOptions": {
                "gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"},
                "propagationPolicy": "Foreground", "dryRun": ["All"],
            },
        })
    );
    // DeleteOptions is registered in every group version.
    for gv in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let d = decode(&body(gv, "DeleteOptions", opts.clone())).unwrap();
        assert_eq!(d["gracePeriodSeconds"], 0);
        assert_eq!(d["apiVersion"], gv);
    }
}

#[test]
fn rbac() {
    let rule = Enc::new().str(1, "get").str(1, "list").str(2, "").str(3, "pods");
    let role = decode(&body(
        "rbac.authorization.k8s.io/v1",
        "Role",
        Enc::new().msg(1, meta("r")).msg(2, rule),
    ))
    .unwrap();
    assert_eq!(
        role["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
    );
    let binding = Enc::new()
        .msg(1, meta("rb"))
        .msg(
            2,
            Enc::new()
                .str(1, "User")
                .str(2, "rbac.authorization.k8s.io")
                .str(3, "bob")
                .str(4, ""),
        )
        .msg(
            3,
            Enc::new()
                .str(1, "rbac.authorization.k8s.io")
                .str(2, "Role")
                .str(3, "r"),
        );
    let rb = decode(&body("rbac.authorization.k8s.io/v1", "RoleBinding", binding)).unwrap();
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}])
    );
    assert_eq!(
        rb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"})
    );
}

#[test]
fn unknown_fields_are_skipped_and_messages_merge() {
    let raw = Enc::new()
        .int(99, 7) // unknown varint
        .msg(1, meta("c").bytes(1000, b"future").int(15, 1)) // unknown fields inside metadata
        .key(98, 1)
        .raw(&[0; 8]) // fixed64
        .key(97, 5)
        .raw(&[0; 4]) // fixed32
        .key(96, 3)
        .int(1, 1)
        .key(96, 4) // a group
        .msg(
            1,
            Enc::new()
                .entry(11, "a", Enc::new())
                .msg(11, Enc::new().str(1, "b").str(2, "2")),
        ) // metadata again: merged
        .msg(2, Enc::new().str(1, "k").str(2, "v")); // data
    let cm = decode(&body("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        cm,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "", "b": "2"}}, "data": {"k": "v"}})
    );
    // Unknown envelope fields too.
    let mut b = body("v1", "ConfigMap", Enc::new().msg(1, meta("c")));
    b.extend(Enc::new().int(9, 1).0);
    assert_eq!(decode(&b).unwrap()["metadata"]["name"], "c");
}

#[test]
fn malformed_input_is_an_error() {
    let err = |b: &[u8]| decode(b).expect_err("must fail");
    assert!(err(b"{\"kind\":\"Pod\"}").contains("magic"));
    assert!(err(b"k8s\x00\x0a").contains("envelope"));
    assert!(err(&body("v1", "Widget", Enc::new())).contains("cannot decode Widget"));
    assert!(err(&body("", "", Enc::new())).contains("no kind"));
    // A wrong wire type names the field.
    let e = err(&body(
        "apps/v1",
        "Deployment",
        Enc::new().msg(2, Enc::new().str(1, "three")),
    ));
    assert!(
        e.contains("spec.replicas: expected int32 (varint), got length-delimited"),
        "{e}"
    );
    let e = err(&body(
        "apps/v1",
        "Deployment",
        Enc::new().msg(
            2,
            Enc::new().msg(
                3,
                Enc::new().msg(2, Enc::new().msg(2, Enc::new()).msg(2, Enc::new().int(2, 1))),
            ),
        ),
    ));
    assert!(
        e.contains("spec.template.spec.containers[1].image: expected string (length-delimited)"),
        "{e}"
    );
    let e = err(&body("v1", "ConfigMap", Enc::new().int(1, 5)));
    assert!(
        e.contains("metadata: expected ObjectMeta (length-delimited), got varint"),
        "{e}"
    );
    // Truncated and overlong.
    let mut b = body("v1", "ConfigMap", Enc::new().msg(1, meta("c")));
    b.truncate(b.len() - 5); // into raw (the envelope ends with two empty strings)
    assert!(err(&b).contains("past the end"));
    let mut b = body("v1", "ConfigMap", Enc::new());
    b.extend([0x08, 0xff, 0xff]);
    assert!(err(&b).contains("truncated varint"));
    // Content encodings and embedded types we do not speak.
    let mut b = MAGIC.to_vec();
    b.extend(
        Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .str(3, "gzip")
            .0,
    );
    assert!(err(&b).contains("content encoding"));
    let mut b = MAGIC.to_vec();
    b.extend(
        Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .str(4, "application/cbor")
            .0,
    );
    assert!(err(&b).contains("content type"));
    // ... but an embedded JSON object is fine.
    let mut b = MAGIC.to_vec();
    b.extend(
        Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .bytes(2, br#"{"data":{"a":"b"}}"#)
            .str(4, "application/json")
            .0,
    );
    assert_eq!(
        decode(&b).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
}

#[test]
fn deep_nesting_is_an_error() {
    // No table is recursive, but embedded objects could be: the depth is capped.
    let mut object = Map::new();
    let e = merge_message(&[], &core_v1::POD, MAX_DEPTH + 1, &mut object);
    assert_eq!(e, Err("Pod nested too deeply".into()));
}

/// Random bytes, truncations and mutations of valid bodies: errors, never panics.
#[test]
fn fuzz_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x6b38_7300);
    let seeds: Vec<Vec<u8>> = [
        NAMESPACE,
        SECRET,
        DEPLOYMENT,
        SERVICE,
        QUOTA,
        PDB,
        PRIORITY_CLASS,
        INGRESS,
    ]
    .iter()
    .map(|h| hex(&h.split_whitespace().collect::<String>()))
    .collect();
    for seed in &seeds {
        for len in 0..seed.len() {
            let _ = decode(&seed[..len]);
        }
    }
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].clone();
        match i % 4 {
            0 => {
                let n = rng.random_range(1..6);
                for _ in 0..n {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
            }
            1 => {
                let at = rng.random_range(4..b.len());
                b.insert(at, rng.random());
            }
            2 => {
                let at = rng.random_range(4..b.len());
                b.remove(at);
            }
            _ => {
                let len = rng.random_range(0..64);
                b = MAGIC.to_vec();
                b.extend((0..len).map(|_| rng.random::<u8>()));
            }
        }
        let _ = decode(&b);
    }
}

/// Every table reachable from `KINDS` is usable: fields sorted by number with no
/// duplicates, inline fields are messages, and no two fields (inline ones
/// flattened) share a JSON name.
#[test]
fn tables_are_well_formed() {
    fn names(m: &'static Message, out: &mut Vec<&'static str>) {
        for f in m.fields {
            match (f.shape, f.kind) {
                (Shape::Inline, Kind::Msg(inner)) => names(inner, out),
                (Shape::Inline, _) => panic!("{}.{} is inline but not a message", m.name, f.number),
                _ => out.push(f.name),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<&'static Message> = KINDS.iter().map(|(_, _, m)| *m).collect();
    while let Some(m) = todo.pop() {
        if !seen.insert(m.name) {
            continue;
        }
        assert!(
            m.fields.windows(2).all(|w| w[0].number < w[1].number),
            "{} fields not sorted",
            m.name
        );
        let mut all = Vec::new();
        names(m, &mut all);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{} has duplicate JSON names", m.name);
        for f in m.fields {
            assert!(f.number > 0);
            assert!(f.shape == Shape::Inline || !f.name.is_empty());
            if f.omit_empty {
                assert!(
                    f.shape == Shape::One
                        && matches!(f.kind, Kind::Str | Kind::I32 | Kind::I64 | Kind::Bool | Kind::Bytes),
                    "{}.{}: omitempty only matters for scalars",
                    m.name,
                    f.name
                );
            }
            if let Kind::Msg(inner) = f.kind {
                todo.push(inner);
            }
        }
    }
    assert!(seen.len() > 150, "{} messages", seen.len());
}
