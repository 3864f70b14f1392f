"""The operator's decisions as pure functions: no Kubernetes, no HTTP, no clock of their own.

spec      the GpuPod spec model, the remote create request, the spec hash and the remote name
status    the remote pod mapped to the GpuPod status (phase, endpoints, price, conditions)
decisions (desired, recorded, observed) -> the next action, for reconcile and for delete
"""
