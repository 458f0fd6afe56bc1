"""``/api/accounts``: the accounts the store knows and their profiles."""

from __future__ import annotations

import logging

from fastapi import Request

from pipeline.api.errors import ApiError
from pipeline.api.models import AccountList, AccountProfile, AccountProfileIn
from pipeline.api.routes.context import (
    AccountPath,
    Context,
    Ctx,
    operator_of,
    send_control,
    valid_id,
)
from pipeline.store.models import AccountRow
from schemas import ChatControl

# One logger for every route, whichever module it is in.
log = logging.getLogger("pipeline.api.routes")

__all__ = ["get_account_profile", "list_accounts", "put_account_profile"]


def _account(account_id: str, row: AccountRow | None) -> AccountProfile:
    if row is None:
        return AccountProfile(
            account_id=account_id,
            system_prompt=None,
            model=None,
            rate_chat_per_minute=None,
            enabled=True,
            updated_at=None,
        )
    return AccountProfile.model_validate(row, from_attributes=True)


async def list_accounts(ctx: Ctx) -> AccountList:
    """Every account the store knows, with its profile (defaults when none was set)."""
    return AccountList(accounts=[_account(a, row) for a, row in await ctx.store.accounts()])


async def get_account_profile(ctx: Ctx, account_id: AccountPath) -> AccountProfile:
    account_id = valid_id(account_id, "account_id")
    await _known_account(ctx, account_id)
    return _account(account_id, await ctx.store.account(account_id))


async def _known_account(ctx: Context, account_id: str) -> None:
    """404 when the store knows no such account (no profile, chat or gateway event)."""
    if not await ctx.store.account_known(account_id):
        raise ApiError(404, "unknown_account", "the store knows no such account", "account_id")


async def put_account_profile(
    body: AccountProfileIn, request: Request, ctx: Ctx, account_id: AccountPath
) -> AccountProfile:
    """Set the profile of an account the store knows (404 ``unknown_account`` otherwise,
    as for GET). It reaches the bot as a chat.control ``account_profile``
    on every partition: ``system_prompt`` (a chat's persona still wins in its chat),
    ``model`` (the LLM model the account's chats are answered with), ``rate_chat_per_minute``
    (the bot's replies and, here, manual messages per chat and minute) and ``enabled``; a
    field left out (null) goes back to the worker's settings."""
    account_id = valid_id(account_id, "account_id")
    await _known_account(ctx, account_id)
    await send_control(
        ctx,
        ChatControl(
            action="account_profile",
            account_id=account_id,
            persona=body.system_prompt or None,
            enabled=body.enabled,
            model=body.model,
            rate_chat_per_minute=body.rate_chat_per_minute,
            operator=operator_of(request),
        ),
    )
    row = await ctx.store.save_account(
        account_id,
        system_prompt=body.system_prompt or None,
        model=body.model,
        rate_chat_per_minute=body.rate_chat_per_minute,
        enabled=body.enabled,
        updated_by=operator_of(request),
    )
    log.info("account %s profile set by %s", account_id, operator_of(request))
    return _account(account_id, row)
