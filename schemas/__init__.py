"""Pydantic models for every record on every topic. Imports nothing of the project."""

from schemas.base import SCHEMA_VERSION, Record, new_trace_id
from schemas.ping import Ping, Pong

__all__ = ["SCHEMA_VERSION", "Ping", "Pong", "Record", "new_trace_id"]
