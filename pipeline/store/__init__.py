"""The conversation store: SQL tables the archive agent fills from the topics.

``models`` (the tables), ``engine`` (URL and async engine), ``schema`` (Alembic migrations),
``rows`` (records to rows), ``upserts`` (idempotent writes), ``writer`` (the archive's
sink), ``wiring`` (the archive in the worker) and ``commands`` (``faust -A pipeline db``).
"""
