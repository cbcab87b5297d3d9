# One command each: `make demo` sets up a virtual environment and runs the demo on the bundled
# flame photos; `make test` sets it up and runs lint + tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Debian packages for the LabelImg GUI test (virtual X server, input driver, Qt xcb libraries)
APT_PACKAGES := xvfb xdotool libxcb-xinerama0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libgl1

.PHONY: demo test test-fast lint setup system-deps clean
DEMO_DIR ?= tsoda_demo

# Installs the GUI test's packages when missing and apt-get can run; otherwise that test skips.
system-deps:
	@if command -v Xvfb >/dev/null && command -v xdotool >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else echo "note: Xvfb/xdotool missing and apt-get unavailable: the LabelImg GUI test will skip"; fi

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The demo needs labelling, training and LabelImg only (not the test tools or PyTorch).
$(VENV)/.demo: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,review]'
	touch $@

demo: $(VENV)/.demo
	$(PY) -m tsoda demo --work_dir $(DEMO_DIR)

setup: $(VENV)/.installed system-deps

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

# Everything but the tests marked slow (real trainings, conversions, the GUI): for quick
# checks while working; CI runs `make test`.
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
