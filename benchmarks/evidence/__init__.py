"""Evidence as frontiers: every method's quality against its adherence over ω, tuned on tuning seeds and confirmed on
fresh test seeds, with equal-cost variants and paired bootstrap intervals (docs/evidence/protocol.md).

Commands (``python -m benchmarks.evidence``; each prints a tqdm progress bar and caches every finished run, so a
killed command resumes):

* ``tune --testbed T [--shard i/n]``: every setting of every method on the tuning seeds; when every tuning cell is
  done, the choices: ``docs/results/evidence/tuning_T.{json,png,md}``;
* ``test --testbed T --config C [--shard i/n]``: the chosen settings, the fixed points and the equal-cost variants on
  the test seeds at one base configuration;
* ``report --testbed T``: ``docs/results/evidence/confirmatory_T.{json,png,md}`` from the cache (cells, frontiers,
  claims);
* ``all --testbed T --quick``: everything in one process (the CI run);
* ``energy-check``: the known-score energy distance's null and exact-model values;
* ``plan``: the commands of a full run.

Modules: :mod:`.protocol` (grids, configurations, methods, sizes, the selection and equal-cost rules),
:mod:`.records` (costs, estimates, the bootstrap layout), :mod:`.store` (the run cache), :mod:`.engine` (cells),
:mod:`.frontier` (curves, levels, paired comparisons), :mod:`.claims` (the claims and their decision rules),
:mod:`.documents` (the JSON records), :mod:`.run` (the commands' work), :mod:`.report` (PNG and Markdown),
:mod:`.energy` (the energy-distance check). The testbeds are :mod:`benchmarks.testbeds`; the methods and their grids
:mod:`benchmarks.tuning`.
"""
