"""kopf wiring and the operator's I/O: handlers, the bulk status poller, Kubernetes access,
Events and metrics. Decisions live in `gpupod_operator.domain`; this package only performs them."""
