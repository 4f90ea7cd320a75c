# Entry points for a fresh machine with Python 3.10 (see README.md). The test targets also
# install Debian's Chromium (tools/install_chromium.sh) for the TensorBoard browser test.
# `make demo` and `make test` set everything up themselves.

SHELL := /bin/bash
VENV ?= .venv
# Python 3.10: from pyenv when it has one, else python3.10 on PATH.
PYTHON310 ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 2>/dev/null | tail -n 1 || true)
ifeq ($(strip $(PYTHON310)),)
PYTHON310 := $(shell command -v python3.10)
endif
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export TF_USE_LEGACY_KERAS := 1
DEMO_DIR ?= demo-output
MOVIELENS ?= ../shared/data/ml-1m

.PHONY: setup demo test test-slow test-all bazel-test lock bench-ingest bench-transfer bench-transfer-quick bench-next-item bench-serving clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/lock.txt setup.py pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (e.g. pyenv install 3.10) or pass PYTHON310=/path/to/python3.10" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install --python $(PY) -r requirements/lock.txt
	$(UV) pip install --python $(PY) --no-deps -e .
	@touch $@

demo: setup
	$(VENV)/bin/peterrec demo --output $(DEMO_DIR)

test: setup
	bash tools/install_chromium.sh
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) bazel-test

test-slow: setup
	$(PY) -m pytest -q -p no:cacheprovider -m slow

test-all: setup
	bash tools/install_chromium.sh
	$(PY) -m pytest -q -p no:cacheprovider -m ''

bazel-test: setup
	bash tools/bazel_test.sh

# Re-resolve the lock from the direct requirements (uv resolves in seconds).
lock: setup
	$(UV) pip compile requirements/base.in -c requirements/known-good.txt --python-version 3.10 -o requirements/lock.txt

bench-ingest: setup
	$(PY) benchmarks/ingest.py --movielens $(MOVIELENS)

# The transfer table (benchmarks/transfer_table.py): the package's fine-tuning defaults, attribute
# tasks on 5 user folds, cold start on 5 seeds. JOBS processes share the runs (one TF thread each);
# then one process measures step times alone and writes the table to TRANSFER_OUT, which is
# outside the repository unless told: publish with TRANSFER_OUT=benchmarks/results/transfer_table.md.
TRANSFER_ARGS ?= --folds 5 --seeds 1
TRANSFER_WORK ?= /tmp/peterrec-transfer
TRANSFER_OUT ?= $(TRANSFER_WORK)/transfer_table.md
JOBS ?= 2
bench-transfer: setup
	$(PY) benchmarks/transfer_table.py --format movielens-1m --source $(MOVIELENS) $(TRANSFER_ARGS) --work $(TRANSFER_WORK) --prepare-only
	@echo "fine-tuning in $(JOBS) processes sharing the plan; follow them with: tail -f $(TRANSFER_WORK)/worker-*.log"
	pids=""; for k in $$(seq 0 $$(($(JOBS) - 1))); do \
		TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 $(PY) benchmarks/transfer_table.py --format movielens-1m \
			--source $(MOVIELENS) $(TRANSFER_ARGS) --work $(TRANSFER_WORK) --no-timing --no-baselines \
			--out $(TRANSFER_WORK)/worker-$$k.md > $(TRANSFER_WORK)/worker-$$k.log 2>&1 & pids="$$pids $$!"; \
	done; status=0; for pid in $$pids; do wait $$pid || status=1; done; \
	test $$status = 0 || { echo "a fine-tuning process failed: see $(TRANSFER_WORK)/worker-*.log" >&2; exit 1; }
	$(PY) benchmarks/transfer_table.py --format movielens-1m --source $(MOVIELENS) $(TRANSFER_ARGS) --work $(TRANSFER_WORK) --out $(TRANSFER_OUT)

bench-transfer-quick: setup
	$(PY) benchmarks/transfer_table.py --format movielens-1m --source $(MOVIELENS) --quick --work $(TRANSFER_WORK)-quick

# Leave-one-out next-item quality against training time (20-minute budget); table in NEXT_ITEM_WORK.
NEXT_ITEM_WORK ?= /tmp/peterrec-next-item
bench-next-item: setup
	$(PY) benchmarks/next_item.py --source $(MOVIELENS) --work $(NEXT_ITEM_WORK)

bench-serving: setup
	$(PY) benchmarks/serving.py

clean:
	rm -rf $(DEMO_DIR) build *.egg-info bazel-*
