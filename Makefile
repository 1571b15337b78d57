PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# where `make mini-model-v2` trains: cpu (the recipe), or cuda where a GPU is lent
DEVICE ?= cpu

.PHONY: install test lint demo bench mini-model mini-model-v2 clean

$(BIN)/videogen: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/reference 'peft>=0.17,<1'
	touch $@

install: $(BIN)/videogen

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 tests

lint: install
	$(BIN)/ruff check videogen tests bench

demo: install
	$(BIN)/videogen generate "a red circle moving left on a black background" --seed 1 -o outputs/demo.mp4 --overwrite

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/lora.py --out BENCHMARKS.md
	$(BIN)/python bench/preview.py --out BENCHMARKS.md
	$(BIN)/python bench/builtin.py --out BENCHMARKS.md

# Retrain the built-in model (about 4 h on a 2-core CPU: VAE, transformer in two phases, two decoder stages), each
# stage resumable (run it again after a stop); work files and checkpoints go to runs/mini (git-ignored).
mini-model: install
	$(BIN)/python -m videogen.mini.train all --work runs/mini --out videogen/mini/model
	$(BIN)/python -m videogen.mini.evaluate --n 240 --report runs/mini/REPORT.md

# The second-generation built-in model (builtin:mini-v2, an LTX-Video folder: 128x128, 33 frames, two objects,
# image-to-video): the VAE on both cores, then the transformer and the decoder's last phase side by side (one core
# each; the transformer takes both once the decoder is done), the export, then the oracle report; each stage
# resumable (run it again after a stop). DEVICE=cuda trains on a GPU.
mini-model-v2: install
	$(BIN)/python -m videogen.mini.train2 vae --work runs/mini2 --threads 2 --device $(DEVICE)
	$(BIN)/python -m videogen.mini.train2 transformer --work runs/mini2 --threads 1 --threads-later 2 \
	  --device $(DEVICE) & pid=$$!; \
	  $(BIN)/python -m videogen.mini.train2 decoder --work runs/mini2 --device $(DEVICE) && wait $$pid
	$(BIN)/python -m videogen.mini.train2 export --work runs/mini2 --out videogen/mini/model2
	$(BIN)/python -m videogen.mini.evaluate2 --n 240 --report runs/mini2/REPORT.md

clean:
	rm -rf $(VENV) outputs .pytest_cache
