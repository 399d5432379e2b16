"""The search: the driver's loop (propose, train, record), the proposer and its cost model,
the Optuna store that is its source of truth, the local and Ray executors, and where a
trial's measurements come from (real training or a replayed grid)."""
