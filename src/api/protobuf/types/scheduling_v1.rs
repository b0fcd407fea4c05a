//! Messages of `k8s.io/api/scheduling/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Bool, I32, Msg, Str};
use crate::api::protobuf::schema::{Message, f};

pub static PRIORITY_CLASS: Message = Message::new(
    "PriorityClass",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "value", I32),
        f(3, "globalDefault", Bool).omitempty(),
        f(4, "description", Str).omitempty(),
        f(5, "preemptionPolicy", Str),
    ],
);
