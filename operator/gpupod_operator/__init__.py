"""gpupod-operator: Yotta Labs cloud GPU pods as Kubernetes GpuPod resources."""

__version__ = "0.1.0"
