"""The application layer: a search as an object the CLI and the Python API share.

- ``search_session.py``: ``SearchSession`` (``plan()``: every check before long work;
  ``run()``: Ray, trainer, throughput table, store, driver, executor, report), its
  ``SearchRequest`` and ``SearchPlan``;
- ``sizing.py``: ``size_trials``, the trials at once from the machine's or cluster's size;
- ``summary.py``: ``SearchResult``, the text and JSON document a search answers;
- ``decision_text.py``: a decision as text and as a JSON-ready dict (``predict`` prints it too).

This ``__init__`` imports nothing: ``autoprumux.cli.outputs`` reads ``decision_text`` without
loading the search's adapters.
"""
