# The README's two commands: `make demo` (main job on the built-in tiny dataset, CPU)
# and `make test`. Both install what is missing first (tools/install_deps.sh, idempotent).
PYTHON ?= python
export PYTHON

.PHONY: install demo test test-fast

install:
	bash tools/install_deps.sh

demo: install
	$(PYTHON) tools/train_net.py --config-file configs/tiny/ifr_tiny.yaml --num-gpus 1

test: install
	$(PYTHON) -m pytest -q tests

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow" tests
