# The README's two commands: `make demo` and `make test`. Everything else is a step of those.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,dev,train,mic

.PHONY: setup demo test serve lint clean

$(STAMP): pyproject.toml scripts/system-packages.txt scripts/install-system-packages.sh
	bash scripts/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU build on this machine's disk; an unpinned torch pulls CUDA wheels.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/spoofwatch demo

test: setup
	$(PY) -m pytest -q

serve: setup
	$(VENV)/bin/spoofwatch serve

lint: setup
	$(VENV)/bin/ruff check daemon streaming_models clients tests benchmarks
	$(VENV)/bin/mypy daemon clients

clean:
	rm -rf $(VENV) build *.egg-info
