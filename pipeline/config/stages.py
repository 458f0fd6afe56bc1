"""Each stage's config, built from the settings: the stages keep no defaults of their own, so
what a worker does is what ``Settings`` (and its table in the docs) says.

Each function takes :class:`~pipeline.config.settings.Settings` and returns the frozen config
dataclass its agent takes; the field each one reads is the setting of the same meaning.
"""

from __future__ import annotations

from agents.apply_reply import WindowConfig
from agents.guard.config import GuardConfig
from agents.respond import RespondConfig
from pipeline.config.settings import Settings


def guard_config(settings: Settings) -> GuardConfig:
    """The guard's bursts, filters, limits and notices (``agents/guard/``)."""
    return GuardConfig(
        burst_quiet_s=settings.burst_quiet_s,
        ignore_older_than_s=settings.ignore_older_than_s,
        takeover_pause_s=settings.takeover_pause_s,
        allow_list=frozenset(settings.allow_list),
        block_list=frozenset(settings.block_list),
        group_prefix=settings.group_prefix,
        dedupe_window=settings.dedupe_window,
        rate_chat_per_minute=settings.rate_chat_per_minute,
        rate_sender_per_day=settings.rate_sender_per_day,
        daily_token_budget=settings.daily_token_budget,
        loop_max_bot_replies=settings.loop_max_bot_replies,
        loop_quiet_reset_s=settings.loop_quiet_reset_s,
        limit_notice=settings.limit_notice,
        unreadable_notice=settings.unreadable_notice,
        unreadable_notice_enabled=settings.unreadable_notice_enabled,
        max_turn_chars=settings.llm_max_message_chars,
        replay=settings.replay_mode,
    )


def respond_config(settings: Settings) -> RespondConfig:
    """The reply stage's prompt, concurrency and limits (``agents/respond.py``). A chat's
    next turn waits for the previous one at most as long as that one's LLM calls can take
    (every retry and the fallback)."""
    return RespondConfig(
        system_prompt=settings.system_prompt,
        max_in_flight=settings.respond_max_in_flight,
        max_reply_chars=settings.max_reply_chars,
        context_idle_expiry_s=settings.context_idle_expiry_s,
        previous_turn_timeout_s=settings.llm_timeout_s * (settings.llm_retries + 2),
    )


def window_config(settings: Settings) -> WindowConfig:
    """A chat's context window: turns kept, token budget, idle expiry
    (``agents/apply_reply.py``)."""
    return WindowConfig(
        max_entries=settings.context_turns,
        token_budget=settings.context_token_budget,
        idle_expiry_s=settings.context_idle_expiry_s,
    )
