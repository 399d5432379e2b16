"""Tooling for tests and benchmarks: synthetic full grids and the calibration of the search's
constants on recorded data. Like ``optuna.testing``, it ships with the package so that tests and
benchmarks share one copy, but nothing a search, a command or the engine runs imports it
(``tests/test_imports.py``: no layer may import ``testing``).

- ``synthetic.py``: ``SyntheticFamily``, ``synthetic_results`` -- full grids that follow the
  paper's observations (labelled synthetic wherever they are used);
- ``stop_margins.py``: ``calibrate``, ``count_stops``, ``load_curves`` -- the early-stopping
  margins (``autoprumux.core.early_stop.MARGINS``) from recorded learning curves;
- ``prediction_spread.py``: ``prediction_falls``, ``calibrate_spread`` -- the proposer's
  prediction spread (``autoprumux.loop.proposer.PREDICTION_SPREAD``) from recorded full grids.
"""
