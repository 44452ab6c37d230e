# edgeface: every target creates/reuses the venv and installs from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EF     := $(VENV)/bin/edgeface
STAMP  := $(VENV)/.edgeface-installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup demo test check bench recipe wheel clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

# The main job on its built-in default: detect, align, embed and verify with the shipped model.
demo: $(STAMP)
	$(PY) -m edgeface.demo

# The test suite CI runs (well inside CI's 90 minutes; full-LFW runs are in `make bench`), one worker
# per core; --dist loadfile keeps each module's fixtures in one worker.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadfile

# Size-regression check of the shipped artifacts against the recorded baseline (CI runs it).
check: $(STAMP)
	$(EF) bench --check benchmarks/baseline.json models/*.tflite

# The full benchmark report (full LFW, latency, expression accuracy): see benchmarks/README.md.
bench: $(STAMP)
	bash benchmarks/run_all.sh

# Rebuild one shipped model from scratch (data -> teacher targets -> runs -> convert -> bench), resumable:
# make recipe NAME=edgeface_face_micro. Without NAME: the list (recipes/README.md says what each costs).
recipe: $(STAMP)
	@if [ -z "$(NAME)" ]; then ls recipes/*.sh | grep -v lib.sh | sed 's#recipes/##; s#\.sh$$##'; \
	elif [ -f recipes/$(NAME).sh ]; then bash recipes/$(NAME).sh; \
	else echo "no recipe $(NAME): make recipe lists them" >&2; exit 2; fi

# The installable package for a device: dist/edgeface-*.whl (install it with its `runtime` extra).
DIST ?= dist
wheel:
	$(PYTHON) -m pip wheel --no-deps --quiet --wheel-dir $(DIST) .

clean-venv:
	rm -rf $(VENV)
