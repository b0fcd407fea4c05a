//! Messages of `k8s.io/api/core/v1` (its `generated.proto` as of v0.36), with JSON names and
//! `omitempty` as in its Go types. Sorted by message name; fields by number.

use crate::api::protobuf::schema::Kind::{Bool, Bytes, I32, I64, IntOrString, MicroTime, Msg, Quantity, Str, Time};
use crate::api::protobuf::schema::{Message, f, inline};

pub static AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE: Message = Message::new(
    "AWSElasticBlockStoreVolumeSource",
    &[
        f(1, "volumeID", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "partition", I32).omitempty(),
        f(4, "readOnly", Bool).omitempty(),
    ],
);

pub static AFFINITY: Message = Message::new(
    "Affinity",
    &[
        f(1, "nodeAffinity", Msg(&NODE_AFFINITY)),
        f(2, "podAffinity", Msg(&POD_AFFINITY)),
        f(3, "podAntiAffinity", Msg(&POD_ANTI_AFFINITY)),
    ],
);

pub static APP_ARMOR_PROFILE: Message =
    Message::new("AppArmorProfile", &[f(1, "type", Str), f(2, "localhostProfile", Str)]);

pub static AZURE_DISK_VOLUME_SOURCE: Message = Message::new(
    "AzureDiskVolumeSource",
    &[
        f(1, "diskName", Str),
        f(2, "diskURI", Str),
        f(3, "cachingMode", Str),
        f(4, "fsType", Str),
        f(5, "readOnly", Bool),
        f(6, "kind", Str),
    ],
);

pub static AZURE_FILE_VOLUME_SOURCE: Message = Message::new(
    "AzureFileVolumeSource",
    &[
        f(1, "secretName", Str),
        f(2, "shareName", Str),
        f(3, "readOnly", Bool).omitempty(),
    ],
);

pub static CSI_VOLUME_SOURCE: Message = Message::new(
    "CSIVolumeSource",
    &[
        f(1, "driver", Str),
        f(2, "readOnly", Bool),
        f(3, "fsType", Str),
        f(4, "volumeAttributes", Str).map(),
        f(5, "nodePublishSecretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub static CAPABILITIES: Message = Message::new(
    "Capabilities",
    &[f(1, "add", Str).repeated(), f(2, "drop", Str).repeated()],
);

pub static CEPH_FS_VOLUME_SOURCE: Message = Message::new(
    "CephFSVolumeSource",
    &[
        f(1, "monitors", Str).repeated(),
        f(2, "path", Str).omitempty(),
        f(3, "user", Str).omitempty(),
        f(4, "secretFile", Str).omitempty(),
        f(5, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(6, "readOnly", Bool).omitempty(),
    ],
);

pub static CINDER_VOLUME_SOURCE: Message = Message::new(
    "CinderVolumeSource",
    &[
        f(1, "volumeID", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "readOnly", Bool).omitempty(),
        f(4, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub static CLIENT_IP_CONFIG: Message = Message::new("ClientIPConfig", &[f(1, "timeoutSeconds", I32)]);

pub static CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message::new(
    "ClusterTrustBundleProjection",
    &[
        f(1, "name", Str),
        f(2, "signerName", Str),
        f(3, "labelSelector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(4, "path", Str),
        f(5, "optional", Bool),
    ],
);

pub static CONFIG_MAP: Message = Message::new(
    "ConfigMap",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "data", Str).map(),
        f(3, "binaryData", Bytes).map(),
        f(4, "immutable", Bool),
    ],
);

pub static CONFIG_MAP_ENV_SOURCE: Message = Message::new(
    "ConfigMapEnvSource",
    &[inline(1, &LOCAL_OBJECT_REFERENCE), f(2, "optional", Bool)],
);

pub static CONFIG_MAP_KEY_SELECTOR: Message = Message::new(
    "ConfigMapKeySelector",
    &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        f(2, "key", Str),
        f(3, "optional", Bool),
    ],
);

pub static CONFIG_MAP_PROJECTION: Message = Message::new(
    "ConfigMapProjection",
    &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        f(2, "items", Msg(&KEY_TO_PATH)).repeated(),
        f(4, "optional", Bool),
    ],
);

pub static CONFIG_MAP_VOLUME_SOURCE: Message = Message::new(
    "ConfigMapVolumeSource",
    &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        f(2, "items", Msg(&KEY_TO_PATH)).repeated(),
        f(3, "defaultMode", I32),
        f(4, "optional", Bool),
    ],
);

pub static CONTAINER: Message = Message::new(
    "Container",
    &[
        f(1, "name", Str),
        f(2, "image", Str).omitempty(),
        f(3, "command", Str).repeated(),
        f(4, "args", Str).repeated(),
        f(5, "workingDir", Str).omitempty(),
        f(6, "ports", Msg(&CONTAINER_PORT)).repeated(),
        f(7, "env", Msg(&ENV_VAR)).repeated(),
        f(8, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        f(9, "volumeMounts", Msg(&VOLUME_MOUNT)).repeated(),
        f(10, "livenessProbe", Msg(&PROBE)),
        f(11, "readinessProbe", Msg(&PROBE)),
        f(12, "lifecycle", Msg(&LIFECYCLE)),
        f(13, "terminationMessagePath", Str).omitempty(),
        f(14, "imagePullPolicy", Str).omitempty(),
        f(15, "securityContext", Msg(&SECURITY_CONTEXT)),
        f(16, "stdin", Bool).omitempty(),
        f(17, "stdinOnce", Bool).omitempty(),
        f(18, "tty", Bool).omitempty(),
        f(19, "envFrom", Msg(&ENV_FROM_SOURCE)).repeated(),
        f(20, "terminationMessagePolicy", Str).omitempty(),
        f(21, "volumeDevices", Msg(&VOLUME_DEVICE)).repeated(),
        f(22, "startupProbe", Msg(&PROBE)),
        f(23, "resizePolicy", Msg(&CONTAINER_RESIZE_POLICY)).repeated(),
        f(24, "restartPolicy", Str),
        f(25, "restartPolicyRules", Msg(&CONTAINER_RESTART_RULE)).repeated(),
    ],
);

pub static CONTAINER_EXTENDED_RESOURCE_REQUEST: Message = Message::new(
    "ContainerExtendedResourceRequest",
    &[
        f(1, "containerName", Str),
        f(2, "resourceName", Str),
        f(3, "requestName", Str),
    ],
);

pub static CONTAINER_PORT: Message = Message::new(
    "ContainerPort",
    &[
        f(1, "name", Str).omitempty(),
        f(2, "hostPort", I32).omitempty(),
        f(3, "containerPort", I32),
        f(4, "protocol", Str).omitempty(),
        f(5, "hostIP", Str).omitempty(),
    ],
);

pub static CONTAINER_RESIZE_POLICY: Message = Message::new(
    "ContainerResizePolicy",
    &[f(1, "resourceName", Str), f(2, "restartPolicy", Str)],
);

pub static CONTAINER_RESTART_RULE: Message = Message::new(
    "ContainerRestartRule",
    &[
        f(1, "action", Str).omitempty(),
        f(2, "exitCodes", Msg(&CONTAINER_RESTART_RULE_ON_EXIT_CODES)),
    ],
);

pub static CONTAINER_RESTART_RULE_ON_EXIT_CODES: Message = Message::new(
    "ContainerRestartRuleOnExitCodes",
    &[f(1, "operator", Str).omitempty(), f(2, "values", I32).repeated()],
);

pub static CONTAINER_STATE: Message = Message::new(
    "ContainerState",
    &[
        f(1, "waiting", Msg(&CONTAINER_STATE_WAITING)),
        f(2, "running", Msg(&CONTAINER_STATE_RUNNING)),
        f(3, "terminated", Msg(&CONTAINER_STATE_TERMINATED)),
    ],
);

pub static CONTAINER_STATE_RUNNING: Message = Message::new("ContainerStateRunning", &[f(1, "startedAt", Time)]);

pub static CONTAINER_STATE_TERMINATED: Message = Message::new(
    "ContainerStateTerminated",
    &[
        f(1, "exitCode", I32),
        f(2, "signal", I32).omitempty(),
        f(3, "reason", Str).omitempty(),
        f(4, "message", Str).omitempty(),
        f(5, "startedAt", Time),
        f(6, "finishedAt", Time),
        f(7, "containerID", Str).omitempty(),
    ],
);

pub static CONTAINER_STATE_WAITING: Message = Message::new(
    "ContainerStateWaiting",
    &[f(1, "reason", Str).omitempty(), f(2, "message", Str).omitempty()],
);

pub static CONTAINER_STATUS: Message = Message::new(
    "ContainerStatus",
    &[
        f(1, "name", Str),
        f(2, "state", Msg(&CONTAINER_STATE)),
        f(3, "lastState", Msg(&CONTAINER_STATE)),
        f(4, "ready", Bool),
        f(5, "restartCount", I32),
        f(6, "image", Str),
        f(7, "imageID", Str),
        f(8, "containerID", Str).omitempty(),
        f(9, "started", Bool),
        f(10, "allocatedResources", Quantity).map(),
        f(11, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        f(12, "volumeMounts", Msg(&VOLUME_MOUNT_STATUS)).repeated(),
        f(13, "user", Msg(&CONTAINER_USER)),
        f(14, "allocatedResourcesStatus", Msg(&RESOURCE_STATUS)).repeated(),
        f(15, "stopSignal", Str),
    ],
);

pub static CONTAINER_USER: Message = Message::new("ContainerUser", &[f(1, "linux", Msg(&LINUX_CONTAINER_USER))]);

pub static DOWNWARD_API_PROJECTION: Message = Message::new(
    "DownwardAPIProjection",
    &[f(1, "items", Msg(&DOWNWARD_API_VOLUME_FILE)).repeated()],
);

pub static DOWNWARD_API_VOLUME_FILE: Message = Message::new(
    "DownwardAPIVolumeFile",
    &[
        f(1, "path", Str),
        f(2, "fieldRef", Msg(&OBJECT_FIELD_SELECTOR)),
        f(3, "resourceFieldRef", Msg(&RESOURCE_FIELD_SELECTOR)),
        f(4, "mode", I32),
    ],
);

pub static DOWNWARD_API_VOLUME_SOURCE: Message = Message::new(
    "DownwardAPIVolumeSource",
    &[
        f(1, "items", Msg(&DOWNWARD_API_VOLUME_FILE)).repeated(),
        f(2, "defaultMode", I32),
    ],
);

pub static EMPTY_DIR_VOLUME_SOURCE: Message = Message::new(
    "EmptyDirVolumeSource",
    &[f(1, "medium", Str).omitempty(), f(2, "sizeLimit", Quantity)],
);

pub static ENV_FROM_SOURCE: Message = Message::new(
    "EnvFromSource",
    &[
        f(1, "prefix", Str).omitempty(),
        f(2, "configMapRef", Msg(&CONFIG_MAP_ENV_SOURCE)),
        f(3, "secretRef", Msg(&SECRET_ENV_SOURCE)),
    ],
);

pub static ENV_VAR: Message = Message::new(
    "EnvVar",
    &[
        f(1, "name", Str),
        f(2, "value", Str).omitempty(),
        f(3, "valueFrom", Msg(&ENV_VAR_SOURCE)),
    ],
);

pub static ENV_VAR_SOURCE: Message = Message::new(
    "EnvVarSource",
    &[
        f(1, "fieldRef", Msg(&OBJECT_FIELD_SELECTOR)),
        f(2, "resourceFieldRef", Msg(&RESOURCE_FIELD_SELECTOR)),
        f(3, "configMapKeyRef", Msg(&CONFIG_MAP_KEY_SELECTOR)),
        f(4, "secretKeyRef", Msg(&SECRET_KEY_SELECTOR)),
        f(5, "fileKeyRef", Msg(&FILE_KEY_SELECTOR)),
    ],
);

pub static EPHEMERAL_CONTAINER: Message = Message::new(
    "EphemeralContainer",
    &[
        inline(1, &EPHEMERAL_CONTAINER_COMMON),
        f(2, "targetContainerName", Str).omitempty(),
    ],
);

pub static EPHEMERAL_CONTAINER_COMMON: Message = Message::new(
    "EphemeralContainerCommon",
    &[
        f(1, "name", Str),
        f(2, "image", Str).omitempty(),
        f(3, "command", Str).repeated(),
        f(4, "args", Str).repeated(),
        f(5, "workingDir", Str).omitempty(),
        f(6, "ports", Msg(&CONTAINER_PORT)).repeated(),
        f(7, "env", Msg(&ENV_VAR)).repeated(),
        f(8, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        f(9, "volumeMounts", Msg(&VOLUME_MOUNT)).repeated(),
        f(10, "livenessProbe", Msg(&PROBE)),
        f(11, "readinessProbe", Msg(&PROBE)),
        f(12, "lifecycle", Msg(&LIFECYCLE)),
        f(13, "terminationMessagePath", Str).omitempty(),
        f(14, "imagePullPolicy", Str).omitempty(),
        f(15, "securityContext", Msg(&SECURITY_CONTEXT)),
        f(16, "stdin", Bool).omitempty(),
        f(17, "stdinOnce", Bool).omitempty(),
        f(18, "tty", Bool).omitempty(),
        f(19, "envFrom", Msg(&ENV_FROM_SOURCE)).repeated(),
        f(20, "terminationMessagePolicy", Str).omitempty(),
        f(21, "volumeDevices", Msg(&VOLUME_DEVICE)).repeated(),
        f(22, "startupProbe", Msg(&PROBE)),
        f(23, "resizePolicy", Msg(&CONTAINER_RESIZE_POLICY)).repeated(),
        f(24, "restartPolicy", Str),
        f(25, "restartPolicyRules", Msg(&CONTAINER_RESTART_RULE)).repeated(),
    ],
);

pub static EPHEMERAL_VOLUME_SOURCE: Message = Message::new(
    "EphemeralVolumeSource",
    &[f(1, "volumeClaimTemplate", Msg(&PERSISTENT_VOLUME_CLAIM_TEMPLATE))],
);

pub static EVENT: Message = Message::new(
    "Event",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "involvedObject", Msg(&OBJECT_REFERENCE)),
        f(3, "reason", Str).omitempty(),
        f(4, "message", Str).omitempty(),
        f(5, "source", Msg(&EVENT_SOURCE)),
        f(6, "firstTimestamp", Time),
        f(7, "lastTimestamp", Time),
        f(8, "count", I32).omitempty(),
        f(9, "type", Str).omitempty(),
        f(10, "eventTime", MicroTime),
        f(11, "series", Msg(&EVENT_SERIES)),
        f(12, "action", Str).omitempty(),
        f(13, "related", Msg(&OBJECT_REFERENCE)),
        f(14, "reportingComponent", Str),
        f(15, "reportingInstance", Str),
    ],
);

pub static EVENT_SERIES: Message = Message::new(
    "EventSeries",
    &[f(1, "count", I32).omitempty(), f(2, "lastObservedTime", MicroTime)],
);

pub static EVENT_SOURCE: Message = Message::new(
    "EventSource",
    &[f(1, "component", Str).omitempty(), f(2, "host", Str).omitempty()],
);

pub static EXEC_ACTION: Message = Message::new("ExecAction", &[f(1, "command", Str).repeated()]);

pub static FC_VOLUME_SOURCE: Message = Message::new(
    "FCVolumeSource",
    &[
        f(1, "targetWWNs", Str).repeated(),
        f(2, "lun", I32),
        f(3, "fsType", Str).omitempty(),
        f(4, "readOnly", Bool).omitempty(),
        f(5, "wwids", Str).repeated(),
    ],
);

pub static FILE_KEY_SELECTOR: Message = Message::new(
    "FileKeySelector",
    &[
        f(1, "volumeName", Str),
        f(2, "path", Str),
        f(3, "key", Str),
        f(4, "optional", Bool),
    ],
);

pub static FLEX_VOLUME_SOURCE: Message = Message::new(
    "FlexVolumeSource",
    &[
        f(1, "driver", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(4, "readOnly", Bool).omitempty(),
        f(5, "options", Str).map(),
    ],
);

pub static FLOCKER_VOLUME_SOURCE: Message = Message::new(
    "FlockerVolumeSource",
    &[
        f(1, "datasetName", Str).omitempty(),
        f(2, "datasetUUID", Str).omitempty(),
    ],
);

pub static GCE_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message::new(
    "GCEPersistentDiskVolumeSource",
    &[
        f(1, "pdName", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "partition", I32).omitempty(),
        f(4, "readOnly", Bool).omitempty(),
    ],
);

pub static GRPC_ACTION: Message = Message::new("GRPCAction", &[f(1, "port", I32), f(2, "service", Str)]);

pub static GIT_REPO_VOLUME_SOURCE: Message = Message::new(
    "GitRepoVolumeSource",
    &[
        f(1, "repository", Str),
        f(2, "revision", Str).omitempty(),
        f(3, "directory", Str).omitempty(),
    ],
);

pub static GLUSTERFS_VOLUME_SOURCE: Message = Message::new(
    "GlusterfsVolumeSource",
    &[
        f(1, "endpoints", Str),
        f(2, "path", Str),
        f(3, "readOnly", Bool).omitempty(),
    ],
);

pub static HTTP_GET_ACTION: Message = Message::new(
    "HTTPGetAction",
    &[
        f(1, "path", Str).omitempty(),
        f(2, "port", IntOrString),
        f(3, "host", Str).omitempty(),
        f(4, "scheme", Str).omitempty(),
        f(5, "httpHeaders", Msg(&HTTP_HEADER)).repeated(),
    ],
);

pub static HTTP_HEADER: Message = Message::new("HTTPHeader", &[f(1, "name", Str), f(2, "value", Str)]);

pub static HOST_ALIAS: Message = Message::new("HostAlias", &[f(1, "ip", Str), f(2, "hostnames", Str).repeated()]);

pub static HOST_IP: Message = Message::new("HostIP", &[f(1, "ip", Str)]);

pub static HOST_PATH_VOLUME_SOURCE: Message =
    Message::new("HostPathVolumeSource", &[f(1, "path", Str), f(2, "type", Str)]);

pub static ISCSI_VOLUME_SOURCE: Message = Message::new(
    "ISCSIVolumeSource",
    &[
        f(1, "targetPortal", Str),
        f(2, "iqn", Str),
        f(3, "lun", I32),
        f(4, "iscsiInterface", Str).omitempty(),
        f(5, "fsType", Str).omitempty(),
        f(6, "readOnly", Bool).omitempty(),
        f(7, "portals", Str).repeated(),
        f(8, "chapAuthDiscovery", Bool).omitempty(),
        f(10, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(11, "chapAuthSession", Bool).omitempty(),
        f(12, "initiatorName", Str),
    ],
);

pub static IMAGE_VOLUME_SOURCE: Message = Message::new(
    "ImageVolumeSource",
    &[f(1, "reference", Str).omitempty(), f(2, "pullPolicy", Str).omitempty()],
);

pub static IMAGE_VOLUME_STATUS: Message = Message::new("ImageVolumeStatus", &[f(1, "imageRef", Str).omitempty()]);

pub static KEY_TO_PATH: Message = Message::new("KeyToPath", &[f(1, "key", Str), f(2, "path", Str), f(3, "mode", I32)]);

pub static LIFECYCLE: Message = Message::new(
    "Lifecycle",
    &[
        f(1, "postStart", Msg(&LIFECYCLE_HANDLER)),
        f(2, "preStop", Msg(&LIFECYCLE_HANDLER)),
        f(3, "stopSignal", Str),
    ],
);

pub static LIFECYCLE_HANDLER: Message = Message::new(
    "LifecycleHandler",
    &[
        f(1, "exec", Msg(&EXEC_ACTION)),
        f(2, "httpGet", Msg(&HTTP_GET_ACTION)),
        f(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION)),
        f(4, "sleep", Msg(&SLEEP_ACTION)),
    ],
);

pub static LINUX_CONTAINER_USER: Message = Message::new(
    "LinuxContainerUser",
    &[
        f(1, "uid", I64),
        f(2, "gid", I64),
        f(3, "supplementalGroups", I64).repeated(),
    ],
);

pub static LOAD_BALANCER_INGRESS: Message = Message::new(
    "LoadBalancerIngress",
    &[
        f(1, "ip", Str).omitempty(),
        f(2, "hostname", Str).omitempty(),
        f(3, "ipMode", Str),
        f(4, "ports", Msg(&PORT_STATUS)).repeated(),
    ],
);

pub static LOAD_BALANCER_STATUS: Message = Message::new(
    "LoadBalancerStatus",
    &[f(1, "ingress", Msg(&LOAD_BALANCER_INGRESS)).repeated()],
);

pub static LOCAL_OBJECT_REFERENCE: Message = Message::new("LocalObjectReference", &[f(1, "name", Str).omitempty()]);

pub static MODIFY_VOLUME_STATUS: Message = Message::new(
    "ModifyVolumeStatus",
    &[
        f(1, "targetVolumeAttributesClassName", Str).omitempty(),
        f(2, "status", Str),
    ],
);

pub static NFS_VOLUME_SOURCE: Message = Message::new(
    "NFSVolumeSource",
    &[
        f(1, "server", Str),
        f(2, "path", Str),
        f(3, "readOnly", Bool).omitempty(),
    ],
);

pub static NAMESPACE: Message = Message::new(
    "Namespace",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&NAMESPACE_SPEC)),
        f(3, "status", Msg(&NAMESPACE_STATUS)),
    ],
);

pub static NAMESPACE_CONDITION: Message = Message::new(
    "NamespaceCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str).omitempty(),
        f(6, "message", Str).omitempty(),
    ],
);

pub static NAMESPACE_SPEC: Message = Message::new("NamespaceSpec", &[f(1, "finalizers", Str).repeated()]);

pub static NAMESPACE_STATUS: Message = Message::new(
    "NamespaceStatus",
    &[
        f(1, "phase", Str).omitempty(),
        f(2, "conditions", Msg(&NAMESPACE_CONDITION)).repeated(),
    ],
);

pub static NODE_AFFINITY: Message = Message::new(
    "NodeAffinity",
    &[
        f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&NODE_SELECTOR)),
        f(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Msg(&PREFERRED_SCHEDULING_TERM),
        )
        .repeated(),
    ],
);

pub static NODE_ALLOCATABLE_RESOURCE_CLAIM_STATUS: Message = Message::new(
    "NodeAllocatableResourceClaimStatus",
    &[
        f(1, "resourceClaimName", Str),
        f(2, "containers", Str).repeated(),
        f(3, "resources", Quantity).map(),
    ],
);

pub static NODE_SELECTOR: Message = Message::new(
    "NodeSelector",
    &[f(1, "nodeSelectorTerms", Msg(&NODE_SELECTOR_TERM)).repeated()],
);

pub static NODE_SELECTOR_REQUIREMENT: Message = Message::new(
    "NodeSelectorRequirement",
    &[f(1, "key", Str), f(2, "operator", Str), f(3, "values", Str).repeated()],
);

pub static NODE_SELECTOR_TERM: Message = Message::new(
    "NodeSelectorTerm",
    &[
        f(1, "matchExpressions", Msg(&NODE_SELECTOR_REQUIREMENT)).repeated(),
        f(2, "matchFields", Msg(&NODE_SELECTOR_REQUIREMENT)).repeated(),
    ],
);

pub static OBJECT_FIELD_SELECTOR: Message = Message::new(
    "ObjectFieldSelector",
    &[f(1, "apiVersion", Str).omitempty(), f(2, "fieldPath", Str)],
);

pub static OBJECT_REFERENCE: Message = Message::new(
    "ObjectReference",
    &[
        f(1, "kind", Str).omitempty(),
        f(2, "namespace", Str).omitempty(),
        f(3, "name", Str).omitempty(),
        f(4, "uid", Str).omitempty(),
        f(5, "apiVersion", Str).omitempty(),
        f(6, "resourceVersion", Str).omitempty(),
        f(7, "fieldPath", Str).omitempty(),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM: Message = Message::new(
    "PersistentVolumeClaim",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&PERSISTENT_VOLUME_CLAIM_SPEC)),
        f(3, "status", Msg(&PERSISTENT_VOLUME_CLAIM_STATUS)),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM_CONDITION: Message = Message::new(
    "PersistentVolumeClaimCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastProbeTime", Time),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str).omitempty(),
        f(6, "message", Str).omitempty(),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message::new(
    "PersistentVolumeClaimSpec",
    &[
        f(1, "accessModes", Str).repeated(),
        f(2, "resources", Msg(&VOLUME_RESOURCE_REQUIREMENTS)),
        f(3, "volumeName", Str).omitempty(),
        f(4, "selector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(5, "storageClassName", Str),
        f(6, "volumeMode", Str),
        f(7, "dataSource", Msg(&TYPED_LOCAL_OBJECT_REFERENCE)),
        f(8, "dataSourceRef", Msg(&TYPED_OBJECT_REFERENCE)),
        f(9, "volumeAttributesClassName", Str),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM_STATUS: Message = Message::new(
    "PersistentVolumeClaimStatus",
    &[
        f(1, "phase", Str).omitempty(),
        f(2, "accessModes", Str).repeated(),
        f(3, "capacity", Quantity).map(),
        f(4, "conditions", Msg(&PERSISTENT_VOLUME_CLAIM_CONDITION)).repeated(),
        f(5, "allocatedResources", Quantity).map(),
        f(7, "allocatedResourceStatuses", Str).map(),
        f(8, "currentVolumeAttributesClassName", Str),
        f(9, "modifyVolumeStatus", Msg(&MODIFY_VOLUME_STATUS)),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message::new(
    "PersistentVolumeClaimTemplate",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&PERSISTENT_VOLUME_CLAIM_SPEC)),
    ],
);

pub static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message::new(
    "PersistentVolumeClaimVolumeSource",
    &[f(1, "claimName", Str), f(2, "readOnly", Bool).omitempty()],
);

pub static PHOTON_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message::new(
    "PhotonPersistentDiskVolumeSource",
    &[f(1, "pdID", Str), f(2, "fsType", Str).omitempty()],
);

pub static POD: Message = Message::new(
    "Pod",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&POD_SPEC)),
        f(3, "status", Msg(&POD_STATUS)),
    ],
);

pub static POD_AFFINITY: Message = Message::new(
    "PodAffinity",
    &[
        f(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Msg(&POD_AFFINITY_TERM),
        )
        .repeated(),
        f(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Msg(&WEIGHTED_POD_AFFINITY_TERM),
        )
        .repeated(),
    ],
);

pub static POD_AFFINITY_TERM: Message = Message::new(
    "PodAffinityTerm",
    &[
        f(1, "labelSelector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(2, "namespaces", Str).repeated(),
        f(3, "topologyKey", Str),
        f(4, "namespaceSelector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(5, "matchLabelKeys", Str).repeated(),
        f(6, "mismatchLabelKeys", Str).repeated(),
    ],
);

pub static POD_ANTI_AFFINITY: Message = Message::new(
    "PodAntiAffinity",
    &[
        f(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Msg(&POD_AFFINITY_TERM),
        )
        .repeated(),
        f(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Msg(&WEIGHTED_POD_AFFINITY_TERM),
        )
        .repeated(),
    ],
);

pub static POD_CERTIFICATE_PROJECTION: Message = Message::new(
    "PodCertificateProjection",
    &[
        f(1, "signerName", Str).omitempty(),
        f(2, "keyType", Str).omitempty(),
        f(3, "maxExpirationSeconds", I32),
        f(4, "credentialBundlePath", Str).omitempty(),
        f(5, "keyPath", Str).omitempty(),
        f(6, "certificateChainPath", Str).omitempty(),
        f(7, "userAnnotations", Str).map(),
    ],
);

pub static POD_CONDITION: Message = Message::new(
    "PodCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastProbeTime", Time),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str).omitempty(),
        f(6, "message", Str).omitempty(),
        f(7, "observedGeneration", I64).omitempty(),
    ],
);

pub static POD_DNS_CONFIG: Message = Message::new(
    "PodDNSConfig",
    &[
        f(1, "nameservers", Str).repeated(),
        f(2, "searches", Str).repeated(),
        f(3, "options", Msg(&POD_DNS_CONFIG_OPTION)).repeated(),
    ],
);

pub static POD_DNS_CONFIG_OPTION: Message = Message::new(
    "PodDNSConfigOption",
    &[f(1, "name", Str).omitempty(), f(2, "value", Str)],
);

pub static POD_EXTENDED_RESOURCE_CLAIM_STATUS: Message = Message::new(
    "PodExtendedResourceClaimStatus",
    &[
        f(1, "requestMappings", Msg(&CONTAINER_EXTENDED_RESOURCE_REQUEST)).repeated(),
        f(2, "resourceClaimName", Str),
    ],
);

pub static POD_IP: Message = Message::new("PodIP", &[f(1, "ip", Str)]);

pub static POD_OS: Message = Message::new("PodOS", &[f(1, "name", Str)]);

pub static POD_READINESS_GATE: Message = Message::new("PodReadinessGate", &[f(1, "conditionType", Str)]);

pub static POD_RESOURCE_CLAIM: Message = Message::new(
    "PodResourceClaim",
    &[
        f(1, "name", Str),
        f(3, "resourceClaimName", Str),
        f(4, "resourceClaimTemplateName", Str),
    ],
);

pub static POD_RESOURCE_CLAIM_STATUS: Message = Message::new(
    "PodResourceClaimStatus",
    &[f(1, "name", Str), f(2, "resourceClaimName", Str)],
);

pub static POD_SCHEDULING_GATE: Message = Message::new("PodSchedulingGate", &[f(1, "name", Str)]);

pub static POD_SCHEDULING_GROUP: Message = Message::new("PodSchedulingGroup", &[f(1, "podGroupName", Str)]);

pub static POD_SECURITY_CONTEXT: Message = Message::new(
    "PodSecurityContext",
    &[
        f(1, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS)),
        f(2, "runAsUser", I64),
        f(3, "runAsNonRoot", Bool),
        f(4, "supplementalGroups", I64).repeated(),
        f(5, "fsGroup", I64),
        f(6, "runAsGroup", I64),
        f(7, "sysctls", Msg(&SYSCTL)).repeated(),
        f(8, "windowsOptions", Msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS)),
        f(9, "fsGroupChangePolicy", Str),
        f(10, "seccompProfile", Msg(&SECCOMP_PROFILE)),
        f(11, "appArmorProfile", Msg(&APP_ARMOR_PROFILE)),
        f(12, "supplementalGroupsPolicy", Str),
        f(13, "seLinuxChangePolicy", Str),
    ],
);

pub static POD_SPEC: Message = Message::new(
    "PodSpec",
    &[
        f(1, "volumes", Msg(&VOLUME)).repeated(),
        f(2, "containers", Msg(&CONTAINER)).repeated(),
        f(3, "restartPolicy", Str).omitempty(),
        f(4, "terminationGracePeriodSeconds", I64),
        f(5, "activeDeadlineSeconds", I64),
        f(6, "dnsPolicy", Str).omitempty(),
        f(7, "nodeSelector", Str).map(),
        f(8, "serviceAccountName", Str).omitempty(),
        f(9, "serviceAccount", Str).omitempty(),
        f(10, "nodeName", Str).omitempty(),
        f(11, "hostNetwork", Bool).omitempty(),
        f(12, "hostPID", Bool).omitempty(),
        f(13, "hostIPC", Bool).omitempty(),
        f(14, "securityContext", Msg(&POD_SECURITY_CONTEXT)),
        f(15, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)).repeated(),
        f(16, "hostname", Str).omitempty(),
        f(17, "subdomain", Str).omitempty(),
        f(18, "affinity", Msg(&AFFINITY)),
        f(19, "schedulerName", Str).omitempty(),
        f(20, "initContainers", Msg(&CONTAINER)).repeated(),
        f(21, "automountServiceAccountToken", Bool),
        f(22, "tolerations", Msg(&TOLERATION)).repeated(),
        f(23, "hostAliases", Msg(&HOST_ALIAS)).repeated(),
        f(24, "priorityClassName", Str).omitempty(),
        f(25, "priority", I32),
        f(26, "dnsConfig", Msg(&POD_DNS_CONFIG)),
        f(27, "shareProcessNamespace", Bool),
        f(28, "readinessGates", Msg(&POD_READINESS_GATE)).repeated(),
        f(29, "runtimeClassName", Str),
        f(30, "enableServiceLinks", Bool),
        f(31, "preemptionPolicy", Str),
        f(32, "overhead", Quantity).map(),
        f(33, "topologySpreadConstraints", Msg(&TOPOLOGY_SPREAD_CONSTRAINT)).repeated(),
        f(34, "ephemeralContainers", Msg(&EPHEMERAL_CONTAINER)).repeated(),
        f(35, "setHostnameAsFQDN", Bool),
        f(36, "os", Msg(&POD_OS)),
        f(37, "hostUsers", Bool),
        f(38, "schedulingGates", Msg(&POD_SCHEDULING_GATE)).repeated(),
        f(39, "resourceClaims", Msg(&POD_RESOURCE_CLAIM)).repeated(),
        f(40, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        f(41, "hostnameOverride", Str),
        f(43, "schedulingGroup", Msg(&POD_SCHEDULING_GROUP)),
    ],
);

pub static POD_STATUS: Message = Message::new(
    "PodStatus",
    &[
        f(1, "phase", Str).omitempty(),
        f(2, "conditions", Msg(&POD_CONDITION)).repeated(),
        f(3, "message", Str).omitempty(),
        f(4, "reason", Str).omitempty(),
        f(5, "hostIP", Str).omitempty(),
        f(6, "podIP", Str).omitempty(),
        f(7, "startTime", Time),
        f(8, "containerStatuses", Msg(&CONTAINER_STATUS)).repeated(),
        f(9, "qosClass", Str).omitempty(),
        f(10, "initContainerStatuses", Msg(&CONTAINER_STATUS)).repeated(),
        f(11, "nominatedNodeName", Str).omitempty(),
        f(12, "podIPs", Msg(&POD_IP)).repeated(),
        f(13, "ephemeralContainerStatuses", Msg(&CONTAINER_STATUS)).repeated(),
        f(14, "resize", Str).omitempty(),
        f(15, "resourceClaimStatuses", Msg(&POD_RESOURCE_CLAIM_STATUS)).repeated(),
        f(16, "hostIPs", Msg(&HOST_IP)).repeated(),
        f(17, "observedGeneration", I64).omitempty(),
        f(
            18,
            "extendedResourceClaimStatus",
            Msg(&POD_EXTENDED_RESOURCE_CLAIM_STATUS),
        ),
        f(19, "allocatedResources", Quantity).map(),
        f(20, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        f(
            21,
            "nodeAllocatableResourceClaimStatuses",
            Msg(&NODE_ALLOCATABLE_RESOURCE_CLAIM_STATUS),
        )
        .repeated(),
    ],
);

pub static POD_TEMPLATE_SPEC: Message = Message::new(
    "PodTemplateSpec",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&POD_SPEC)),
    ],
);

pub static PORT_STATUS: Message = Message::new(
    "PortStatus",
    &[f(1, "port", I32), f(2, "protocol", Str), f(3, "error", Str)],
);

pub static PORTWORX_VOLUME_SOURCE: Message = Message::new(
    "PortworxVolumeSource",
    &[
        f(1, "volumeID", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "readOnly", Bool).omitempty(),
    ],
);

pub static PREFERRED_SCHEDULING_TERM: Message = Message::new(
    "PreferredSchedulingTerm",
    &[f(1, "weight", I32), f(2, "preference", Msg(&NODE_SELECTOR_TERM))],
);

pub static PROBE: Message = Message::new(
    "Probe",
    &[
        inline(1, &PROBE_HANDLER),
        f(2, "initialDelaySeconds", I32).omitempty(),
        f(3, "timeoutSeconds", I32).omitempty(),
        f(4, "periodSeconds", I32).omitempty(),
        f(5, "successThreshold", I32).omitempty(),
        f(6, "failureThreshold", I32).omitempty(),
        f(7, "terminationGracePeriodSeconds", I64),
    ],
);

pub static PROBE_HANDLER: Message = Message::new(
    "ProbeHandler",
    &[
        f(1, "exec", Msg(&EXEC_ACTION)),
        f(2, "httpGet", Msg(&HTTP_GET_ACTION)),
        f(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION)),
        f(4, "grpc", Msg(&GRPC_ACTION)),
    ],
);

pub static PROJECTED_VOLUME_SOURCE: Message = Message::new(
    "ProjectedVolumeSource",
    &[
        f(1, "sources", Msg(&VOLUME_PROJECTION)).repeated(),
        f(2, "defaultMode", I32),
    ],
);

pub static QUOBYTE_VOLUME_SOURCE: Message = Message::new(
    "QuobyteVolumeSource",
    &[
        f(1, "registry", Str),
        f(2, "volume", Str),
        f(3, "readOnly", Bool).omitempty(),
        f(4, "user", Str).omitempty(),
        f(5, "group", Str).omitempty(),
        f(6, "tenant", Str).omitempty(),
    ],
);

pub static RBD_VOLUME_SOURCE: Message = Message::new(
    "RBDVolumeSource",
    &[
        f(1, "monitors", Str).repeated(),
        f(2, "image", Str),
        f(3, "fsType", Str).omitempty(),
        f(4, "pool", Str).omitempty(),
        f(5, "user", Str).omitempty(),
        f(6, "keyring", Str).omitempty(),
        f(7, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(8, "readOnly", Bool).omitempty(),
    ],
);

pub static REPLICATION_CONTROLLER: Message = Message::new(
    "ReplicationController",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&REPLICATION_CONTROLLER_SPEC)),
        f(3, "status", Msg(&REPLICATION_CONTROLLER_STATUS)),
    ],
);

pub static REPLICATION_CONTROLLER_CONDITION: Message = Message::new(
    "ReplicationControllerCondition",
    &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(3, "lastTransitionTime", Time),
        f(4, "reason", Str).omitempty(),
        f(5, "message", Str).omitempty(),
    ],
);

pub static REPLICATION_CONTROLLER_SPEC: Message = Message::new(
    "ReplicationControllerSpec",
    &[
        f(1, "replicas", I32),
        f(2, "selector", Str).map(),
        f(3, "template", Msg(&POD_TEMPLATE_SPEC)),
        f(4, "minReadySeconds", I32).omitempty(),
    ],
);

pub static REPLICATION_CONTROLLER_STATUS: Message = Message::new(
    "ReplicationControllerStatus",
    &[
        f(1, "replicas", I32),
        f(2, "fullyLabeledReplicas", I32).omitempty(),
        f(3, "observedGeneration", I64).omitempty(),
        f(4, "readyReplicas", I32).omitempty(),
        f(5, "availableReplicas", I32).omitempty(),
        f(6, "conditions", Msg(&REPLICATION_CONTROLLER_CONDITION)).repeated(),
    ],
);

pub static RESOURCE_CLAIM: Message =
    Message::new("ResourceClaim", &[f(1, "name", Str), f(2, "request", Str).omitempty()]);

pub static RESOURCE_FIELD_SELECTOR: Message = Message::new(
    "ResourceFieldSelector",
    &[
        f(1, "containerName", Str).omitempty(),
        f(2, "resource", Str),
        f(3, "divisor", Quantity),
    ],
);

pub static RESOURCE_HEALTH: Message = Message::new(
    "ResourceHealth",
    &[
        f(1, "resourceID", Str),
        f(2, "health", Str).omitempty(),
        f(6, "message", Str),
    ],
);

pub static RESOURCE_QUOTA: Message = Message::new(
    "ResourceQuota",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&RESOURCE_QUOTA_SPEC)),
        f(3, "status", Msg(&RESOURCE_QUOTA_STATUS)),
    ],
);

pub static RESOURCE_QUOTA_SPEC: Message = Message::new(
    "ResourceQuotaSpec",
    &[
        f(1, "hard", Quantity).map(),
        f(2, "scopes", Str).repeated(),
        f(3, "scopeSelector", Msg(&SCOPE_SELECTOR)),
    ],
);

pub static RESOURCE_QUOTA_STATUS: Message = Message::new(
    "ResourceQuotaStatus",
    &[f(1, "hard", Quantity).map(), f(2, "used", Quantity).map()],
);

pub static RESOURCE_REQUIREMENTS: Message = Message::new(
    "ResourceRequirements",
    &[
        f(1, "limits", Quantity).map(),
        f(2, "requests", Quantity).map(),
        f(3, "claims", Msg(&RESOURCE_CLAIM)).repeated(),
    ],
);

pub static RESOURCE_STATUS: Message = Message::new(
    "ResourceStatus",
    &[f(1, "name", Str), f(2, "resources", Msg(&RESOURCE_HEALTH)).repeated()],
);

pub static SE_LINUX_OPTIONS: Message = Message::new(
    "SELinuxOptions",
    &[
        f(1, "user", Str).omitempty(),
        f(2, "role", Str).omitempty(),
        f(3, "type", Str).omitempty(),
        f(4, "level", Str).omitempty(),
    ],
);

pub static SCALE_IO_VOLUME_SOURCE: Message = Message::new(
    "ScaleIOVolumeSource",
    &[
        f(1, "gateway", Str),
        f(2, "system", Str),
        f(3, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(4, "sslEnabled", Bool).omitempty(),
        f(5, "protectionDomain", Str).omitempty(),
        f(6, "storagePool", Str).omitempty(),
        f(7, "storageMode", Str).omitempty(),
        f(8, "volumeName", Str).omitempty(),
        f(9, "fsType", Str).omitempty(),
        f(10, "readOnly", Bool).omitempty(),
    ],
);

pub static SCOPE_SELECTOR: Message = Message::new(
    "ScopeSelector",
    &[f(1, "matchExpressions", Msg(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT)).repeated()],
);

pub static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message::new(
    "ScopedResourceSelectorRequirement",
    &[
        f(1, "scopeName", Str),
        f(2, "operator", Str),
        f(3, "values", Str).repeated(),
    ],
);

pub static SECCOMP_PROFILE: Message =
    Message::new("SeccompProfile", &[f(1, "type", Str), f(2, "localhostProfile", Str)]);

pub static SECRET: Message = Message::new(
    "Secret",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "data", Bytes).map(),
        f(3, "type", Str).omitempty(),
        f(4, "stringData", Str).map(),
        f(5, "immutable", Bool),
    ],
);

pub static SECRET_ENV_SOURCE: Message = Message::new(
    "SecretEnvSource",
    &[inline(1, &LOCAL_OBJECT_REFERENCE), f(2, "optional", Bool)],
);

pub static SECRET_KEY_SELECTOR: Message = Message::new(
    "SecretKeySelector",
    &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        f(2, "key", Str),
        f(3, "optional", Bool),
    ],
);

pub static SECRET_PROJECTION: Message = Message::new(
    "SecretProjection",
    &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        f(2, "items", Msg(&KEY_TO_PATH)).repeated(),
        f(4, "optional", Bool),
    ],
);

pub static SECRET_VOLUME_SOURCE: Message = Message::new(
    "SecretVolumeSource",
    &[
        f(1, "secretName", Str).omitempty(),
        f(2, "items", Msg(&KEY_TO_PATH)).repeated(),
        f(3, "defaultMode", I32),
        f(4, "optional", Bool),
    ],
);

pub static SECURITY_CONTEXT: Message = Message::new(
    "SecurityContext",
    &[
        f(1, "capabilities", Msg(&CAPABILITIES)),
        f(2, "privileged", Bool),
        f(3, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS)),
        f(4, "runAsUser", I64),
        f(5, "runAsNonRoot", Bool),
        f(6, "readOnlyRootFilesystem", Bool),
        f(7, "allowPrivilegeEscalation", Bool),
        f(8, "runAsGroup", I64),
        f(9, "procMount", Str),
        f(10, "windowsOptions", Msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS)),
        f(11, "seccompProfile", Msg(&SECCOMP_PROFILE)),
        f(12, "appArmorProfile", Msg(&APP_ARMOR_PROFILE)),
    ],
);

pub static SERVICE: Message = Message::new(
    "Service",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "spec", Msg(&SERVICE_SPEC)),
        f(3, "status", Msg(&SERVICE_STATUS)),
    ],
);

pub static SERVICE_ACCOUNT: Message = Message::new(
    "ServiceAccount",
    &[
        f(1, "metadata", Msg(&super::meta_v1::OBJECT_META)),
        f(2, "secrets", Msg(&OBJECT_REFERENCE)).repeated(),
        f(3, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)).repeated(),
        f(4, "automountServiceAccountToken", Bool),
    ],
);

pub static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message::new(
    "ServiceAccountTokenProjection",
    &[
        f(1, "audience", Str).omitempty(),
        f(2, "expirationSeconds", I64),
        f(3, "path", Str),
    ],
);

pub static SERVICE_PORT: Message = Message::new(
    "ServicePort",
    &[
        f(1, "name", Str).omitempty(),
        f(2, "protocol", Str).omitempty(),
        f(3, "port", I32),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", I32).omitempty(),
        f(6, "appProtocol", Str),
    ],
);

pub static SERVICE_SPEC: Message = Message::new(
    "ServiceSpec",
    &[
        f(1, "ports", Msg(&SERVICE_PORT)).repeated(),
        f(2, "selector", Str).map(),
        f(3, "clusterIP", Str).omitempty(),
        f(4, "type", Str).omitempty(),
        f(5, "externalIPs", Str).repeated(),
        f(7, "sessionAffinity", Str).omitempty(),
        f(8, "loadBalancerIP", Str).omitempty(),
        f(9, "loadBalancerSourceRanges", Str).repeated(),
        f(10, "externalName", Str).omitempty(),
        f(11, "externalTrafficPolicy", Str).omitempty(),
        f(12, "healthCheckNodePort", I32).omitempty(),
        f(13, "publishNotReadyAddresses", Bool).omitempty(),
        f(14, "sessionAffinityConfig", Msg(&SESSION_AFFINITY_CONFIG)),
        f(17, "ipFamilyPolicy", Str),
        f(18, "clusterIPs", Str).repeated(),
        f(19, "ipFamilies", Str).repeated(),
        f(20, "allocateLoadBalancerNodePorts", Bool),
        f(21, "loadBalancerClass", Str),
        f(22, "internalTrafficPolicy", Str),
        f(23, "trafficDistribution", Str),
    ],
);

pub static SERVICE_STATUS: Message = Message::new(
    "ServiceStatus",
    &[
        f(1, "loadBalancer", Msg(&LOAD_BALANCER_STATUS)),
        f(2, "conditions", Msg(&super::meta_v1::CONDITION)).repeated(),
    ],
);

pub static SESSION_AFFINITY_CONFIG: Message =
    Message::new("SessionAffinityConfig", &[f(1, "clientIP", Msg(&CLIENT_IP_CONFIG))]);

pub static SLEEP_ACTION: Message = Message::new("SleepAction", &[f(1, "seconds", I64)]);

pub static STORAGE_OS_VOLUME_SOURCE: Message = Message::new(
    "StorageOSVolumeSource",
    &[
        f(1, "volumeName", Str).omitempty(),
        f(2, "volumeNamespace", Str).omitempty(),
        f(3, "fsType", Str).omitempty(),
        f(4, "readOnly", Bool).omitempty(),
        f(5, "secretRef", Msg(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub static SYSCTL: Message = Message::new("Sysctl", &[f(1, "name", Str), f(2, "value", Str)]);

pub static TCP_SOCKET_ACTION: Message = Message::new(
    "TCPSocketAction",
    &[f(1, "port", IntOrString), f(2, "host", Str).omitempty()],
);

pub static TOLERATION: Message = Message::new(
    "Toleration",
    &[
        f(1, "key", Str).omitempty(),
        f(2, "operator", Str).omitempty(),
        f(3, "value", Str).omitempty(),
        f(4, "effect", Str).omitempty(),
        f(5, "tolerationSeconds", I64),
    ],
);

pub static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message::new(
    "TopologySpreadConstraint",
    &[
        f(1, "maxSkew", I32),
        f(2, "topologyKey", Str),
        f(3, "whenUnsatisfiable", Str),
        f(4, "labelSelector", Msg(&super::meta_v1::LABEL_SELECTOR)),
        f(5, "minDomains", I32),
        f(6, "nodeAffinityPolicy", Str),
        f(7, "nodeTaintsPolicy", Str),
        f(8, "matchLabelKeys", Str).repeated(),
    ],
);

pub static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message::new(
    "TypedLocalObjectReference",
    &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
);

pub static TYPED_OBJECT_REFERENCE: Message = Message::new(
    "TypedObjectReference",
    &[
        f(1, "apiGroup", Str),
        f(2, "kind", Str),
        f(3, "name", Str),
        f(4, "namespace", Str),
    ],
);

pub static VOLUME: Message = Message::new("Volume", &[f(1, "name", Str), inline(2, &VOLUME_SOURCE)]);

pub static VOLUME_DEVICE: Message = Message::new("VolumeDevice", &[f(1, "name", Str), f(2, "devicePath", Str)]);

pub static VOLUME_MOUNT: Message = Message::new(
    "VolumeMount",
    &[
        f(1, "name", Str),
        f(2, "readOnly", Bool).omitempty(),
        f(3, "mountPath", Str),
        f(4, "subPath", Str).omitempty(),
        f(5, "mountPropagation", Str),
        f(6, "subPathExpr", Str).omitempty(),
        f(7, "recursiveReadOnly", Str),
    ],
);

pub static VOLUME_MOUNT_STATUS: Message = Message::new(
    "VolumeMountStatus",
    &[
        f(1, "name", Str),
        f(2, "mountPath", Str),
        f(3, "readOnly", Bool).omitempty(),
        f(4, "recursiveReadOnly", Str),
        f(5, "volumeStatus", Msg(&VOLUME_STATUS)),
    ],
);

pub static VOLUME_PROJECTION: Message = Message::new(
    "VolumeProjection",
    &[
        f(1, "secret", Msg(&SECRET_PROJECTION)),
        f(2, "downwardAPI", Msg(&DOWNWARD_API_PROJECTION)),
        f(3, "configMap", Msg(&CONFIG_MAP_PROJECTION)),
        f(4, "serviceAccountToken", Msg(&SERVICE_ACCOUNT_TOKEN_PROJECTION)),
        f(5, "clusterTrustBundle", Msg(&CLUSTER_TRUST_BUNDLE_PROJECTION)),
        f(6, "podCertificate", Msg(&POD_CERTIFICATE_PROJECTION)),
    ],
);

pub static VOLUME_RESOURCE_REQUIREMENTS: Message = Message::new(
    "VolumeResourceRequirements",
    &[f(1, "limits", Quantity).map(), f(2, "requests", Quantity).map()],
);

pub static VOLUME_SOURCE: Message = Message::new(
    "VolumeSource",
    &[
        f(1, "hostPath", Msg(&HOST_PATH_VOLUME_SOURCE)),
        f(2, "emptyDir", Msg(&EMPTY_DIR_VOLUME_SOURCE)),
        f(3, "gcePersistentDisk", Msg(&GCE_PERSISTENT_DISK_VOLUME_SOURCE)),
        f(4, "awsElasticBlockStore", Msg(&AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE)),
        f(5, "gitRepo", Msg(&GIT_REPO_VOLUME_SOURCE)),
        f(6, "secret", Msg(&SECRET_VOLUME_SOURCE)),
        f(7, "nfs", Msg(&NFS_VOLUME_SOURCE)),
        f(8, "iscsi", Msg(&ISCSI_VOLUME_SOURCE)),
        f(9, "glusterfs", Msg(&GLUSTERFS_VOLUME_SOURCE)),
        f(10, "persistentVolumeClaim", Msg(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE)),
        f(11, "rbd", Msg(&RBD_VOLUME_SOURCE)),
        f(12, "flexVolume", Msg(&FLEX_VOLUME_SOURCE)),
        f(13, "cinder", Msg(&CINDER_VOLUME_SOURCE)),
        f(14, "cephfs", Msg(&CEPH_FS_VOLUME_SOURCE)),
        f(15, "flocker", Msg(&FLOCKER_VOLUME_SOURCE)),
        f(16, "downwardAPI", Msg(&DOWNWARD_API_VOLUME_SOURCE)),
        f(17, "fc", Msg(&FC_VOLUME_SOURCE)),
        f(18, "azureFile", Msg(&AZURE_FILE_VOLUME_SOURCE)),
        f(19, "configMap", Msg(&CONFIG_MAP_VOLUME_SOURCE)),
        f(20, "vsphereVolume", Msg(&VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE)),
        f(21, "quobyte", Msg(&QUOBYTE_VOLUME_SOURCE)),
        f(22, "azureDisk", Msg(&AZURE_DISK_VOLUME_SOURCE)),
        f(23, "photonPersistentDisk", Msg(&PHOTON_PERSISTENT_DISK_VOLUME_SOURCE)),
        f(24, "portworxVolume", Msg(&PORTWORX_VOLUME_SOURCE)),
        f(25, "scaleIO", Msg(&SCALE_IO_VOLUME_SOURCE)),
        f(26, "projected", Msg(&PROJECTED_VOLUME_SOURCE)),
        f(27, "storageos", Msg(&STORAGE_OS_VOLUME_SOURCE)),
        f(28, "csi", Msg(&CSI_VOLUME_SOURCE)),
        f(29, "ephemeral", Msg(&EPHEMERAL_VOLUME_SOURCE)),
        f(30, "image", Msg(&IMAGE_VOLUME_SOURCE)),
    ],
);

pub static VOLUME_STATUS: Message = Message::new("VolumeStatus", &[f(1, "image", Msg(&IMAGE_VOLUME_STATUS))]);

pub static VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE: Message = Message::new(
    "VsphereVirtualDiskVolumeSource",
    &[
        f(1, "volumePath", Str),
        f(2, "fsType", Str).omitempty(),
        f(3, "storagePolicyName", Str).omitempty(),
        f(4, "storagePolicyID", Str).omitempty(),
    ],
);

pub static WEIGHTED_POD_AFFINITY_TERM: Message = Message::new(
    "WeightedPodAffinityTerm",
    &[f(1, "weight", I32), f(2, "podAffinityTerm", Msg(&POD_AFFINITY_TERM))],
);

pub static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message::new(
    "WindowsSecurityContextOptions",
    &[
        f(1, "gmsaCredentialSpecName", Str),
        f(2, "gmsaCredentialSpec", Str),
        f(3, "runAsUserName", Str),
        f(4, "hostProcess", Bool),
    ],
);
