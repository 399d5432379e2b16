"""The pure decision core: the (N, s) grid, trial records, accuracy and throughput models,
budgets, the recommender and the paper's evaluation, study files, early stopping's rule.

Standard library only: importing any module here loads none of torch, ray, optuna, plotly or
pandas, and imports no other autoprumux package (tests/test_imports.py derives both from the
import graph).
"""
