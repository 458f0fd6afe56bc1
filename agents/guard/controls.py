"""The operator's controls (``chat.control``, from the operator API) applied to ``chat_state``:
a chat paused, resumed or given a profile, an account's profile kept under :func:`account_key`."""

from __future__ import annotations

import logging
from typing import Any

from schemas import ChatControl, ChatState
from tables import TypedTable

__all__ = ["account_enabled", "account_key", "apply_control", "chat_state_of"]

# One logger for the whole stage, whichever module of it writes.
log = logging.getLogger("agents.guard")


def chat_state_of(chats: TypedTable[ChatState], chat: str) -> ChatState:
    """The chat's state, or a new one for a chat the bot has never seen."""
    return chats.get_or(chat, ChatState(chat_id=chat))


def apply_control(chats: TypedTable[ChatState], control: ChatControl) -> str:
    """Apply one operator control to ``chats`` (in stream context); return what it did
    (``pause``, ``resume``, ``profile``, ``account_profile``).

    A chat the bot has never seen gets its ChatState here. An account's profile is kept
    in the same table under :func:`account_key` (each partition has its copy: the API
    writes the record to every partition), with the account's system prompt in
    ``persona``; respond uses a chat's persona, else its account's, else the configured
    prompt, and the guard answers only where both chat and account are enabled."""
    if control.action == "account_profile":
        assert control.account_id is not None
        key = account_key(control.account_id)
        current = chats.get_or(key, ChatState(chat_id=control.account_id))
        updated = current.model_copy(update=_profile_update(control))
        chats.put(key, updated)
        log.info(
            "control %s: account %s profile set (system prompt %s, model %s, "
            "chat limit %s, enabled %s) by %s",
            control.control_id,
            control.account_id,
            "set" if updated.persona else "default",
            updated.model or "default",
            "default" if updated.rate_chat_per_minute is None else updated.rate_chat_per_minute,
            updated.enabled,
            control.operator or "-",
        )
        return control.action
    assert control.chat_id is not None
    chat = control.chat_id
    state = chat_state_of(chats, chat)
    if control.action == "pause":
        state = state.model_copy(update={"paused_until": control.until})
        detail = f"paused until {control.until.isoformat() if control.until else '-'}"
    elif control.action == "resume":
        state = state.model_copy(update={"paused_until": None})
        detail = "resumed"
    else:
        state = state.model_copy(update=_profile_update(control))
        detail = (
            f"profile set (persona {'set' if state.persona else 'default'}, "
            f"enabled {state.enabled})"
        )
    chats.put(chat, state)
    log.info("control %s: %s %s by %s", control.control_id, chat, detail, control.operator or "-")
    return control.action


def account_enabled(chats: TypedTable[ChatState], account_id: str) -> bool:
    """False when an operator switched the whole account off."""
    found = chats.get(account_key(account_id))
    return found is None or found.enabled


def account_key(account_id: str) -> str:
    """The ``chat_state`` key of an account's profile (never a chat id: ``|`` is not in one)."""
    return f"account|{account_id}"


def _profile_update(control: ChatControl) -> dict[str, Any]:
    update: dict[str, Any] = {"persona": control.persona or None}
    if control.action == "account_profile":  # the whole profile: None resets to the settings
        update["model"] = control.model or None
        update["rate_chat_per_minute"] = control.rate_chat_per_minute
    if control.enabled is not None:
        update["enabled"] = control.enabled
    return update
