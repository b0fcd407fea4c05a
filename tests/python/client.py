"""The official Python client (PyPI `kubernetes`) against `kube server`:
create, read, list with selectors, watch with a timeout, patch, replace with a
stale resourceVersion, delete, and the errors it raises. Exits non-zero (with a
traceback) on the first surprise. KUBECONFIG names the server's kubeconfig."""

import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "python-e2e"

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
assert core.read_namespace(ns).status.phase == "Active"

listed = core.list_namespaced_config_map(ns)
start = listed.metadata.resource_version

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "demo"}), data={"color": "blue"})
created = core.create_namespaced_config_map(ns, cm)
assert created.metadata.uid and created.data == {"color": "blue"}

# A patch with a dict is a strategic merge patch.
patched = core.patch_namespaced_config_map("settings", ns, {"data": {"size": "large"}})
assert patched.data == {"color": "blue", "size": "large"}, patched.data

selected = core.list_namespaced_config_map(ns, label_selector="app=demo")
assert [c.metadata.name for c in selected.items] == ["settings"]
assert core.list_namespaced_config_map(ns, label_selector="app=other").items == []

# Replacing with a stale resourceVersion is a 409 Conflict.
stale = created
stale.data = {"color": "red"}
try:
    core.replace_namespaced_config_map("settings", ns, stale)
    raise AssertionError("stale replace succeeded")
except ApiException as e:
    assert e.status == 409 and "Conflict" in e.body, (e.status, e.body)

core.delete_namespaced_config_map("settings", ns, propagation_policy="Background", grace_period_seconds=0)

# The watch replays ADDED, MODIFIED, DELETED after the list's resourceVersion and
# ends by itself at timeout_seconds.
events = []
for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=2):
    events.append((event["type"], event["object"].metadata.name))
assert events == [("ADDED", "settings"), ("MODIFIED", "settings"), ("DELETED", "settings")], events

try:
    core.read_namespaced_config_map("settings", ns)
    raise AssertionError("deleted config map still readable")
except ApiException as e:
    assert e.status == 404, e.status
    assert e.body == '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \\"settings\\" not found","reason":"NotFound","details":{"name":"settings","kind":"configmaps"},"code":404}\n', e.body

deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="busybox")]),
        ),
    ),
)
made = apps.create_namespaced_deployment(ns, deployment)
assert made.spec.replicas == 1 and made.spec.strategy.type == "RollingUpdate"
scaled = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
assert scaled.spec.replicas == 3
assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3

core.delete_namespace(ns)
print("python client: all checks passed")
sys.exit(0)
