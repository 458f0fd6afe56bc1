"""Puts the gateway into an app: the deliver agent, its sent table, the LID map, the session
task, views."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import agents.deliver
import tables
from pipeline.config.settings import Settings
from pipeline.gateway.service import Gateway
from pipeline.kafka.topics import raw_source
from pipeline.observability.pipeline_metrics import MeteredSender


def install_gateway(app: Any, settings: Settings) -> Gateway:
    """Wire one account's gateway into ``app`` (the gateway app, or a single dev worker)."""
    t = app.topics_
    metrics = app.metrics
    # What the gateway itself produces counts as records out of agent "gateway".
    gateway = Gateway(
        settings, replace(t, **{k: metrics.sending(v, "gateway") for k, v in vars(t).items()})
    )
    metrics.track_gateway(gateway)
    gateway.sent_table = tables.sent_messages_table(app, settings.topic_partitions)
    _install_lid_map(app, settings, gateway)
    _, lanes = agents.deliver.register(
        app,
        source=raw_source(app, settings, settings.topic_outbound),
        sender=MeteredSender(gateway, metrics),
        sent=gateway.sent_table,
        delivery=metrics.sending(t.delivery, "deliver"),
        dlq=metrics.sending(t.dlq, "deliver"),
        max_age_s=settings.send_max_age_s,
    )
    app.rebalance_hooks.append(lanes.revoke_all)
    app.task(gateway.run)

    @app.page("/gateway/status")
    async def status(web: Any, request: Any) -> Any:
        return web.json(gateway.status())

    @app.page("/gateway/qr.png")
    async def qr_png(web: Any, request: Any) -> Any:
        image = gateway.qr_png()
        if image is None:
            body = {"error": f"no QR code to scan: the gateway is {gateway.state}"}
            return web.json(body, status=404)
        return web.bytes(image, content_type="image/png")

    @app.page("/gateway/screenshot.png")
    async def screenshot(web: Any, request: Any) -> Any:
        image = await gateway.screenshot()
        if image is None:
            body = {"error": f"no page open: the gateway is {gateway.state}"}
            return web.json(body, status=404)
        return web.bytes(image, content_type="image/png")

    return gateway


def _install_lid_map(app: Any, settings: Settings, gateway: Gateway) -> None:
    """The ``lid_map`` table, the topic ``<app id>-lid-pairs`` that feeds it and its agent.

    The gateway learns pairs outside stream context, where a table cannot be written; it
    produces each new pair (key: the lid, value: the phone id) and this agent writes it,
    keyed alike, so the table's partition is the topic's.
    """
    table = tables.lid_map_table(app, settings.topic_partitions)
    topic = app.topic(
        f"{app.conf.id}-lid-pairs",
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    app.extra_topics.append(topic)
    gateway.lids = tables.LidMap(table)
    gateway.lid_topic = topic

    @app.agent(topic, name="lid_map")
    async def lid_pairs(stream: Any) -> None:
        async for event in stream.events():
            key, value = event.key, event.value
            if not isinstance(key, bytes) or not isinstance(value, bytes):
                continue
            table[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
