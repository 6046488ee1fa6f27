"""scripts/bench_pipeline.py's work, one module per job; each imports only those above it.

- ``media``: the media sets, generated once into a cache, and the page cache warmed before timing.
- ``recipe``: our pipelines as conf/data configures them, pointed at a media set.
- ``floors``: the exact decode-floor decoders, which of them work here, exactness checks.
- ``baselines``: mmaction2's own pipelines, run in their environment as a subprocess.
- ``measure``: timing our pipelines against both, stage by stage, and DataLoader throughput.
- ``results``: one run's measurements as the dict that --json writes, with medians and ratios.
- ``report``: that dict as markdown tables (docs/benchmarks.md) and as a table on stdout.

Every library must run at one thread: whoever imports this package sets OMP_NUM_THREADS,
MKL_NUM_THREADS and OPENBLAS_NUM_THREADS to 1 first, as scripts/bench_pipeline.py does.
"""
