"""The configs the app gives the topics it creates, read back with Kafka's admin API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.conftest import Broker
from tests.conversation import Conversation

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def _configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        )
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


def test_topics_are_created_with_their_retention_and_changelogs_compacted(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conv = Conversation(
        kafka_broker, tmp_path, WABOT_INBOUND_RETENTION_DAYS="45", WABOT_TOPIC_RETENTION_DAYS="3"
    )
    try:
        conv.start_worker()
    finally:
        conv.close()
    changelog = f"{conv.app_id}-windows-changelog"
    topics = [conv.topics[k] for k in ("inbound", "outbound", "llm_calls", "turns", "dlq")]
    configs = asyncio.run(_configs(kafka_broker.bootstrap, [*topics, changelog]))
    assert configs[conv.topics["inbound"]]["retention.ms"] == str(45 * DAY_MS)
    for name in topics[1:]:
        assert configs[name]["retention.ms"] == str(3 * DAY_MS), name
        assert configs[name]["cleanup.policy"] == "delete", name
    assert configs[changelog]["cleanup.policy"] == "compact"
