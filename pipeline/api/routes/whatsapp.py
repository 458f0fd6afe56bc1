"""``/api/whatsapp``: each gateway's latest state, and the login QR while one waits for a scan."""

from __future__ import annotations

from fastapi import Response

from pipeline.api.errors import ApiError
from pipeline.api.models import GatewayStatus, WhatsAppStatus
from pipeline.api.routes.context import Ctx
from pipeline.gateway.qr import png_qr

__all__ = ["whatsapp_qr", "whatsapp_status"]


async def whatsapp_status(ctx: Ctx) -> WhatsAppStatus:
    """Each gateway's latest state from the store, newest first."""
    rows = await ctx.store.gateway_states()
    gateways = [
        GatewayStatus(
            gateway=row.gateway,
            account_id=row.account_id,
            state=row.state,
            reason=row.reason,
            at=row.at,
            qr_available=row.state == "qr" and row.gateway in ctx.tail.qr,
        )
        for row in rows
    ]
    return WhatsAppStatus(state=gateways[0].state if gateways else None, gateways=gateways)


async def whatsapp_qr(ctx: Ctx) -> Response:
    """The login QR as a PNG while a gateway waits for a scan (its latest state is ``qr``);
    404 ``no_qr`` otherwise. Whoever scans it takes the WhatsApp session over."""
    for row in await ctx.store.gateway_states():
        found = ctx.tail.qr.get(row.gateway)
        if row.state == "qr" and found is not None:
            return Response(
                png_qr(found[0]), media_type="image/png", headers={"Cache-Control": "no-store"}
            )
    raise ApiError(404, "no_qr", "no gateway is waiting for a QR scan")
