"""The ``fixpoint`` command: convergence benchmarks (``fixpoint bench``) and performance scripts
(``fixpoint perf``) over the tabular solvers. ``python -m fixpoint_rl.benchmarks`` is equivalent."""
