"""deploy/k8s: the Kustomize manifests render, pass the Kubernetes schemas offline, and agree with
each other and with the daemon (labels and selectors, ports, probes, drain timing, the HPA's metric).

Rendered with `kubectl kustomize` when kubectl is installed (no cluster needed); checked against
the OpenAPI schemas bundled in the `kubernetes-validate` package when it is installed. Without
kubectl the raw files are read (the kustomization's namespace, labels and images are applied here
in the same way), so the cross-reference checks always run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.config import DaemonConfig, load_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the kubectl installed here


def render() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        out = subprocess.run([kubectl, "kustomize", str(K8S)], check=True, capture_output=True, text=True,
                             timeout=60).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    for generated in kustomization["configMapGenerator"]:
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generated["name"]},
                     "data": {Path(f).name: (K8S / f).read_text() for f in generated["files"]}})
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render()


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def daemon_config() -> DaemonConfig:
    return load_config(K8S / "daemon.toml", environ={})


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])}


def test_every_object_passes_the_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    for doc in docs:
        validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises ValidationError on any fault


def test_the_daemon_config_is_valid_and_points_at_the_other_services(docs: list[dict[str, Any]]) -> None:
    config = daemon_config()
    assert config.model.backend == "triton" and config.model.triton_fallback
    triton = one(docs, "Service", "spoofwatch-triton")
    grpc = next(p["port"] for p in triton["spec"]["ports"] if p["name"] == "grpc")
    assert config.model.triton_endpoints == (f"spoofwatch-triton:{grpc}",)
    results = one(docs, "Service", "spoofwatch-results")
    xsub = next(p["port"] for p in results["spec"]["ports"] if p["name"] == "xsub")
    assert config.zmq.pub_connect == (f"tcp://spoofwatch-results:{xsub}",)
    proxy = one(docs, "Deployment", "spoofwatch-results-proxy")
    args = proxy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--xsub") + 1].endswith(f":{container_ports(proxy)['xsub']}")
    assert args[args.index("--xpub") + 1].endswith(f":{container_ports(proxy)['xpub']}")


def test_every_selector_matches_its_pods(docs: list[dict[str, Any]]) -> None:
    templates = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                 for d in docs if d["kind"] == "Deployment"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        assert deployment["spec"]["selector"]["matchLabels"].items() <= templates[deployment["metadata"]["name"]].items()

    def matched(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in templates.items() if selector.items() <= labels.items()]

    for service in (d for d in docs if d["kind"] == "Service"):
        [name] = matched(service["spec"]["selector"])
        ports = container_ports(one(docs, "Deployment", name))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for doc in (d for d in docs if d["kind"] == kind):
            selector = doc["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert len(matched(selector)) == 1, doc["metadata"]["name"]
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert names == {"spoofwatch-daemon", "spoofwatch-triton"}


def test_daemon_ports_and_probes_are_the_daemons(docs: list[dict[str, Any]]) -> None:
    config = daemon_config()
    deployment = one(docs, "Deployment", "spoofwatch-daemon")
    ports = container_ports(deployment)
    assert ports == {"ingest": int(config.zmq.ingest_endpoint.rsplit(":", 1)[1]),
                     "results": int(config.zmq.pub_endpoint.rsplit(":", 1)[1]), "http": config.webrtc.port}
    assert ports["http"] == DaemonConfig().webrtc.port  # the image's HEALTHCHECK default too
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert config.observability.enabled  # the three paths are served
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"] == ["serve", "--config", mount["mountPath"]]
    config_map = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map["configMap"]["name"] for d in docs)


def test_termination_grace_covers_the_pre_stop_wait_and_the_whole_drain(docs: list[dict[str, Any]]) -> None:
    config = daemon_config()
    spec = one(docs, "Deployment", "spoofwatch-daemon")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    needed = float(command[1]) + config.shutdown.drain_wait_s + config.shutdown.timeout_s
    assert spec["terminationGracePeriodSeconds"] >= needed
    assert config.shutdown.drain_wait_s > 0  # SIGTERM lets calls finish instead of cutting them


def test_hpa_scales_the_daemon_on_a_metric_it_exports(docs: list[dict[str, Any]]) -> None:
    from daemon.metrics import DaemonMetrics

    hpa = one(docs, "HorizontalPodAutoscaler", "spoofwatch-daemon")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "spoofwatch-daemon"}
    [metric] = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = {family.name for family in DaemonMetrics().registry.collect()}
    assert name in exported
    assert float(metric["pods"]["target"]["averageValue"]) < daemon_config().streams.max_streams
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    assert any(rule["name"]["as"] == name and name in rule["seriesQuery"] for rule in rules)


def test_triton_requests_a_gpu_and_builds_its_repository_from_the_daemon_config(docs: list[dict[str, Any]]) -> None:
    spec = one(docs, "Deployment", "spoofwatch-triton")["spec"]["template"]["spec"]
    [triton] = spec["containers"]
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-repository=/models" in triton["args"]
    [init] = spec["initContainers"]
    assert init["command"][:3] == ["python", "-m", "streaming_models.triton_repository"]
    command = init["command"]
    assert command[command.index("--instances") + 1] == "gpu:1"
    from streaming_models.runtime.default_model import DEFAULT_MODEL

    assert command[command.index("--onnx") + 1] == DEFAULT_MODEL  # found as package data in the image
    mount = next(m for m in init["volumeMounts"] if m["name"] == "config")
    assert command[command.index("--daemon-config") + 1] == mount["mountPath"]


def test_the_images_are_the_projects_and_pinned(docs: list[dict[str, Any]]) -> None:
    images = {c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])}
    if shutil.which("kubectl") is None:
        pytest.skip("images are set by kustomize; kubectl is not installed")
    assert all(":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest") for image in images), images
