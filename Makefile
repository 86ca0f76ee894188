# The README's two commands: `make demo` (main job on the built-in tiny dataset, CPU)
# and `make test`. Both install what is missing first (tools/install_deps.sh, idempotent).
PYTHON ?= python
export PYTHON

.PHONY: install demo test test-fast lint format

install:
	bash tools/install_deps.sh

demo: install
	$(PYTHON) tools/train_net.py --config-file configs/tiny/ifr_tiny.yaml --num-gpus 1

test: install lint
	$(PYTHON) -m pytest -q tests

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow" tests

# Style (ruff.toml: Black-compatible format, pyflakes, pycodestyle, isort; 100 columns).
lint: install
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

format: install
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .
