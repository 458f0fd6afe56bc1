"""Every route of the API added to the app: its path, method, tag and answers, in the order
the OpenAPI document lists them; routes under ``/api`` carry the token check."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Response

from pipeline.api.auth import Auth, bearer_scheme
from pipeline.api.models import (
    AccountList,
    AccountProfile,
    ChatPage,
    ChatProfile,
    ControlAccepted,
    Health,
    MessageAccepted,
    MessagePage,
    Readiness,
    Stats,
    WhatsAppStatus,
)
from pipeline.api.routes.accounts import get_account_profile, list_accounts, put_account_profile
from pipeline.api.routes.chats import (
    chat_messages,
    get_chat_profile,
    list_chats,
    pause_chat,
    put_chat_profile,
    resume_chat,
)
from pipeline.api.routes.context import ERRORS
from pipeline.api.routes.health import healthz, metrics, readyz
from pipeline.api.routes.messages import post_message
from pipeline.api.routes.stats import stats
from pipeline.api.routes.whatsapp import whatsapp_qr, whatsapp_status

__all__ = ["install_routes"]


def install_routes(app: FastAPI, auth: Auth, *, metrics_public: bool) -> None:
    """Add every route to ``app`` itself (not through an included router, so ``app.routes``
    lists them all: the auth test walks it). Routes under ``/api`` carry the token check."""
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, tags=["health"])
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready: see problems"}},
        tags=["health"],
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=Response,
        tags=["health"],
        dependencies=[] if metrics_public else [Depends(bearer_scheme), Depends(auth)],
        responses={} if metrics_public else ERRORS,
    )
    protected = [Depends(bearer_scheme), Depends(auth)]

    def add(path: str, endpoint: Any, method: str, tag: str, **options: Any) -> None:
        app.add_api_route(
            "/api" + path,
            endpoint,
            methods=[method],
            dependencies=protected,
            responses={**ERRORS, **options.pop("responses", {})},
            tags=[tag],
            **options,
        )

    add(
        "/messages",
        post_message,
        "POST",
        "messages",
        status_code=202,
        response_model=MessageAccepted,
    )
    add("/chats", list_chats, "GET", "chats", response_model=ChatPage)
    add("/chats/{chat_id}/messages", chat_messages, "GET", "chats", response_model=MessagePage)
    add(
        "/chats/{chat_id}/pause",
        pause_chat,
        "POST",
        "chats",
        status_code=202,
        response_model=ControlAccepted,
    )
    add(
        "/chats/{chat_id}/resume",
        resume_chat,
        "POST",
        "chats",
        status_code=202,
        response_model=ControlAccepted,
    )
    add("/chats/{chat_id}/profile", get_chat_profile, "GET", "chats", response_model=ChatProfile)
    add("/chats/{chat_id}/profile", put_chat_profile, "PUT", "chats", response_model=ChatProfile)
    add("/whatsapp/status", whatsapp_status, "GET", "whatsapp", response_model=WhatsAppStatus)
    add(
        "/whatsapp/qr",
        whatsapp_qr,
        "GET",
        "whatsapp",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the login QR code"}},
    )
    add("/stats", stats, "GET", "stats", response_model=Stats)
    add("/accounts", list_accounts, "GET", "accounts", response_model=AccountList)
    add(
        "/accounts/{account_id}/profile",
        get_account_profile,
        "GET",
        "accounts",
        response_model=AccountProfile,
    )
    add(
        "/accounts/{account_id}/profile",
        put_account_profile,
        "PUT",
        "accounts",
        response_model=AccountProfile,
    )
