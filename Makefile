# nava-dub: `make test` installs everything it needs, then runs the tests.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
UV      := $(BIN)/uv
STAMP   := $(VENV)/.installed
SYSPKG  := ffmpeg espeak-ng sox

.PHONY: install test demo lint check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@./scripts/ensure-system-packages.sh $(SYSPKG)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(UV) pip install --python $(BIN)/python --link-mode hardlink -e '.[dev]'
	@touch $(STAMP)

test: install
	PYANNOTE_METRICS_ENABLED=false HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not gpu"

demo: install
	$(BIN)/python -m samples.demo

lint: install
	$(BIN)/ruff check nava_dub tests bench
	$(BIN)/lint-imports

check: install
	$(BIN)/nava-dub check

bench: install
	$(BIN)/python -m bench.step --tiny

clean:
	rm -rf $(VENV) .pytest_cache
