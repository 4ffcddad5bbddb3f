# waitd: one command each for the demo, the tests, lint, the manual pages and the install.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Where make install puts waitd: a virtual environment of its own in $(LIBDIR),
# waitd and tlogview in $(BINDIR), the manual pages in $(MANDIR)/manN.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/waitd
MANDIR ?= $(PREFIX)/share/man
# The Python the installed waitd runs on: Debian's python3 when it is 3.11 or
# newer and can make a virtual environment (package python3-venv), else $(PY).
# Its path is written into $(LIBDIR), so the service user must be able to run
# it: a pyenv Python under /root (mode 700) runs for root only.
INSTALL_PY ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' \
  2>/dev/null && echo /usr/bin/python3 || echo $(PY))
# What setup.cfg needs to build the package; copied out, so that the build
# leaves no build/ or egg-info behind in this tree.
SOURCES := setup.py setup.cfg pyproject.toml README.md waitd man

.PHONY: demo test lint man bench clean deps install uninstall

# The editable install puts the tree on sys.path with a plain path line
# (setuptools' "compat" mode): its default import hook loads pathlib,
# urllib and ipaddress into every Python of the venv at start, 20 ms of CPU
# for each of the thousand or so Pythons a test run starts.  Where a
# setuptools no longer knows the mode, the default is taken.
$(STAMP): setup.cfg setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat 2>/dev/null \
	  || $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# What the tests use besides Python, as command:Debian package; and Debian's
# python3 with venv, which make install prefers (see INSTALL_PY); the
# ActiveMQ broker the stomp sink's tests start (tests/peers/activemq.py
# runs its jar with java: both are checked); redis-server for run=celery's.
DEBS := mandoc:mandoc inotifywait:inotify-tools man:man-db systemd-analyze:systemd logrotate:logrotate \
  java:default-jre-headless redis-server:redis-server chromium:chromium
ACTIVEMQ_JAR := /usr/share/activemq/bin/activemq.jar

deps:
	@missing=; PATH=$$PATH:/usr/sbin:/sbin; \
	for d in $(DEBS); do command -v $${d%%:*} >/dev/null || missing="$$missing $${d#*:}"; done; \
	/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	test -f $(ACTIVEMQ_JAR) || missing="$$missing activemq"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make: wanted for the tests: apt-get install$$missing"; fi

demo: $(STAMP)
	$(BIN)/waitd --demo

# Four test processes on two cores: most tests wait on a daemon (about a
# third of the wall time is CPU), so two would leave the cores idle.  lint
# first: it takes a few seconds and fails fast.
test: $(STAMP) deps lint
	$(BIN)/python -m pytest -q -n 4 tests

# make lint: style and types; the layers of DESIGN.md "Architecture" (imports
# go down only: .importlinter); no function above radon C (xenon); no dead
# code (vulture, configured in pyproject.toml, with vulture_whitelist.py for
# what it cannot see used); no module over MAX_LINES lines.  The exceptions
# are those of the other branches of issue 20, each removed as its branch
# lands: .importlinter's ignore_imports, the files of XENON_EXCLUDE (each holds
# one function at radon D) and LONG_OK (an exception that no longer applies
# is an error, so that it is removed).
MAX_LINES := 400
XENON_EXCLUDE :=
LONG_OK :=

lint: $(STAMP)
	$(BIN)/ruff check waitd tests bench
	$(BIN)/ruff format --check waitd tests bench
	$(BIN)/mypy waitd
	$(BIN)/lint-imports
	$(BIN)/xenon --max-absolute C $(if $(XENON_EXCLUDE),--exclude '$(XENON_EXCLUDE)') waitd
	$(BIN)/vulture
	@find waitd -name '*.py' | sort | xargs wc -l | awk -v most=$(MAX_LINES) -v ok='$(LONG_OK)' ' \
	  BEGIN { n = split(ok, list, " "); for (i = 1; i <= n; i++) allowed[list[i]] = 1 } \
	  $$2 == "total" { next } \
	  { lines[$$2] = $$1 } \
	  $$1 > most && !($$2 in allowed) { print "make: " $$2 ": " $$1 " lines, more than " most; bad = 1 } \
	  END { for (f in allowed) if (!(f in lines) || lines[f] <= most) { \
	          print "make: " f ": not over " most " lines (any more): take it out of LONG_OK"; bad = 1 } \
	        exit bad }'

man:
	mandoc -Tlint -Wwarning man/waitd.8 man/incoming.5 man/waitd.conf.5 man/tlogview.1

# make install: a fresh virtual environment each time (venv --clear), never
# over a directory that is not one; EXTRAS=regions (or celery, or both:
# EXTRAS=regions,celery) installs setup.cfg's extras with waitd.  With
# DESTDIR it is made under DESTDIR, then the staging path is taken out of its scripts and pyvenv.cfg, and all
# of it is compiled again (-f) naming $(LIBDIR), so that the tree works once
# moved to $(PREFIX).  $(BINDIR)/waitd and tlogview are small scripts run
# by the environment's python -I (isolated: no PYTHONPATH, no user site).
STAGE = $(patsubst %/,%,$(DESTDIR))
define check_venv
test ! -e '$(STAGE)$(LIBDIR)' || test -f '$(STAGE)$(LIBDIR)/pyvenv.cfg' || test -z "$$(ls -A '$(STAGE)$(LIBDIR)')" || \
  { echo "make: $(STAGE)$(LIBDIR) is not a virtual environment made by make install; leaving it alone" >&2; exit 1; }
endef

install:
	@$(check_venv)
	$(INSTALL_PY) -m venv --clear '$(STAGE)$(LIBDIR)'
	src=$$(mktemp -d) && cp -R $(SOURCES) "$$src" && \
	  '$(STAGE)$(LIBDIR)/bin/pip' install -q --no-compile "$$src$(if $(EXTRAS),[$(EXTRAS)])"; status=$$?; rm -rf "$$src"; exit $$status
	$(if $(STAGE),grep -rlIF '$(STAGE)' '$(STAGE)$(LIBDIR)' | xargs -r sed -i 's|$(STAGE)||g')
	'$(STAGE)$(LIBDIR)/bin/python' -m compileall -q $(if $(STAGE),-f) -d '$(LIBDIR)' '$(STAGE)$(LIBDIR)' >/dev/null
	install -d '$(STAGE)$(BINDIR)' '$(STAGE)$(MANDIR)/man1' '$(STAGE)$(MANDIR)/man5' '$(STAGE)$(MANDIR)/man8'
	@for p in waitd:cli.main tlogview:cli.tlogview; do name=$${p%%:*} module=waitd.$${p#*:}; \
	  echo "$(STAGE)$(BINDIR)/$$name: runs $$module from $(LIBDIR)"; \
	  rm -f '$(STAGE)$(BINDIR)/'$$name && \
	  printf '%s\n' '#!$(LIBDIR)/bin/python -I' "# $$name: made by make install; runs $$module from $(LIBDIR)." \
	    'import sys' '' "from $$module import main" '' 'sys.exit(main())' >'$(STAGE)$(BINDIR)/'$$name && \
	  chmod 755 '$(STAGE)$(BINDIR)/'$$name || exit 1; \
	done
	install -m 644 man/tlogview.1 '$(STAGE)$(MANDIR)/man1/'
	install -m 644 man/incoming.5 man/waitd.conf.5 '$(STAGE)$(MANDIR)/man5/'
	install -m 644 man/waitd.8 '$(STAGE)$(MANDIR)/man8/'
	@python=$$(readlink -f '$(STAGE)$(LIBDIR)/bin/python'); dir=$$python; \
	while [ "$$dir" != / ]; do \
	  case $$(stat -c %A "$$dir") in *[xt]) ;; *) echo "make: warning: $$dir is closed to other users:" \
	    "$$python runs for root only (INSTALL_PY= chooses another Python)" >&2; break;; esac; \
	  dir=$$(dirname "$$dir"); \
	done

uninstall:
	@$(check_venv)
	rm -f '$(STAGE)$(BINDIR)/waitd' '$(STAGE)$(BINDIR)/tlogview'
	rm -f '$(STAGE)$(MANDIR)/man1/tlogview.1' '$(STAGE)$(MANDIR)/man5/incoming.5' '$(STAGE)$(MANDIR)/man5/waitd.conf.5' \
	  '$(STAGE)$(MANDIR)/man8/waitd.8'
	rm -rf '$(STAGE)$(LIBDIR)'

bench: $(STAMP) deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
