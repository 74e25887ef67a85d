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

test: install
	$(BIN)/python -m pytest

# Every benchmark script in turn (about half an hour on two cores); each prints its figures, and the missed targets
# are listed at the end.
BENCHMARKS := ingest crash gossip score score_http telemetry sdk
bench: install
	@missed=""; for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || missed="$$missed $$b"; done; \
	if [ -n "$$missed" ]; then echo "targets missed in:$$missed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
