"""The benchmark harness: each figure a ratio against a baseline of the same run.

`python -m bench` measures the service against a bare aiohttp endpoint and a
minimal reference peer, one server process at a time on loopback, with wrk as
the load generator, and writes `bench-results/results.json` and the table of
`BENCHMARKS.md`. `--smoke` runs every figure briefly, for CI.
"""
