"""exec through the apiserver with the Python client's WebSocket streams
(v4.channel.k8s.io): stdout, stderr, and the exit code from the error channel."""

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config()
v1 = client.CoreV1Api()

out = stream(
    v1.connect_get_namespaced_pod_exec,
    "p",
    "default",
    command=["echo", "from", "python"],
    container="a",
    stderr=True,
    stdin=False,
    stdout=True,
    tty=False,
)
assert out == "from python\n", repr(out)

resp = stream(
    v1.connect_get_namespaced_pod_exec,
    "p",
    "default",
    command=["exit", "7"],
    container="a",
    stderr=True,
    stdin=False,
    stdout=True,
    tty=False,
    _preload_content=False,
)
resp.run_forever(timeout=20)
assert resp.returncode == 7, resp.returncode
print("python exec: ok")
