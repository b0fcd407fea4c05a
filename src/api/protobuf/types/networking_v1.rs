//! Messages of `k8s.io/api/networking/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{I32, Msg, Str};
use crate::api::protobuf::schema::{Message, f, inline};

pub static HTTP_INGRESS_PATH: Message = Message::new(
    "HTTPIngressPath",
    &[
        f(1, "path", Str).omitempty(),
        f(2, "backend", Msg(&INGRESS_BACKEND)),
        f(3, "pathType", Str),
    ],
);

pub static HTTP_INGRESS_RULE_VALUE: Message = Message::new(
    "HTTPIngressRuleValue",
    &[f(1, "paths", Msg(&HTTP_INGRESS_PATH)).repeated()],
);

pub static INGRESS: Message = Message::new(
    "Ingress",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&INGRESS_SPEC)),
        f(3, "status", Msg(&INGRESS_STATUS)),
    ],
);

pub static INGRESS_BACKEND: Message = Message::new(
    "IngressBackend",
    &[
        f(3, "resource", Msg(&super::core_v1::TYPED_LOCAL_OBJECT_REFERENCE)),
        f(4, "service", Msg(&INGRESS_SERVICE_BACKEND)),
    ],
);

pub static INGRESS_LOAD_BALANCER_INGRESS: Message = Message::new(
    "IngressLoadBalancerIngress",
    &[
        f(1, "ip", Str).omitempty(),
        f(2, "hostname", Str).omitempty(),
        f(4, "ports", Msg(&INGRESS_PORT_STATUS)).repeated(),
    ],
);

pub static INGRESS_LOAD_BALANCER_STATUS: Message = Message::new(
    "IngressLoadBalancerStatus",
    &[f(1, "ingress", Msg(&INGRESS_LOAD_BALANCER_INGRESS)).repeated()],
);

pub static INGRESS_PORT_STATUS: Message = Message::new(
    "IngressPortStatus",
    &[f(1, "port", I32), f(2, "protocol", Str), f(3, "error", Str)],
);

pub static INGRESS_RULE: Message = Message::new(
    "IngressRule",
    &[f(1, "host", Str).omitempty(), inline(2, &INGRESS_RULE_VALUE)],
);

pub static INGRESS_RULE_VALUE: Message =
    Message::new("IngressRuleValue", &[f(1, "http", Msg(&HTTP_INGRESS_RULE_VALUE))]);

pub static INGRESS_SERVICE_BACKEND: Message = Message::new(
    "IngressServiceBackend",
    &[f(1, "name", Str), f(2, "port", Msg(&SERVICE_BACKEND_PORT))],
);

pub static INGRESS_SPEC: Message = Message::new(
    "IngressSpec",
    &[
        f(1, "defaultBackend", Msg(&INGRESS_BACKEND)),
        f(2, "tls", Msg(&INGRESS_TLS)).repeated(),
        f(3, "rules", Msg(&INGRESS_RULE)).repeated(),
        f(4, "ingressClassName", Str),
    ],
);

pub static INGRESS_STATUS: Message = Message::new(
    "IngressStatus",
    &[f(1, "loadBalancer", Msg(&INGRESS_LOAD_BALANCER_STATUS))],
);

pub static INGRESS_TLS: Message = Message::new(
    "IngressTLS",
    &[f(1, "hosts", Str).repeated(), f(2, "secretName", Str).omitempty()],
);

pub static SERVICE_BACKEND_PORT: Message = Message::new(
    "ServiceBackendPort",
    &[f(1, "name", Str).omitempty(), f(2, "number", I32).omitempty()],
);
