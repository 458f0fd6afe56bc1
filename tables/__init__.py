"""Every changelog-backed table, built on the app it is given (tables never import pipeline)."""

from tables.chat_state import chat_state_table
from tables.global_counts import GlobalCounts
from tables.guard_state import GuardState, PendingBurst, guard_state_table
from tables.lid_map import LidMap, lid_map_table
from tables.ping_counts import ping_counts
from tables.rate_counters import Counter, rate_counters_table
from tables.sender_replies import count_reply, replies_to, sender_replies_table
from tables.sent_messages import remember_sent, sent_as, sent_messages_table
from tables.token_usage import token_usage_table, usage_key, used_on
from tables.values import TypedTable
from tables.windows import ConversationWindow, WindowEntry, estimate_tokens, windows_table

__all__ = [
    "ConversationWindow",
    "Counter",
    "GlobalCounts",
    "GuardState",
    "LidMap",
    "PendingBurst",
    "TypedTable",
    "WindowEntry",
    "chat_state_table",
    "count_reply",
    "estimate_tokens",
    "guard_state_table",
    "lid_map_table",
    "ping_counts",
    "rate_counters_table",
    "remember_sent",
    "replies_to",
    "sender_replies_table",
    "sent_as",
    "sent_messages_table",
    "token_usage_table",
    "usage_key",
    "used_on",
    "windows_table",
]
