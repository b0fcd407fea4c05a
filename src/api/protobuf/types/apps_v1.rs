//! Messages of `k8s.io/api/apps/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Bool, I32, I64, IntOrString, Msg, Raw, Str, Time};
use crate::api::protobuf::schema::{Message, f};

pub static CONTROLLER_REVISION: Message = Message::new(
    "ControllerRevision",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "data", Raw),
        f(3, "revision", I64),
    ],
);

pub static DAEMON_SET: Message = Message::new(
    "DaemonSet",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&DAEMON_SET_SPEC)),
        f(3, "status", Msg(&DAEMON_SET_STATUS)),
    ],
);

pub static DAEMON_SET_CONDITION: Message = Message::new(
    "DaemonSetCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastTransitionTime", Time),
        f(4, "reason", Str).omitempty(),
        f(5, "message", Str).omitempty(),
    ],
);

pub static DAEMON_SET_SPEC: Message = Message::new(
    "DaemonSetSpec",
    &[
        f(1, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(2, "template", Msg(&super::core_v1::POD_TEMPLATE_SPEC)),
        f(3, "updateStrategy", Msg(&DAEMON_SET_UPDATE_STRATEGY)),
        f(4, "minReadySeconds", I32).omitempty(),
        f(6, "revisionHistoryLimit", I32),
    ],
);

pub static DAEMON_SET_STATUS: Message = Message::new(
    "DaemonSetStatus",
    &[
        f(1, "currentNumberScheduled", I32),
        f(2, "numberMisscheduled", I32),
        f(3, "desiredNumberScheduled", I32),
        f(4, "numberReady", I32),
        f(5, "observedGeneration", I64).omitempty(),
        f(6, "updatedNumberScheduled", I32).omitempty(),
        f(7, "numberAvailable", I32).omitempty(),
        f(8, "numberUnavailable", I32).omitempty(),
        f(9, "collisionCount", I32),
        f(10, "conditions", Msg(&DAEMON_SET_CONDITION)).repeated(),
    ],
);

pub static DAEMON_SET_UPDATE_STRATEGY: Message = Message::new(
    "DaemonSetUpdateStrategy",
    &[
        f(1, "type", Str).omitempty(),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE_DAEMON_SET)),
    ],
);

pub static DEPLOYMENT: Message = Message::new(
    "Deployment",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Msg(&DEPLOYMENT_STATUS)),
    ],
);

pub static DEPLOYMENT_CONDITION: Message = Message::new(
    "DeploymentCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(4, "reason", Str).omitempty(),
        f(5, "message", Str).omitempty(),
        f(6, "lastUpdateTime", Time),
        f(7, "lastTransitionTime", Time),
    ],
);

pub static DEPLOYMENT_SPEC: Message = Message::new(
    "DeploymentSpec",
    &[
        f(1, "replicas", I32),
        f(2, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(3, "template", Msg(&super::core_v1::POD_TEMPLATE_SPEC)),
        f(4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", I32).omitempty(),
        f(6, "revisionHistoryLimit", I32),
        f(7, "paused", Bool).omitempty(),
        f(9, "progressDeadlineSeconds", I32),
    ],
);

pub static DEPLOYMENT_STATUS: Message = Message::new(
    "DeploymentStatus",
    &[
        f(1, "observedGeneration", I64).omitempty(),
        f(2, "replicas", I32).omitempty(),
        f(3, "updatedReplicas", I32).omitempty(),
        f(4, "availableReplicas", I32).omitempty(),
        f(5, "unavailableReplicas", I32).omitempty(),
        f(6, "conditions", Msg(&DEPLOYMENT_CONDITION)).repeated(),
        f(7, "readyReplicas", I32).omitempty(),
        f(8, "collisionCount", I32),
        f(9, "terminatingReplicas", I32),
    ],
);

pub static DEPLOYMENT_STRATEGY: Message = Message::new(
    "DeploymentStrategy",
    &[
        f(1, "type", Str).omitempty(),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
);

pub static REPLICA_SET: Message = Message::new(
    "ReplicaSet",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&REPLICA_SET_SPEC)),
        f(3, "status", Msg(&REPLICA_SET_STATUS)),
    ],
);

pub static REPLICA_SET_CONDITION: Message = Message::new(
    "ReplicaSetCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastTransitionTime", Time),
        f(4, "reason", Str).omitempty(),
        f(5, "message", Str).omitempty(),
    ],
);

pub static REPLICA_SET_SPEC: Message = Message::new(
    "ReplicaSetSpec",
    &[
        f(1, "replicas", I32),
        f(2, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(3, "template", Msg(&super::core_v1::POD_TEMPLATE_SPEC)),
        f(4, "minReadySeconds", I32).omitempty(),
    ],
);

pub static REPLICA_SET_STATUS: Message = Message::new(
    "ReplicaSetStatus",
    &[
        f(1, "replicas", I32),
        f(2, "fullyLabeledReplicas", I32).omitempty(),
        f(3, "observedGeneration", I64).omitempty(),
        f(4, "readyReplicas", I32).omitempty(),
        f(5, "availableReplicas", I32).omitempty(),
        f(6, "conditions", Msg(&REPLICA_SET_CONDITION)).repeated(),
        f(7, "terminatingReplicas", I32),
    ],
);

pub static ROLLING_UPDATE_DAEMON_SET: Message = Message::new(
    "RollingUpdateDaemonSet",
    &[f(1, "maxUnavailable", IntOrString), f(2, "maxSurge", IntOrString)],
);

pub static ROLLING_UPDATE_DEPLOYMENT: Message = Message::new(
    "RollingUpdateDeployment",
    &[f(1, "maxUnavailable", IntOrString), f(2, "maxSurge", IntOrString)],
);

pub static ROLLING_UPDATE_STATEFUL_SET_STRATEGY: Message = Message::new(
    "RollingUpdateStatefulSetStrategy",
    &[f(1, "partition", I32), f(2, "maxUnavailable", IntOrString)],
);

pub static STATEFUL_SET: Message = Message::new(
    "StatefulSet",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&STATEFUL_SET_SPEC)),
        f(3, "status", Msg(&STATEFUL_SET_STATUS)),
    ],
);

pub static STATEFUL_SET_CONDITION: Message = Message::new(
    "StatefulSetCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastTransitionTime", Time),
        f(4, "reason", Str).omitempty(),
        f(5, "message", Str).omitempty(),
    ],
);

pub static STATEFUL_SET_ORDINALS: Message = Message::new("StatefulSetOrdinals", &[f(1, "start", I32)]);

pub static STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY: Message = Message::new(
    "StatefulSetPersistentVolumeClaimRetentionPolicy",
    &[
        f(1, "whenDeleted", Str).omitempty(),
        f(2, "whenScaled", Str).omitempty(),
    ],
);

pub static STATEFUL_SET_SPEC: Message = Message::new(
    "StatefulSetSpec",
    &[
        f(1, "replicas", I32),
        f(2, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(3, "template", Msg(&super::core_v1::POD_TEMPLATE_SPEC)),
        f(4, "volumeClaimTemplates", Msg(&super::core_v1::PERSISTENT_VOLUME_CLAIM)).repeated(),
        f(5, "serviceName", Str),
        f(6, "podManagementPolicy", Str).omitempty(),
        f(7, "updateStrategy", Msg(&STATEFUL_SET_UPDATE_STRATEGY)),
        f(8, "revisionHistoryLimit", I32),
        f(9, "minReadySeconds", I32).omitempty(),
        f(
            10,
            "persistentVolumeClaimRetentionPolicy",
            Msg(&STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY),
        ),
        f(11, "ordinals", Msg(&STATEFUL_SET_ORDINALS)),
    ],
);

pub static STATEFUL_SET_STATUS: Message = Message::new(
    "StatefulSetStatus",
    &[
        f(1, "observedGeneration", I64).omitempty(),
        f(2, "replicas", I32),
        f(3, "readyReplicas", I32).omitempty(),
        f(4, "currentReplicas", I32).omitempty(),
        f(5, "updatedReplicas", I32).omitempty(),
        f(6, "currentRevision", Str).omitempty(),
        f(7, "updateRevision", Str).omitempty(),
        f(9, "collisionCount", I32),
        f(10, "conditions", Msg(&STATEFUL_SET_CONDITION)).repeated(),
        f(11, "availableReplicas", I32),
    ],
);

pub static STATEFUL_SET_UPDATE_STRATEGY: Message = Message::new(
    "StatefulSetUpdateStrategy",
    &[
        f(1, "type", Str).omitempty(),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE_STATEFUL_SET_STRATEGY)),
    ],
);
