# The two commands a newcomer needs: `make demo` and `make test`. Both create or reuse
# .venv, install visionkit with its test extra, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Peer libraries that only the benchmarks run get their own environment, layered over
# .venv (torch and visionkit are seen from there), so their pins never touch ours.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp
site_packages = $(shell $(1)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# TrackEval (a test extra) pulls opencv-python, which owns `cv2` as the contrib wheel
	@# does; when it lands last, selective search (cv2.ximgproc) is gone: put contrib back.
	$(BIN)/python -c 'import cv2; cv2.ximgproc' 2>/dev/null || $(BIN)/python -m pip install \
		--quiet --disable-pip-version-check --force-reinstall --no-deps opencv-contrib-python-headless
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/visionkit demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check visionkit tests benchmarks
	$(BIN)/ruff format --check visionkit tests benchmarks

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt benchmarks/requirements-nodeps.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -c 'import pathlib, sysconfig; \
		pathlib.Path(sysconfig.get_paths()["purelib"], "_visionkit_env.pth").write_text( \
		"import site; site.addsitedir(%r)\n" % "$(call site_packages,$(BIN))")'
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt
	@# Ultralytics without its opencv-python, which would take `cv2` from the contrib wheel
	@# that .venv-bench sees from .venv (see benchmarks/requirements-nodeps.txt).
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r benchmarks/requirements-nodeps.txt
	$(BENCH_VENV)/bin/python -c 'import ultralytics, cv2; cv2.ximgproc'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BENCH_VENV)/bin/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache .ruff_cache
