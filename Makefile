# datafree: `make demo` (Fashion-MNIST end to end), `make test` (the test suite), `make check-recipes` (the recipe
# regression guard: short fixed-step runs against results/check_recipes.json; CI runs it after the tests).
PY      ?= .venv/bin/python
VENV    := .venv/.installed
RECIPE  ?= runs/fmnist.toml
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test test-fast check-recipes check-install tables teacher distill fmnist-data clean

$(VENV): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare "torch" could pull a multi-GB CUDA build on some machines
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install -q "torch<=2.14.1" "torchvision<=0.29.1"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(VENV)

# Real Fashion-MNIST offline: Debian's package when apt is usable, else torchvision's downloader.
fmnist-data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null || true; fi
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "Fashion-MNIST: Debian files in /usr/share/datasets/fashion-mnist"; \
	else echo "Fashion-MNIST: not installed via apt; torchvision will download it"; fi

teacher: $(VENV) fmnist-data
	$(PY) train_teacher.py --config $(RECIPE) $(if $(wildcard /usr/share/datasets/fashion-mnist),,--data.download true)

distill: $(VENV)
	$(PY) -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		train_dfl.py --config $(RECIPE)

demo: $(VENV) fmnist-data
	$(PY) runs/examples/demo.py --recipe $(RECIPE)

test: $(VENV)
	$(dir $(PY))lint-imports
	$(PY) -m pytest -q tests

# units, checks and messages only (no training loop, no entry point): under two minutes
test-fast: $(VENV)
	$(dir $(PY))lint-imports
	$(PY) -m pytest -q -m "not slow and not e2e" tests

check-recipes: $(VENV) fmnist-data
	$(PY) runs/check_recipes.py

# the wheel in a fresh venv outside the repository: datafree --help, a teacher and a 2-step train from an empty folder
# (PYTHONS="3.10 3.12 3.13" make check-install: other interpreters too)
check-install: $(VENV)
	PATH="$(abspath $(dir $(PY))):$$PATH" bash runs/check_install.sh

# the README's and docs' tables from results/*.json (tests/test_tables.py fails when they differ)
tables: $(VENV)
	$(PY) runs/tables.py

clean:
	rm -rf outputs
