# Entry points; every target sets up .venv first (a no-op once it is ready).
PY := .venv/bin/python

.PHONY: setup test test-fast demo compare data clean

setup:
	bash tools/setup_env.sh

# The whole suite, end-to-end tests included (what CI runs).
test: setup
	$(PY) -m pytest tests

# Unit tests only (about a minute).
test-fast: setup
	$(PY) -m pytest tests -m "not slow"

# The embedded default: prepare emoji faces, train on CPU, evaluate, draw pictures.
demo: setup
	bash tools/demo.sh

# VAE, IntroVAE, Soft-IntroVAE and MMagic's DCGAN of the same width, the Fashion-MNIST recipes
# trained for the same number of iterations, 2 seeds each, on CPU (hours on 2 cores): table,
# JSON and samples picture in work_dirs/compare_vae_fashionmnist32. Other configs, a time
# budget: make compare COMPARE_ARGS="configs/introvae_emoji64.py configs/dcgan_emoji64.py --seconds 600"
compare: setup
	$(PY) tools/compare.py $(COMPARE_ARGS)

data: setup
	$(PY) tools/prepare_data.py emoji
	$(PY) tools/prepare_data.py fashion_mnist

clean:
	rm -rf work_dirs outputs .pytest_cache
