# `make run`: the bot in a terminal against the sandbox cluster (no Slack, no cluster needed).
# `make test`: the whole suite on real redis-server / prometheus / sandbox; installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SETUP_LOG := $(VENV)/setup.log
LOCK_FLAGS := --python-version 3.11 --python-platform linux --generate-hashes --custom-compile-command "make lock" -q

.PHONY: run test bench lint format system-deps sandbox serve clean lock

# First run only: a bare venv, uv into it (by the system's pip when it can target another
# interpreter, else the venv's own), then uv installs the project with its sandbox and test
# extras, and pip, at the versions of requirements.lock (the image's lock): seconds instead of
# pip's minutes. The installers' output goes to .venv/setup.log, shown only when something fails.
# --compile-bytecode, as pip does in the image: uv leaves compiling to the first import, and where
# PYTHONDONTWRITEBYTECODE is set nothing is kept, so every process would compile its ~1,200
# modules again (about a second of each `serve` start on a 2-core machine).
$(STAMP): pyproject.toml requirements.lock
	@echo "setting up $(VENV) (first run only; log in $(SETUP_LOG))" >&2
	@$(PYTHON) -m venv --without-pip $(VENV)
	@{ { $(PYTHON) -m pip --python $(BIN)/python install --disable-pip-version-check --quiet uv \
	     || { $(BIN)/python -m ensurepip --default-pip && $(BIN)/python -m pip install --quiet uv; }; } \
	   && $(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c requirements.lock \
	        -e '.[sandbox,test]' pip; \
	 } > $(SETUP_LOG) 2>&1 || { cat $(SETUP_LOG) >&2; echo "set-up failed: see above" >&2; exit 1; }
	@touch $(STAMP)

# Regenerate the hashed lock files after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	echo 'setuptools>=70.1' | $(BIN)/uv pip compile - $(LOCK_FLAGS) --no-annotate -o requirements-build.lock

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
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/burst.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/datastores.py
	$(BIN)/python bench/data.py
	$(BIN)/python bench/console_start.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/python -m mypy

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

sandbox: $(STAMP)
	$(BIN)/payflow-bot sandbox --port 6443

serve: $(STAMP)
	$(BIN)/payflow-bot serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
