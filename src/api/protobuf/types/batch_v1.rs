//! Messages of `k8s.io/api/batch/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Bool, I32, I64, Msg, Str, Time};
use crate::api::protobuf::schema::{Message, f};

pub static CRON_JOB: Message = Message::new(
    "CronJob",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&CRON_JOB_SPEC)),
        f(3, "status", Msg(&CRON_JOB_STATUS)),
    ],
);

pub static CRON_JOB_SPEC: Message = Message::new(
    "CronJobSpec",
    &[
        f(1, "schedule", Str),
        f(2, "startingDeadlineSeconds", I64),
        f(3, "concurrencyPolicy", Str).omitempty(),
        f(4, "suspend", Bool),
        f(5, "jobTemplate", Msg(&JOB_TEMPLATE_SPEC)),
        f(6, "successfulJobsHistoryLimit", I32),
        f(7, "failedJobsHistoryLimit", I32),
        f(8, "timeZone", Str),
    ],
);

pub static CRON_JOB_STATUS: Message = Message::new(
    "CronJobStatus",
    &[
        f(1, "active", Msg(&super::core_v1::OBJECT_REFERENCE)).repeated(),
        f(4, "lastScheduleTime", Time),
        f(5, "lastSuccessfulTime", Time),
    ],
);

pub static JOB: Message = Message::new(
    "Job",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&JOB_SPEC)),
        f(3, "status", Msg(&JOB_STATUS)),
    ],
);

pub static JOB_CONDITION: Message = Message::new(
    "JobCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastProbeTime", Time),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str).omitempty(),
        f(6, "message", Str).omitempty(),
    ],
);

pub static JOB_SPEC: Message = Message::new(
    "JobSpec",
    &[
        f(1, "parallelism", I32),
        f(2, "completions", I32),
        f(3, "activeDeadlineSeconds", I64),
        f(4, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(5, "manualSelector", Bool),
        f(6, "template", Msg(&super::core_v1::POD_TEMPLATE_SPEC)),
        f(7, "backoffLimit", I32),
        f(8, "ttlSecondsAfterFinished", I32),
        f(9, "completionMode", Str),
        f(10, "suspend", Bool),
        f(11, "podFailurePolicy", Msg(&POD_FAILURE_POLICY)),
        f(12, "backoffLimitPerIndex", I32),
        f(13, "maxFailedIndexes", I32),
        f(14, "podReplacementPolicy", Str),
        f(15, "managedBy", Str),
        f(16, "successPolicy", Msg(&SUCCESS_POLICY)),
    ],
);

pub static JOB_STATUS: Message = Message::new(
    "JobStatus",
    &[
        f(1, "conditions", Msg(&JOB_CONDITION)).repeated(),
        f(2, "startTime", Time),
        f(3, "completionTime", Time),
        f(4, "active", I32).omitempty(),
        f(5, "succeeded", I32).omitempty(),
        f(6, "failed", I32).omitempty(),
        f(7, "completedIndexes", Str).omitempty(),
        f(8, "uncountedTerminatedPods", Msg(&UNCOUNTED_TERMINATED_PODS)),
        f(9, "ready", I32),
        f(10, "failedIndexes", Str),
        f(11, "terminating", I32),
    ],
);

pub static JOB_TEMPLATE_SPEC: Message = Message::new(
    "JobTemplateSpec",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&JOB_SPEC)),
    ],
);

pub static POD_FAILURE_POLICY: Message = Message::new(
    "PodFailurePolicy",
    &[f(1, "rules", Msg(&POD_FAILURE_POLICY_RULE)).repeated()],
);

pub static POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT: Message = Message::new(
    "PodFailurePolicyOnExitCodesRequirement",
    &[
        f(1, "containerName", Str),
        f(2, "operator", Str),
        f(3, "values", I32).repeated(),
    ],
);

pub static POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN: Message = Message::new(
    "PodFailurePolicyOnPodConditionsPattern",
    &[f(1, "type", Str), f(2, "status", Str)],
);

pub static POD_FAILURE_POLICY_RULE: Message = Message::new(
    "PodFailurePolicyRule",
    &[
        f(1, "action", Str),
        f(2, "onExitCodes", Msg(&POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT)),
        f(3, "onPodConditions", Msg(&POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN)).repeated(),
    ],
);

pub static SUCCESS_POLICY: Message =
    Message::new("SuccessPolicy", &[f(1, "rules", Msg(&SUCCESS_POLICY_RULE)).repeated()]);

pub static SUCCESS_POLICY_RULE: Message = Message::new(
    "SuccessPolicyRule",
    &[f(1, "succeededIndexes", Str), f(2, "succeededCount", I32)],
);

pub static UNCOUNTED_TERMINATED_PODS: Message = Message::new(
    "UncountedTerminatedPods",
    &[f(1, "succeeded", Str).repeated(), f(2, "failed", Str).repeated()],
);
