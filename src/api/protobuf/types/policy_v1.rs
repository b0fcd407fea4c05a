//! Messages of `k8s.io/api/policy/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{I32, I64, IntOrString, Msg, Str, Time};
use crate::api::protobuf::schema::{Message, f};

pub static EVICTION: Message = Message::new(
    "Eviction",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "deleteOptions", Msg(&super::meta_v1::DELETE_OPTIONS)),
    ],
);

pub static POD_DISRUPTION_BUDGET: Message = Message::new(
    "PodDisruptionBudget",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&POD_DISRUPTION_BUDGET_SPEC)),
        f(3, "status", Msg(&POD_DISRUPTION_BUDGET_STATUS)),
    ],
);

pub static POD_DISRUPTION_BUDGET_SPEC: Message = Message::new(
    "PodDisruptionBudgetSpec",
    &[
        f(1, "minAvailable", IntOrString),
        f(2, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(3, "maxUnavailable", IntOrString),
        f(4, "unhealthyPodEvictionPolicy", Str),
    ],
);

pub static POD_DISRUPTION_BUDGET_STATUS: Message = Message::new(
    "PodDisruptionBudgetStatus",
    &[
        f(1, "observedGeneration", I64).omitempty(),
        f(2, "disruptedPods", Time).map(),
        f(3, "disruptionsAllowed", I32),
        f(4, "currentHealthy", I32),
        f(5, "desiredHealthy", I32),
        f(6, "expectedPods", I32),
        f(7, "conditions", Msg(&super::meta_v1::CONDITION)).repeated(),
    ],
);
