"""The Python `kubernetes` client (PyPI) against kube-apiserver: CRUD and a watch.

Run by e2e/tests/python_client.rs with KUBECONFIG pointing at a fresh server. Exits
non-zero (with the assertion) on any difference from upstream's behaviour.
"""
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "default"

# Create, read, update, list with a label selector.
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"app": "py"}), data={"a": "1"})
created = core.create_namespaced_config_map(ns, cm)
assert created.metadata.uid and created.metadata.resource_version, created.metadata
got = core.read_namespaced_config_map("py-cm", ns)
assert got.data == {"a": "1"}, got.data
got.data["a"] = "2"
updated = core.replace_namespaced_config_map("py-cm", ns, got)
assert updated.data["a"] == "2"
assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
listed = core.list_namespaced_config_map(ns, label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["py-cm"], listed.items

# A stale update is a 409 with upstream's message.
got.data["a"] = "3"
try:
    core.replace_namespaced_config_map("py-cm", ns, got)
    raise AssertionError("stale update accepted")
except ApiException as e:
    assert e.status == 409, e
    assert "the object has been modified" in e.body, e.body

# Typed objects with defaults: a Deployment, patched with a strategic merge patch.
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1.27")]),
        ),
    ),
)
d = apps.create_namespaced_deployment(ns, dep)
assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
assert d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
d = apps.patch_namespaced_deployment("py-web", ns, {"spec": {"replicas": 3}})
assert d.spec.replicas == 3 and d.metadata.generation == 2, (d.spec.replicas, d.metadata.generation)

# Not found.
try:
    core.read_namespaced_config_map("nope", ns)
    raise AssertionError("found a missing object")
except ApiException as e:
    assert e.status == 404 and '"reason":"NotFound"' in e.body.replace(" ", ""), e.body

# A watch from the list's resourceVersion sees ADDED, MODIFIED and DELETED.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
seen = []


def run_watch():
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20):
        if ev["object"].metadata.name == "py-w":
            seen.append(ev["type"])
            if ev["type"] == "DELETED":
                w.stop()


t = threading.Thread(target=run_watch)
t.start()
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-w"), data={"x": "1"}))
core.patch_namespaced_config_map("py-w", ns, {"data": {"x": "2"}})
core.delete_namespaced_config_map("py-w", ns)
t.join(30)
assert seen == ["ADDED", "MODIFIED", "DELETED"], seen

core.delete_namespaced_config_map("py-cm", ns)
apps.delete_namespaced_deployment("py-web", ns)
print("python client: ok")
