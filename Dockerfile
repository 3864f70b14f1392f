# syntax=docker/dockerfile:1
# The gpupod-operator image:  docker build -t gpupod-operator:0.1.0 .
# Runtime dependencies are exactly the pins of constraints.txt. The image runs as a numeric
# non-root user and writes nothing outside /tmp, so it works with a read-only root filesystem
# (the Helm chart mounts an emptyDir at /tmp). Linted by hack/lint-dockerfile.sh (hadolint).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv in /opt/venv with the pinned dependencies and the operator --------
FROM ${PYTHON_IMAGE} AS build
RUN python -m venv /opt/venv
# The venv's pip first on PATH (and visible to hadolint's pip rules as plain `pip`).
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the pins change.
COPY constraints.txt ./
RUN pip install --no-cache-dir --no-deps -r constraints.txt
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# --no-deps: nothing beyond the pins; `pip check` fails the build if a pin is missing.
RUN pip install --no-cache-dir --no-deps . \
    && pip check

# ---- runtime: the same Python, the virtualenv, nothing else ---------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --no-log-init --uid 65532 --gid 65532 \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 8080: liveness (/healthz) and readiness (/readyz), 9090: Prometheus /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["gpupod-operator"]
CMD ["run", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]
