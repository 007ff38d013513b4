# `make run`: the bot in a terminal against the sandbox cluster (no Slack, no cluster needed).
# `make test`: the whole suite on real redis-server / prometheus / sandbox; installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint format system-deps sandbox serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/payflow-bot console --sandbox

system-deps:
	./scripts/system-deps.sh

test: $(STAMP) system-deps
	@$(BIN)/python -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/digest.py
	$(BIN)/python bench/switch_latency.py
	$(BIN)/python bench/hung_dependency.py
	$(BIN)/python bench/audit_chain.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

sandbox: $(STAMP)
	$(BIN)/payflow-bot sandbox --port 6443

serve: $(STAMP)
	$(BIN)/payflow-bot serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
