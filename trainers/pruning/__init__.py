"""CoFi structured pruning: ``l0.py`` -- ``L0Module`` (hard-concrete gates, the expected
sparsity and its Lagrangian); ``materialize.py`` -- ``materialize`` (a masked model physically
shrunk), ``materialized_architecture``."""
