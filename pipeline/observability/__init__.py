"""What the running pipeline tells its operator: log set-up and quiet libraries (``logs.py``),
Faust's own Prometheus metrics at their per-record cost cut (``faust_metrics.py``) and the
pipeline's metrics besides them: turns, LLM calls, sends, dead letters, lag
(``pipeline_metrics.py``)."""
