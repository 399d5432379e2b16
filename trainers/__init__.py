"""The training engine (torch): multiplexed, prunable BERT models and their training phases.

Its contract with autoprumux is one entry point, ``run_trial(spec) -> metrics``; nothing here
is imported by the decision core.
"""
