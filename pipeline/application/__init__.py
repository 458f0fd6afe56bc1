"""The Faust application: the app class (``app.py``), the worker process (``worker.py``) and
the wiring of topics, tables, agents and views from the settings (``wiring.py``)."""
