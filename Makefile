# make setup [setup-ray] | make report [PROFILE=smoke|quick|full] [DEVICE=auto|cpu|cuda] [BACKEND=local|ray] [ADDRESS=…] [JOBS=n] | make test | make lint
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?=
DEVICE ?= auto
BACKEND ?= local
ADDRESS ?=
JOBS ?=
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/hw1/kernel.json

.PHONY: setup setup-ray data pdf-browser report test lint clean-results

setup: $(VENV)/.installed $(KERNEL_SPEC) data pdf-browser

# Reinstalls only when requirements.txt or pyproject.toml change.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

# --sys-prefix keeps the kernel inside this checkout's .venv, so two checkouts never share it.
$(KERNEL_SPEC): $(VENV)/.installed
	$(BIN)/python -m ipykernel install --sys-prefix --name hw1 --display-name "Python 3 (hw1)"

# Optional: Ray, for --backend ray (README, "Running on a Ray cluster").
setup-ray: $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-ray.txt

data: $(VENV)/.installed
	$(BIN)/python -m hw1lib data fetch

# The PDF is printed by a headless Chromium-family browser; install one where we may.
pdf-browser:
	@if $(BIN)/python -c "from hw1lib.report import find_browser; exit(find_browser() is None)"; then \
	  echo "PDF: browser found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "PDF: installing chromium with apt-get …"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "PDF: could not install chromium; the report will be HTML only"; \
	else \
	  echo "PDF: no Chromium-family browser and no root apt-get; the report will be HTML only (install chromium for the PDF)"; \
	fi

report: $(VENV)/.installed $(KERNEL_SPEC)
	$(BIN)/python -m hw1lib report $(if $(PROFILE),--profile $(PROFILE)) --device $(DEVICE) \
	  --backend $(BACKEND) $(if $(ADDRESS),--address $(ADDRESS)) $(if $(JOBS),--jobs $(JOBS))

test: $(VENV)/.installed $(KERNEL_SPEC)
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .

clean-results:
	rm -rf results report/executed
