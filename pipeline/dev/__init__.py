"""What exists for development and tests only; no production module imports it (a contract of
``make lint``): the WhatsApp look-alike page (``lookalike/``), the OpenAI-compatible LLM
stand-in (``standin/``), the thread and foreground runners both use (``servers.py``) and
``python -m pipeline.dev``, which runs both and hands their URLs to one worker (``make dev``).
"""
