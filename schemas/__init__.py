"""Pydantic models for every record on every topic. Imports nothing of the project."""

from schemas.analytics import AnalyticsEvent
from schemas.base import SCHEMA_VERSION, Record, new_trace_id
from schemas.chat_ids import (
    InvalidChatIdError,
    canonical_chat_id,
    is_group,
    is_lid,
    is_newsletter,
    is_status_broadcast,
)
from schemas.chat_state import ChatState
from schemas.control import ChatControl, ControlAction
from schemas.dead_letter import DeadLetter
from schemas.decision import DECISION_REASONS, DecisionReason, GuardDecision
from schemas.delivery import DeliveryReceipt, DeliveryStatus
from schemas.gateway_event import GatewayEvent, GatewayEventKind, GatewayState
from schemas.inbound import InboundEvent, InboundMessage, MediaInfo, MessageType
from schemas.llm import LLMCall, LLMCallStatus
from schemas.llm_result import LLMResult
from schemas.outbound import OutboundKind, OutboundMessage
from schemas.ping import Ping, Pong
from schemas.turn import Turn

#: Every record that travels on a topic or sits in a table, by the stem of its JSON Schema file.
ALL_MODELS: dict[str, type[Record]] = {
    "ping": Ping,
    "pong": Pong,
    "inbound_message": InboundMessage,
    "turn": Turn,
    "outbound_message": OutboundMessage,
    "delivery_receipt": DeliveryReceipt,
    "gateway_event": GatewayEvent,
    "llm_call": LLMCall,
    "llm_result": LLMResult,
    "dead_letter": DeadLetter,
    "guard_decision": GuardDecision,
    "chat_state": ChatState,
    "analytics_event": AnalyticsEvent,
    "chat_control": ChatControl,
}

__all__ = [
    "ALL_MODELS",
    "DECISION_REASONS",
    "SCHEMA_VERSION",
    "AnalyticsEvent",
    "ChatControl",
    "ChatState",
    "ControlAction",
    "DeadLetter",
    "DecisionReason",
    "DeliveryReceipt",
    "DeliveryStatus",
    "GatewayEvent",
    "GatewayEventKind",
    "GatewayState",
    "GuardDecision",
    "InboundEvent",
    "InboundMessage",
    "InvalidChatIdError",
    "LLMCall",
    "LLMCallStatus",
    "LLMResult",
    "MediaInfo",
    "MessageType",
    "OutboundKind",
    "OutboundMessage",
    "Ping",
    "Pong",
    "Record",
    "Turn",
    "canonical_chat_id",
    "is_group",
    "is_lid",
    "is_newsletter",
    "is_status_broadcast",
    "new_trace_id",
]
