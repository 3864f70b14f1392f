"""`make bench`: N GpuPods through apply -> Running -> delete against a real kube-apiserver + etcd
and the Yotta simulator, measured against a "floor" script that does only the unavoidable work.

Run ``python -m bench --help``. Modules:

- ``stats``: pure helpers (percentiles, counter diffs, Prometheus text, /proc parsing).
- ``report``: pure rendering (console summary, the scaling table in markdown).
- ``profiling``: py-spy around a phase, and a reader for its collapsed stacks.
- ``kubeclient``: a small async client for the API server (requests, watch, /metrics).
- ``sampler``: one sample per second of the simulator's counters and of /proc.
- ``floor``: the minimal script (CR create, remote create, status patch).
- ``run``: one whole benchmark run; ``plot``: the PNG.
"""
