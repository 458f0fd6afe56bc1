"""The LLM: the OpenAI-compatible completion client with its retries, fallbacks and prompt
limits (``client.py``), and the worker's handle on it that agents are wired with
(``proxy.py``). The one token estimate is :func:`tables.windows.estimate_tokens`."""
