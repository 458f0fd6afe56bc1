"""A local HTTP server that speaks the OpenAI chat-completions protocol.

The bot, its tests and its benchmarks need an LLM endpoint that is real HTTP (so the production
client code path, connection pooling, timeouts and retries are all exercised) yet free, instant to
start and deterministic. This stand-in is that endpoint, and it is also the zero-setup default when
no LLM is configured.

Replies echo what the server received, so a test can tell from the reply alone which prompt
reached the model::

    echo[3|sys:1a2b3c]: last user message

``3`` is the number of messages and ``1a2b3c`` the first six hex digits of the SHA-1 of the system
prompt (omitted when there is none). A user message ``LONG:<n>`` asks for an ``n``-word reply
instead, which exercises reply splitting.

Failures are scripted as a FIFO queue (``429`` with ``Retry-After``, ``500``, ``hang``, or
``empty``: a 200 whose reply is the empty string) that successive chat-completion requests
consume, set either in :class:`StandinConfig` or at runtime::

    POST /admin/failures  {"failures": [{"kind": "429", "retry_after": 1}, {"kind": "hang"}],
                           "latency_s": 0.2}
    POST /admin/context   {"context_tokens": 300, "provider": "vllm", "status": 413}

A small model's context window is reproduced with ``context_tokens`` (estimated as
:func:`estimate_tokens`): a prompt that does not fit is refused the way ``provider`` refuses it,
with that provider's status and error body (see :data:`PROVIDERS`), so a client is tested against
every shape it can meet in production.
    GET  /admin/stats     request counts, counts by status, last 1000 received ``messages``
    POST /admin/reset     clears the stats and the queue, restores the configured latency/prefix

Run it in the foreground with ``python -m pipeline.dev.standin --port 8089 --latency 0.2``.

The rooms: :mod:`~pipeline.dev.standin.server` the HTTP server and its routes
(:class:`~pipeline.dev.standin.server.LLMStandin`), :mod:`~pipeline.dev.standin.threaded` the
same on a thread of its own for synchronous callers, :mod:`~pipeline.dev.standin.protocol` the
chat-completions wire format (request validation in OpenAI's words, the completion and error
bodies), :mod:`~pipeline.dev.standin.replies` the deterministic echo reply,
:mod:`~pipeline.dev.standin.failures` the scripted failures, :mod:`~pipeline.dev.standin.providers`
each provider's refusal of a prompt over its context window, :mod:`~pipeline.dev.standin.config`
and :mod:`~pipeline.dev.standin.stats` how it starts and what it has received,
:mod:`~pipeline.dev.standin.__main__` the command line.
"""
