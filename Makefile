# gpupod-operator. The README's two commands come first: `make run` and `make test`.
SHELL := /bin/bash
PY      := .venv/bin/python
VENV_OK := .venv/.installed
# Binaries are built once per machine and cached outside the repository.
export GPUPOD_CACHE ?= $(HOME)/.cache/gpupod-operator
export GPUPOD_K8S_BIN_DIR ?= $(GPUPOD_CACHE)/bin/current

.PHONY: run test lint unit e2e rules-test dev-up dev-down bench soak control-plane helm image image-test node-e2e clean

run: $(VENV_OK) control-plane
	$(PY) -m gpupod_operator.devenv run $(if $(filter 1,$(NODE)),--node,)

# The whole suite, the image and the real node included (as root: missing Debian packages are
# installed; the first image and kubelet builds add about 10 min, cached afterwards).
test: lint unit rules-test e2e image-test node-e2e

lint: $(VENV_OK)
	.venv/bin/ruff check operator tests hack bench
	.venv/bin/ruff format --check operator tests hack bench
	.venv/bin/mypy
	bash hack/lint-dockerfile.sh
	bash hack/lint-shell.sh

unit: $(VENV_OK)
	.venv/bin/pytest -q tests/unit tests/contract

e2e: $(VENV_OK) control-plane helm
	.venv/bin/pytest -q tests/e2e

# The chart's PrometheusRule under `promtool test rules` (Debian's prometheus package provides
# promtool; installed here when missing, so the tests never skip).
rules-test: $(VENV_OK) helm
	@bash hack/ensure-packages.sh promtool:prometheus
	.venv/bin/pytest -q tests/monitoring

# NODE=1 make dev-up: also a local node (containerd, kubelet, kube-scheduler, CNI bridge).
dev-up: $(VENV_OK) control-plane
	$(PY) -m gpupod_operator.devenv up $(if $(filter 1,$(NODE)),--node,)

dev-down: $(VENV_OK)
	$(PY) -m gpupod_operator.devenv down

bench: $(VENV_OK) control-plane helm
	$(PY) -m bench $(if $(N),--n $(N),)

# The survival suite (tests/e2e/test_survival_*.py) at a larger scale and several seeds;
# figures go to bench-results/soak.jsonl. SEEDS, PODS, KILLS, FAULT_PODS override the sizes.
soak: $(VENV_OK) control-plane
	mkdir -p bench-results
	for seed in $${SEEDS:-1 2 3}; do \
	  GPUPOD_SURVIVAL_SEED=$$seed GPUPOD_SURVIVAL_PODS=$${PODS:-200} \
	  GPUPOD_SURVIVAL_KILLS=$${KILLS:-40} GPUPOD_SURVIVAL_FAULT_PODS=$${FAULT_PODS:-100} \
	  GPUPOD_SURVIVAL_REPORT=bench-results/soak.jsonl \
	  .venv/bin/pytest -q -rP --timeout 3600 tests/e2e/test_survival_*.py || exit 1; \
	done

control-plane:
	@bash hack/build-control-plane.sh >/dev/null

helm:
	@bash hack/build-helm.sh >/dev/null

# The Dockerfile's image, built with buildah (no Docker): gpupod-operator:<chart appVersion>.
image:
	@bash hack/build-image.sh

# The built image, run for real (buildah, mmdebstrap and runc from Debian; the first build
# takes minutes, then the base is cached).
IMAGE_PACKAGES := buildah:buildah mmdebstrap:mmdebstrap runc:runc
image-test: $(VENV_OK)
	@bash hack/ensure-packages.sh $(IMAGE_PACKAGES)
	.venv/bin/pytest -q tests/image

# The local node (containerd, kubelet, kube-scheduler, CNI), for real: the image, the chart
# installed by helm, and Prometheus checking the dashboard. Installs the Debian packages it needs.
NODE_PACKAGES := containerd:containerd runc:runc iptables:iptables buildah:buildah \
  mmdebstrap:mmdebstrap /usr/lib/cni/bridge:containernetworking-plugins prometheus:prometheus
node-e2e: $(VENV_OK) helm
	@bash hack/ensure-packages.sh $(NODE_PACKAGES)
	NODE=1 bash hack/build-control-plane.sh >/dev/null
	.venv/bin/pytest -q tests/node

$(VENV_OK): pyproject.toml constraints.txt
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf .venv .dev bench-results .mypy_cache .ruff_cache .pytest_cache
