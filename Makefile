# waitd: one command each for the demo, the tests, lint and the manual pages.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint man bench clean deps

$(STAMP): setup.cfg setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

deps:
	@command -v mandoc >/dev/null && command -v inotifywait >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mandoc inotify-tools >/dev/null; \
	  else echo "make: mandoc and inotify-tools are wanted (apt-get install mandoc inotify-tools)"; fi; }

demo: $(STAMP)
	$(BIN)/waitd --demo

test: $(STAMP) deps
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check waitd tests bench
	$(BIN)/ruff format --check waitd tests bench
	$(BIN)/mypy waitd

man:
	mandoc -Tlint -Wwarning man/waitd.8 man/incoming.5 man/tlogview.1

bench: $(STAMP) deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
