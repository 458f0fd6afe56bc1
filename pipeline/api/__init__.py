"""The operator API: FastAPI served by uvicorn as its own process (``faust -A pipeline api``).

It reads the conversation store (``pipeline/store``) and changes the bot only by producing
records: operator controls to ``chat.control`` (applied by the guard) and manual messages to
``wa.outbound`` (sent by the gateway's sink). ``app.py`` builds the app, ``routes/`` has the
endpoints (a module per resource), ``queries.py`` the store's reads and the API's own rows,
``outbox.py`` the producer and the scheduler of held messages, ``tail.py`` the QR and dead
letters read from their topics, ``auth.py`` the tokens and the per-token request limit,
``errors.py`` the JSON error shape, ``command.py`` the CLI command.
"""
