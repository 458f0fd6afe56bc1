"""The endpoints, by resource. Every route under ``/api`` needs a token
(:class:`pipeline.api.auth.Auth`); ``/healthz`` and ``/readyz`` are open, ``/metrics`` is open
while WABOT_METRICS_PUBLIC is true.

Changes are produced to Kafka (:mod:`pipeline.api.outbox`) and answered 202: the bot applies
them when its guard (controls) or its sink (messages) reads them. The API also records what
operators set (``chat_profiles``, ``accounts``, ``manual_messages``) so it can show it back.

:mod:`~pipeline.api.routes.paths` adds every route to the app (its path, method, tag and
answers, in the order the OpenAPI document lists them); the endpoints are in a module per
resource: :mod:`~pipeline.api.routes.health` (``/healthz``, ``/readyz``, ``/metrics``),
:mod:`~pipeline.api.routes.messages` (``/api/messages``), :mod:`~pipeline.api.routes.chats`
(``/api/chats``: lists, messages, pause, resume, profile), :mod:`~pipeline.api.routes.whatsapp`
(``/api/whatsapp``: status, QR), :mod:`~pipeline.api.routes.stats` (``/api/stats``),
:mod:`~pipeline.api.routes.accounts` (``/api/accounts``); :mod:`~pipeline.api.routes.context`
holds what they share (the :class:`~pipeline.api.routes.context.Context`, the path parameters,
the error answers, the checks of a chat id and of a known chat).
"""
