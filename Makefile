# Every target builds or refreshes .venv from pyproject.toml first, so a fresh clone needs only
# python3, make and java.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,convert]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check show_attend_tell configs tests bench

test: $(STAMP) lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m show_attend_tell.demo

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs
