# Two commands do all the setup on a fresh Debian machine with Python 3.11:
#   make demo   creates .venv, installs, runs the lab on its defaults and prints the summary
#   make test   installs what the tests need and runs them
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test lint format bench clean images lab-up lab-down lab-reset images-multiarch-test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $(PYTHON))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "python venv is missing: apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[lab,viz,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tangle lab --out runs/demo

test: $(STAMP)
	scripts/install-test-deps.sh
	@# kubo, the IPFS node of every integration test: built from the Go module proxy once, cached by version
	scripts/build-kubo.sh >/dev/null
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# the qemu (arm) runs are on demand, not skipped: make test-qemu, make images-multiarch-test
	LEARNING_TANGLE_NO_SKIP=1 $(BIN)/pytest -m "not qemu and not multiarch"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/tip_selection.py
	$(BIN)/python benchmarks/lab_throughput.py
	$(BIN)/python benchmarks/ipfs_transport.py
	$(BIN)/python benchmarks/visualizer_render.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# --- container images and the compose lab (docker/, issue 9) ---------------------------------------------------
# make images [PLATFORMS=linux/arm64,linux/arm/v7] [REGISTRY=registry.lab:5000/]: archives in dist/images/<arch>/
images:
	PLATFORMS="$(PLATFORMS)" REGISTRY="$(REGISTRY)" scripts/build-images.sh

# the one-machine lab (docker/lab.py): make lab-up PEERS=5; make lab-down; make lab-reset (also its volumes)
PEERS ?= 3
lab-up: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" python3 docker/lab.py up --peers $(PEERS)
lab-down: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" python3 docker/lab.py down
lab-reset: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" python3 docker/lab.py down --reset

# on demand: the arm64 and armv7 peer images under qemu-user, each running a 3-round lab inside (slow)
images-multiarch-test: $(STAMP)
	scripts/binfmt.sh
	LT_MULTIARCH=1 $(BIN)/pytest -m multiarch tests/containers -v
# --- the cluster automation (issue 11) ---------------------------------------------------------------------------
# make test-qemu: site.yml over SSH on emulated Raspberry Pi OS-like arm64 and armhf hosts (qemu-user; the root
# filesystems take several minutes each to build once, then are cached)
.PHONY: test-qemu
test-qemu: $(STAMP)
	scripts/install-test-deps.sh
	scripts/binfmt.sh
	LEARNING_TANGLE_QEMU=1 $(BIN)/pytest -m qemu tests/emulated
# --- TensorFlow Lite backend (MODEL=tflite, issue 17) -------------------------------------------------------
# `make test` installs the runtime extra so the tflite tests run for real. The .tflite models are committed;
# building them needs TensorFlow, in its own venv cached outside the checkout (scripts/tf-venv.sh, 1.6 GB):
#   make tflite-models         rebuild peer/models/tflite_models/ (and its manifest)
#   make tflite-models-check   rebuild into a temporary folder and fail unless the committed files match
# The tests also run the models on tflite-runtime 2.14 (the arm Pis' runtime), in a venv of scripts/tflite-runtime-venv.sh.
TFLITE_STAMP := $(VENV)/.installed-tflite
.PHONY: tflite-models tflite-models-check bench-tflite

$(TFLITE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[tflite]'
	@touch $@

test: $(TFLITE_STAMP)

tflite-models:
	$$(scripts/tf-venv.sh) scripts/build_tflite_models.py

tflite-models-check:
	$$(scripts/tf-venv.sh) scripts/build_tflite_models.py --check

bench: bench-tflite

bench-tflite: $(TFLITE_STAMP)
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/peer_footprint.py
	$(BIN)/python benchmarks/tflite_memory.py
