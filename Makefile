# Two targets a newcomer needs: `make run` (install, then run the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The data directory `make run` uses; `vouchnet init` creates it on the first run.
NODE   ?= .vouchnet-node

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	@test -f $(NODE)/config.toml || $(BIN)/vouchnet init --dir $(NODE)
	$(BIN)/vouchnet run --dir $(NODE)

# The js-libp2p peer of the interop tests (tests/interop): its packages, from the npm registry, when npm is here.
JS_PEER := tests/interop/js
$(JS_PEER)/node_modules/.installed: $(JS_PEER)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(JS_PEER) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the js-libp2p interop tests will be skipped"; fi

test: install $(JS_PEER)/node_modules/.installed
	$(BIN)/python -m pytest

# Every benchmark script in turn (about half an hour on two cores); each prints its figures, and the missed targets
# are listed at the end.
BENCHMARKS := ingest crash gossip score score_http telemetry sdk
bench: install
	@missed=""; for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || missed="$$missed $$b"; done; \
	if [ -n "$$missed" ]; then echo "targets missed in:$$missed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
