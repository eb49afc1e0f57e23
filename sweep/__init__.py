"""``python -m sweep``: does DiffIER help on *your* model? A client for one or more ComfyUI servers.

It takes your own API-format workflow, inserts DiffIER Guider and anchor patches (APG, RescaleCFG,
CFGZeroStar, TCFG, ...) as a MODEL → MODEL chain before the sampler's model input, sweeps the CFG weight ω,
prompts and seeds, fans the jobs out over every ``--server`` through ComfyUI's HTTP/WebSocket API
(``/prompt``, ``/ws``, ``/history``, ``/view``, ``/queue``, ``/object_info``), and writes the images, an
image grid (rows ω, columns methods), per-image metrics (``sweep.json``) and a plot of the metrics vs ω.

Modules: ``methods`` (the ``--method`` grammar), ``graph`` (finding the sampler, patching the workflow),
``client`` (a worker's prompts on one server, through ``scripts/comfy_http.py``), ``runner`` (scheduling,
requeueing, the resumable job store), ``metrics`` (metric math, numpy only), ``report`` (grid, JSON, plot), ``cli``
(the command line). A user tool, run from the repository root: it takes the node ids from ``benchmarks/tuning.py``,
the Fréchet distance from ``benchmarks/metrics.py`` and its client from ``scripts/``.
"""
