"""Corpus cleaning, the first stage of the data pipeline: ``lmstack clean`` (see ``pipeline.py``, docs/cleaning.md)."""
