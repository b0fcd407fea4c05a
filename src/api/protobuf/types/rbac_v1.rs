//! Messages of `k8s.io/api/rbac/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Msg, Str};
use crate::api::protobuf::schema::{Message, f};

pub static AGGREGATION_RULE: Message = Message::new(
    "AggregationRule",
    &[f(1, "clusterRoleSelectors", Msg(&super::meta_v1::LABEL_SELECTOR)).repeated()],
);

pub static CLUSTER_ROLE: Message = Message::new(
    "ClusterRole",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "rules", Msg(&POLICY_RULE)).repeated(),
        f(3, "aggregationRule", Msg(&AGGREGATION_RULE)),
    ],
);

pub static CLUSTER_ROLE_BINDING: Message = Message::new(
    "ClusterRoleBinding",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "subjects", Msg(&SUBJECT)).repeated(),
        f(3, "roleRef", Msg(&ROLE_REF)),
    ],
);

pub static POLICY_RULE: Message = Message::new(
    "PolicyRule",
    &[
        f(1, "verbs", Str).repeated(),
        f(2, "apiGroups", Str).repeated(),
        f(3, "resources", Str).repeated(),
        f(4, "resourceNames", Str).repeated(),
        f(5, "nonResourceURLs", Str).repeated(),
    ],
);

pub static ROLE: Message = Message::new(
    "Role",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "rules", Msg(&POLICY_RULE)).repeated(),
    ],
);

pub static ROLE_BINDING: Message = Message::new(
    "RoleBinding",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "subjects", Msg(&SUBJECT)).repeated(),
        f(3, "roleRef", Msg(&ROLE_REF)),
    ],
);

pub static ROLE_REF: Message = Message::new(
    "RoleRef",
    &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
);

pub static SUBJECT: Message = Message::new(
    "Subject",
    &[
        f(1, "kind", Str),
        f(2, "apiGroup", Str).omitempty(),
        f(3, "name", Str),
        f(4, "namespace", Str).omitempty(),
    ],
);
