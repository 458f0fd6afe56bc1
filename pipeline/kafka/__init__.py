"""Kafka plumbing: the topics and their keys (``topics.py``), creating them with their configs
(``setup.py``), the record codec (``codec.py``) and Faust's transport tuned for the pipeline
(``transport.py``: fetch wait, committed offsets, commits that never pass unfinished records).
The brokers the project runs itself are in :mod:`pipeline.broker`."""
