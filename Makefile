# Every target builds or refreshes .venv from pyproject.toml first, so a fresh clone needs only
# python3, make and java.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: the demo and benchmarks need only the package; tests also need the test tools and
# the weight-conversion extra (torch), which would add over a minute to `make demo`.
BASE := $(VENV)/.installed
TESTS := $(VENV)/.installed-tests

.PHONY: install test lint demo rehearsal scst bench mutants clean

install: $(TESTS)

$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(BASE)

$(TESTS): $(BASE)
	$(PY) -m pip install -q -e '.[test,convert]'
	touch $(TESTS)

lint: $(TESTS)
	$(VENV)/bin/ruff check show_attend_tell configs tests bench mutants

# Two workers (one per core): compiling and Python overheads dominate the suite, so it gains
# even on 2 cores; --dist loadfile keeps each file's fixtures in one worker, and files go out
# heaviest first (tests/conftest.py) rather than by their number of tests.
test: $(TESTS) lint
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

demo: $(BASE)
	$(PY) -m show_attend_tell.demo

# The Flickr8k workflow on a Flickr8k-shaped corpus, offline (launch/rehearsal.sh); the weight
# import needs the convert extra, which the test stamp installs.
rehearsal: $(TESTS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(PY) launch/rehearsal.sh

# Self-critical training (CIDEr-D reward) from the `make demo` run, then both on the test split
# (docs/scst.md): a few CPU minutes after make demo.
scst: $(BASE)
	test -d runs/demo/checkpoints || { echo "make scst starts from runs/demo: run make demo first"; exit 1; }
	$(PY) -m show_attend_tell train --config configs/shapes.py:scst --workdir runs/scst \
		--config.train.init_from=runs/demo --config.data.data_dir=data/tfds
	$(PY) -m show_attend_tell evaluate --workdir runs/demo --split test --beam_size 3
	$(PY) -m show_attend_tell evaluate --workdir runs/scst --split test --beam_size 3
	$(PY) -m show_attend_tell compare runs/demo runs/scst --out runs/scst_report

# Mutation testing (docs/testing.md): plant each bug of mutants/mutants.toml in a temporary
# copy and run the tests mapped to it; not part of `make test` (about 3 min; docs/testing.md).
mutants: $(TESTS)
	$(PY) mutants/run.py

bench: $(BASE)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs
