# Two user commands: `make demo` and `make test`. Both create .venv from requirements.txt when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/demo
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak-ng libespeak-ng1
# Headless Chromium for the app's browser test (skipped without it).
BROWSER_PACKAGES := chromium chromium-driver
PORT ?= 7860

.PHONY: setup system-deps browser-deps demo app test clean accelerator-wheels

# espeak-ng synthesises the MemFace synthetic speech; installed when missing and we may use apt.
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q libespeak-ng; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	  else echo "note: install $(APT_PACKAGES) (e.g. sudo apt-get install $(APT_PACKAGES)) for MemFace speech"; fi; \
	fi

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# LPIPS v0.1 linear-head weights only (the package itself would pull in torch; it is never imported).
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

browser-deps:
	@if ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	  else echo "note: install $(BROWSER_PACKAGES) for the app's browser test (skipped without them)"; fi; \
	fi

setup: system-deps $(STAMP)

demo: setup
	$(PY) -m talkingmem.main --config=configs/mcnet.py:demo --workdir=$(WORKDIR)

# The browser app on http://127.0.0.1:$(PORT) with the demo's model (`make demo` first).
app: setup
	$(PY) -m talkingmem.main --mode=app --workdir=$(WORKDIR) --port=$(PORT)

test: setup browser-deps
	$(PY) -m pytest -q tests

# Wheels experiments/accelerator_check.py installs on a GPU/TPU image that lacks them (grain, ml_collections,
# ...; ~6 MB per Python version (the H200 image has 3.12), not committed: the device run carries it).
ACCEL_PYTHONS ?= 3.12
accelerator-wheels: setup
	for v in $(ACCEL_PYTHONS); do $(PY) experiments/accelerator_check.py --download_wheels $$v || exit 1; done

clean:
	rm -rf $(VENV) workdirs
