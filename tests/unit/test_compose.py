"""Static checks of ``compose/``: the stack must refer to files, settings and ports that exist.

Nothing here runs Docker; the compose file, the Dockerfile and ``prometheus.yml`` are parsed
and cross-checked against the repository and :class:`pipeline.config.settings.Settings`.
"""

from __future__ import annotations

import fnmatch
import glob
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.config.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
WORKER = "worker"
PROMETHEUS = "prometheus"
KAFKA = "kafka"
WORKER_COMMAND = ["faust", "-A", "pipeline", "worker"]
PROMETHEUS_CONFIG_IN_CONTAINER = "/etc/prometheus/prometheus.yml"


# --- helpers -------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict), f"{COMPOSE_FILE.name} is not a mapping"
    assert isinstance(data.get("services"), dict), f"{COMPOSE_FILE.name} has no services"
    return data


def _service(name: str) -> dict[str, Any]:
    services = _compose()["services"]
    assert name in services, f"{COMPOSE_FILE.name} has no service {name!r} (has {list(services)})"
    return services[name] or {}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a dict (compose allows a mapping or a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: p[1] if len(p) == 2 else "" for p in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _build(service: dict[str, Any]) -> tuple[Path, Path] | None:
    """``(context, dockerfile)`` of a service's build, resolved like compose does."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_DIR / build.get("context", ".")).resolve()
    dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
    return context, dockerfile


def _worker_build() -> tuple[Path, Path]:
    build = _build(_service(WORKER))
    assert build is not None, f"service {WORKER!r} must be built from the repo (no build:)"
    return build


def _dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with line continuations joined."""
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    text = re.sub(r"\\\s*\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _copy_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not ``--from=`` stages)."""
    sources = []
    for instruction, args in _dockerfile_instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        words = _exec_form(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"{dockerfile.name}: {instruction} {args!r} has no destination"
        sources.extend(paths[:-1])
    return sources


def _exec_form(args: str) -> list[str]:
    return list(yaml.safe_load(args)) if args.startswith("[") else shlex.split(args)


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _container_ports(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> published host port, from short or long port syntax."""
    ports: dict[int, str] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports[int(entry["target"])] = str(entry.get("published", ""))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        container = parts[-1]
        published = parts[-2] if len(parts) >= 2 else ""
        ports[int(container)] = published
    return ports


def _web_port() -> int:
    env = _environment(_service(WORKER))
    name = f"{ENV_PREFIX}WEB_PORT"
    assert name in env, f"service {WORKER!r} must set {name}"
    return int(env[name])


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(source, target)`` of every volume entry of a service."""
    out = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


# --- the compose file ----------------------------------------------------------------


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in _compose(), "the Compose spec has no 'version:' key; remove it"


def test_expected_services_exist() -> None:
    for name in (KAFKA, WORKER, PROMETHEUS):
        _service(name)


def test_every_service_has_an_image_or_a_buildable_dockerfile() -> None:
    for name, service in _compose()["services"].items():
        service = service or {}
        build = _build(service)
        assert build is not None or service.get("image"), (
            f"service {name!r} has neither image: nor build:"
        )
        if build is None:
            continue
        context, dockerfile = build
        assert context.is_dir(), f"service {name!r}: build context {context} does not exist"
        assert dockerfile.is_file(), (
            f"service {name!r}: Dockerfile {dockerfile} does not exist "
            f"(dockerfile: is relative to the context {context})"
        )


def test_every_bind_mounted_file_exists_and_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set((compose.get("volumes") or {}).keys())
    for name, service in compose["services"].items():
        for source, target in _mounts(service or {}):
            if not source:
                continue  # anonymous volume
            if _is_bind(source):
                path = (COMPOSE_DIR / Path(source).expanduser()).resolve()
                assert path.exists(), (
                    f"service {name!r} mounts {source} at {target}, but {path} does not exist"
                )
            else:
                assert source in declared, (
                    f"service {name!r} uses named volume {source!r}, "
                    f"which is not declared under top-level volumes:"
                )


def test_every_file_copied_by_the_dockerfile_exists_in_the_build_context() -> None:
    context, dockerfile = _worker_build()
    sources = _copy_sources(dockerfile)
    assert sources, f"{dockerfile.name} copies nothing into the image"
    for source in sources:
        matches = glob.glob(str(context / source))
        assert matches, (
            f"{dockerfile.relative_to(REPO)} copies {source!r}, "
            f"but {context / source} does not exist in the build context"
        )


def test_nothing_copied_is_excluded_by_the_dockerignore() -> None:
    context, dockerfile = _worker_build()
    patterns = []
    for ignore in (
        dockerfile.with_name(dockerfile.name + ".dockerignore"),
        context / ".dockerignore",
    ):
        if ignore.is_file():
            lines = ignore.read_text(encoding="utf-8").splitlines()
            patterns += [p.strip() for p in lines if p.strip() and not p.startswith(("#", "!"))]
    for source in _copy_sources(dockerfile):
        path = source.strip("/").removeprefix("./")
        for pattern in patterns:
            pattern = pattern.strip("/").removeprefix("**/")
            assert not (
                fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern)
            ), f"{dockerfile.name} copies {source!r}, but the dockerignore excludes {pattern!r}"


def test_the_dockerfile_copies_everything_pip_install_needs() -> None:
    """``pip install .`` in the image needs every top-level package and the readme."""
    _, dockerfile = _worker_build()
    copied = {s.strip("/").removeprefix("./") for s in _copy_sources(dockerfile)}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml"}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {pattern.split(".")[0].rstrip("*") for pattern in found}
    missing = sorted(needed - copied)
    assert not missing, f"{dockerfile.name} must COPY {missing} for 'pip install .' to work"


def test_every_wabot_variable_is_a_settings_field_with_a_valid_value() -> None:
    """Catches misspelled variables, which pydantic-settings would silently ignore."""
    found: dict[str, dict[str, str]] = {}
    for name, service in _compose()["services"].items():
        for key, value in _environment(service or {}).items():
            if key.startswith(ENV_PREFIX):
                found.setdefault(f"service {name!r}", {})[key] = value
    _, dockerfile = _worker_build()
    for instruction, args in _dockerfile_instructions(dockerfile):
        if instruction == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                if key.startswith(ENV_PREFIX):
                    found.setdefault(dockerfile.name, {})[key] = value
    assert found, f"no {ENV_PREFIX}* variable found in compose/"
    for where, env in found.items():
        values = {}
        for key, value in env.items():
            field = key.removeprefix(ENV_PREFIX).lower()
            assert field in Settings.model_fields, (
                f"{where} sets {key}, but Settings has no field {field!r}; "
                f"known: {sorted(Settings.model_fields)}"
            )
            values[field] = value
        try:
            Settings(_env_file=None, **values)  # type: ignore[call-arg]
        except Exception as exc:  # pydantic.ValidationError
            pytest.fail(f"{where}: invalid {ENV_PREFIX}* value(s): {exc}")


# --- the worker ------------------------------------------------------------------------


def test_worker_command_runs_the_faust_worker() -> None:
    command = _command(_service(WORKER))
    assert command[: len(WORKER_COMMAND)] == WORKER_COMMAND, (
        f"service {WORKER!r} must run {' '.join(WORKER_COMMAND)!r}, runs {command}"
    )
    _, dockerfile = _worker_build()
    cmds = [args for ins, args in _dockerfile_instructions(dockerfile) if ins == "CMD"]
    assert cmds, f"{dockerfile.name} has no CMD"
    assert _exec_form(cmds[-1])[: len(WORKER_COMMAND)] == WORKER_COMMAND, (
        f"{dockerfile.name} CMD must run {' '.join(WORKER_COMMAND)!r}, is {cmds[-1]}"
    )


def test_worker_publishes_its_web_port() -> None:
    port = _web_port()
    ports = _container_ports(_service(WORKER))
    assert port in ports, (
        f"service {WORKER!r} sets {ENV_PREFIX}WEB_PORT={port} but publishes {sorted(ports)}"
    )
    _, dockerfile = _worker_build()
    exposed = {
        int(word.split("/")[0])
        for ins, args in _dockerfile_instructions(dockerfile)
        if ins == "EXPOSE"
        for word in args.split()
    }
    assert port in exposed, f"{dockerfile.name} EXPOSEs {sorted(exposed)}, not {port}"


def test_worker_listens_on_all_interfaces() -> None:
    host = _environment(_service(WORKER)).get(f"{ENV_PREFIX}WEB_HOST")
    assert host == "0.0.0.0", (
        f"service {WORKER!r} must set {ENV_PREFIX}WEB_HOST=0.0.0.0 so Prometheus and "
        f"the host can reach it (is {host!r})"
    )


def test_worker_healthcheck_probes_health_on_its_web_port() -> None:
    service = _service(WORKER)
    test = (service.get("healthcheck") or {}).get("test")
    assert test, f"service {WORKER!r} has no healthcheck"
    text = test if isinstance(test, str) else " ".join(str(t) for t in test)
    assert f":{_web_port()}/health" in text, (
        f"service {WORKER!r} healthcheck must fetch :{_web_port()}/health, is {text!r}"
    )


def test_worker_waits_for_a_healthy_broker_it_can_reach() -> None:
    service = _service(WORKER)
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict) and depends.get(KAFKA, {}).get("condition") == (
        "service_healthy"
    ), f"service {WORKER!r} must depend on {KAFKA!r} with condition: service_healthy"
    assert (_service(KAFKA).get("healthcheck") or {}).get("test"), f"{KAFKA!r} has no healthcheck"

    broker_url = _environment(service).get(f"{ENV_PREFIX}BROKER_URL", "")
    advertised = _environment(_service(KAFKA)).get("KAFKA_ADVERTISED_LISTENERS", "")
    reachable = {urlsplit(listener).netloc for listener in advertised.split(",")}
    for part in broker_url.split(";"):
        netloc = urlsplit(part if "://" in part else f"kafka://{part}").netloc
        assert netloc in reachable, (
            f"{ENV_PREFIX}BROKER_URL names {netloc!r}, but {KAFKA!r} advertises {sorted(reachable)}"
        )


# --- prometheus ------------------------------------------------------------------------


def _prometheus_config() -> dict[str, Any]:
    mounts = dict((t, s) for s, t in _mounts(_service(PROMETHEUS)))
    source = mounts.get(PROMETHEUS_CONFIG_IN_CONTAINER)
    assert source and _is_bind(source), (
        f"service {PROMETHEUS!r} must bind-mount a config at {PROMETHEUS_CONFIG_IN_CONTAINER}"
    )
    config = _load_yaml((COMPOSE_DIR / source).resolve())
    assert isinstance(config, dict), f"{source} is not a mapping"
    return config


def test_prometheus_scrapes_the_worker_metrics() -> None:
    jobs = {job.get("job_name"): job for job in _prometheus_config().get("scrape_configs") or []}
    assert "wabot-worker" in jobs, f"prometheus.yml has no job 'wabot-worker' (has {list(jobs)})"
    job = jobs["wabot-worker"]
    # /metrics is Prometheus' default when metrics_path is left out.
    assert job.get("metrics_path", "/metrics") == "/metrics", "metrics_path must be /metrics"
    targets = [t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []]
    assert targets, "job 'wabot-worker' has no static targets"
    services = _compose()["services"]
    expected = f"{WORKER}:{_web_port()}"
    for target in targets:
        host, _, port = target.rpartition(":")
        assert host in services, f"scrape target {target!r} names no compose service"
        assert target == expected, f"scrape target {target!r} should be {expected!r}"
        assert port == str(_web_port())


def test_every_published_port_listens_on_loopback_only() -> None:
    """The gateway's QR and screenshot, and Kafka, must not face every host interface."""
    for name, service in _compose()["services"].items():
        for port in (service or {}).get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"service {name!r} publishes {port}"
