# Every target that runs Python goes through the pinned .venv (Python 3.10).
# TFX 1.16 needs Keras 2: TF_USE_LEGACY_KERAS must be set before Python starts.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 1
export PYTHONUNBUFFERED := 1

VENV := .venv
BIN := $(VENV)/bin

DEMO_DATA := data/digits
DEMO_OUTPUT := runs/demo
# Offline, no pretrained weights can be downloaded: the demo uses random kernels with
# BatchNorm statistics calibrated on its images (see README). Online: --weights imagenet.
# The TFX CLI runs the same without TRANSFER_PIPELINE_CONFIG (pipeline/local_runner.py).
DEMO_WEIGHTS := data/inception_v3_calibrated_notop.h5
PYTEST_ARGS ?=

.PHONY: demo demo-spans test test-fast lock clean venv

venv: $(VENV)/.installed

# The stack is rebuilt from scratch whenever a lock changes; the project itself is
# reinstalled (editable, no dependencies) whenever pyproject.toml changes. Python 3.10
# comes from scripts/find-python310.sh (installed with uv where none is found).
$(VENV)/.stack: requirements.lock requirements-build.lock
	@python310=$$(scripts/find-python310.sh) || exit 1; \
	  echo "Building $(VENV) with $$python310"; \
	  rm -rf $(VENV) && $$python310 -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements-build.lock
	$(BIN)/pip install -q -r requirements.lock
	touch $@

$(VENV)/.installed: $(VENV)/.stack pyproject.toml
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: venv
	$(BIN)/transfer-pipeline demo-data --output $(DEMO_DATA)
	test -f $(DEMO_WEIGHTS) || $(BIN)/transfer-pipeline calibrate-weights --data $(DEMO_DATA) --output $(DEMO_WEIGHTS)
	$(BIN)/transfer-pipeline run --data $(DEMO_DATA) --output $(DEMO_OUTPUT) --weights $(DEMO_WEIGHTS)

# Continuous training (README "Weekly spans"): each call adds one weekly span of the
# digits and runs the pipeline on it (span 3's class balance has drifted).
DEMO_SPANS := data/digit-spans
demo-spans: venv
	$(BIN)/transfer-pipeline demo-data --next-span --output $(DEMO_SPANS)
	test -f $(DEMO_WEIGHTS) || $(BIN)/transfer-pipeline calibrate-weights --data $(DEMO_SPANS)/span-1 --output $(DEMO_WEIGHTS)
	$(BIN)/transfer-pipeline run --data '$(DEMO_SPANS)/span-{SPAN}' --train-spans 2 --output runs/weekly --weights $(DEMO_WEIGHTS)

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

# Not part of `make test`: the lesson-style script vs this pipeline (bench/README.md).
# Quick check: make bench BENCH_ARGS="--images 400 --epochs 10"
BENCH_ARGS ?=
.PHONY: bench
bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Not part of `make test`: weights pretrained here on digits 2-9 vs random ones on 0/1
# (tools/pretrain.py, ~18 min on 2 cores). Quick look: TRANSFER_ARGS="--per-class 5 --pretrain-epochs 1"
TRANSFER_ARGS ?=
.PHONY: transfer-experiment
transfer-experiment: venv
	$(BIN)/python bench/transfer_experiment.py $(TRANSFER_ARGS)

lock:
	@echo "Regenerate requirements.lock from a working .venv:"
	$(BIN)/pip freeze --exclude-editable | sed '1i # Pinned stack for Python 3.10 (pip freeze of a working install). Regenerate with `make lock`.' > requirements.lock

clean:
	rm -rf $(VENV) runs data bench/results kubeflow/build
