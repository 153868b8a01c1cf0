# The README's two commands: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup data book book-full check-book test test-fast lint reproduce-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test,attacks,cluster]"
	touch $(STAMP)

setup: $(STAMP)

data: $(STAMP)          ## fetch MNIST and Fashion-MNIST into data/ with torchvision if missing (needs the internet)
	$(BIN)/python -m robustode data --fetch MNIST FashionMNIST

book: $(STAMP) data     ## run every notebook on the quick profile and render _build/html
	$(BIN)/python -m robustode book --profile quick

book-full: $(STAMP)     ## render committed full-profile executed notebooks (quick where none)
	$(BIN)/python -m robustode book --profile full --no-run

SHOTS ?= _build/screenshots
check-book: $(STAMP)    ## every page of _build/html in headless Chromium (apt: chromium chromium-driver); screenshots in $(SHOTS)
	$(BIN)/python -m robustode.browser_check _build/html --screenshots $(SHOTS)

test: $(STAMP) lint data  ## unit tests, then every notebook under nbval
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks notebooks/conftest.py

reproduce-full: $(STAMP)
	$(BIN)/python -m robustode reproduce --profile full --device auto

clean:
	rm -rf _build
