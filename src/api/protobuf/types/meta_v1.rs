//! Messages of `k8s.io/apimachinery/pkg/apis/meta/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Bool, FieldsV1, I64, Msg, Str, Time};
use crate::api::protobuf::schema::{Message, f};

pub static CONDITION: Message = Message::new(
    "Condition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "observedGeneration", I64).omitempty(),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str),
        f(6, "message", Str),
    ],
);

pub static DELETE_OPTIONS: Message = Message::new(
    "DeleteOptions",
    &[
        f(1, "gracePeriodSeconds", I64),
        f(2, "preconditions", Msg(&PRECONDITIONS)),
        f(3, "orphanDependents", Bool),
        f(4, "propagationPolicy", Str),
        f(5, "dryRun", Str).repeated(),
        f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
    ],
);

pub static LABEL_SELECTOR: Message = Message::new(
    "LabelSelector",
    &[
        f(1, "matchLabels", Str).map(),
        f(2, "matchExpressions", Msg(&LABEL_SELECTOR_REQUIREMENT)).repeated(),
    ],
);

pub static LABEL_SELECTOR_REQUIREMENT: Message = Message::new(
    "LabelSelectorRequirement",
    &[f(1, "key", Str), f(2, "operator", Str), f(3, "values", Str).repeated()],
);

pub static MANAGED_FIELDS_ENTRY: Message = Message::new(
    "ManagedFieldsEntry",
    &[
        f(1, "manager", Str).omitempty(),
        f(2, "operation", Str).omitempty(),
        f(3, "apiVersion", Str).omitempty(),
        f(4, "time", Time),
        f(6, "fieldsType", Str).omitempty(),
        f(7, "fieldsV1", FieldsV1),
        f(8, "subresource", Str).omitempty(),
    ],
);

pub static OBJECT_META: Message = Message::new(
    "ObjectMeta",
    &[
        f(1, "name", Str).omitempty(),
        f(2, "generateName", Str).omitempty(),
        f(3, "namespace", Str).omitempty(),
        f(4, "selfLink", Str).omitempty(),
        f(5, "uid", Str).omitempty(),
        f(6, "resourceVersion", Str).omitempty(),
        f(7, "generation", I64).omitempty(),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        f(10, "deletionGracePeriodSeconds", I64),
        f(11, "labels", Str).map(),
        f(12, "annotations", Str).map(),
        f(13, "ownerReferences", Msg(&OWNER_REFERENCE)).repeated(),
        f(14, "finalizers", Str).repeated(),
        f(17, "managedFields", Msg(&MANAGED_FIELDS_ENTRY)).repeated(),
    ],
);

pub static OWNER_REFERENCE: Message = Message::new(
    "OwnerReference",
    &[
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "controller", Bool),
        f(7, "blockOwnerDeletion", Bool),
    ],
);

pub static PRECONDITIONS: Message = Message::new("Preconditions", &[f(1, "uid", Str), f(2, "resourceVersion", Str)]);
