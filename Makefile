# Two commands on a fresh machine:  make lab  (set up, then JupyterLab on notebooks/)
#                                   make test (set up, then the whole test suite)
# Both create .venv once and reuse it; `make clean` removes it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The tested torch pair, installed before the project so that pip never picks a newer multi-GB build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test notebooks bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[lab,test]'
	touch $@

lab: setup
	$(VENV)/bin/jupyter labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/

test: setup
	$(PY) -m pytest

# Re-execute every notebook in place, top to bottom, so the committed outputs are fresh.
notebooks: setup
	$(PY) tools/run_notebooks.py notebooks/*.ipynb

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV)
