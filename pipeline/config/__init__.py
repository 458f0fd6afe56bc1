"""Configuration: the one settings class, in sections (``settings.py``, every ``WABOT_*``
variable), and each stage's config built from it (``stages.py``; stages keep no defaults of
their own)."""
