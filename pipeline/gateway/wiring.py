"""Puts the gateway into an app: the deliver agent, its sent table, the session task, views."""

from __future__ import annotations

from typing import Any

import agents.deliver
import tables
from pipeline.gateway.service import Gateway
from pipeline.settings import Settings
from pipeline.topics import raw_source


def install_gateway(app: Any, settings: Settings) -> Gateway:
    """Wire one account's gateway into ``app`` (the gateway app, or a single dev worker)."""
    t = app.topics_
    gateway = Gateway(settings, t)
    gateway.sent_table = tables.sent_messages_table(app, settings.topic_partitions)
    agents.deliver.register(
        app,
        source=raw_source(app, settings, settings.topic_outbound),
        sender=gateway,
        sent=gateway.sent_table,
        delivery=t.delivery,
        dlq=t.dlq,
        max_age_s=settings.send_max_age_s,
    )
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
