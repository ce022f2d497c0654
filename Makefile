# Backfill Controller: developer and CI entry points. `make help` lists the targets.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/requirements.stamp
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
CHROMIUM  ?= /usr/bin/chromium

.PHONY: help venv dist lint compose-config unit integration-sqlite integration-postgres check-postgres check-chromium check-redis test test-stock test-next venv-next smoke-next test-stock-next demo up bench clean

# $(call debian,COMMAND,PACKAGE): COMMAND exists, else install PACKAGE (as root), else say how.
define debian
	@if command -v $(1) >/dev/null 2>&1; then \
		echo "$(2): $$(command -v $(1))"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "$(2) missing: installing it (apt-get install $(2))"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(2); \
	else \
		echo "$(1) missing. Install it with:  sudo apt-get install $(2)"; exit 1; \
	fi
endef

help:
	@echo "make venv                  create/update .venv from requirements-dev.txt + constraints.txt"
	@echo "make dist                  build the package's wheel and sdist into dist/ and check what they hold"
	@echo "make lint                  ruff check, ruff format --check, mypy include"
	@echo "make compose-config        validate docker-compose.yaml with Debian's docker-compose (no engine)"
	@echo "make unit                  unit tests (no Airflow started)"
	@echo "make integration-sqlite    integration tests against a local Airflow on SQLite"
	@echo "make integration-postgres  integration tests against a local Airflow on PostgreSQL"
	@echo "make test-stock            the wheel on a stock Airflow in .venv-stock, end to end (tests/stock)"
	@echo "make test                  all of the above (what CI runs)"
	@echo "make test-next             unit tests, an end-to-end smoke and the stock test on the next Airflow (.venv-next)"
	@echo "make test-stock-next       only the stock test, on the next Airflow (.venv-next)"
	@echo "make up                    local Airflow with the repo DAGs at http://localhost:PORT (Ctrl-C stops)"
	@echo "make demo | bench          run scripts/demo.py | scripts/bench.py"
	@echo "make bench-next            the same bench on the next Airflow (.venv-next)"
	@echo "make clean                 remove caches and local Airflow homes (keeps .venv)"

# Re-installs only when a requirements file or pyproject.toml changes; pip skips what is installed.
# The package itself (include/backfill_controller) is installed editable: its `backfill` command,
# plugin entry point and provider entry point are those a deployment gets from the wheel.
venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The distribution (pyproject.toml): wheel and sdist, built with .venv's pinned build and setuptools,
# then checked: every file of include/backfill_controller is in both, the entry points are declared.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m scripts.check_dist dist

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy include

compose-config:
	$(call debian,docker-compose,docker-compose)
	AIRFLOW_JWT_SECRET=x AIRFLOW_FERNET_KEY=x AIRFLOW_ADMIN_PASSWORD=x \
		docker-compose -f docker-compose.yaml config -q && echo "docker-compose.yaml: valid"
	@# Each secret is required: without it (and with no .env), config fails and names it.
	@empty=$$(mktemp) && trap 'rm -f "$$empty"' EXIT && \
	for var in AIRFLOW_JWT_SECRET AIRFLOW_FERNET_KEY AIRFLOW_ADMIN_PASSWORD; do \
		if out=$$(env AIRFLOW_JWT_SECRET=x AIRFLOW_FERNET_KEY=x AIRFLOW_ADMIN_PASSWORD=x env -u $$var \
				docker-compose --env-file "$$empty" -f docker-compose.yaml config -q 2>&1); then \
			echo "docker-compose.yaml: accepted a missing $$var; it must be required (\$${$$var:?...})"; exit 1; \
		fi; \
		case "$$out" in \
			*": set $$var to"*) echo "docker-compose.yaml: refuses to start without $$var";; \
			*) echo "docker-compose.yaml: failed without $$var but did not name it:"; echo "$$out"; exit 1;; \
		esac; \
	done

unit: venv
	$(BIN)/python -m pytest tests/unit -q

integration-sqlite: venv check-chromium
	$(BIN)/python -m pytest tests/integration -m integration --backend=sqlite --durations=15

integration-postgres: venv check-postgres check-redis check-chromium
	$(BIN)/python -m pytest tests/integration -m integration --backend=postgres --durations=15

check-postgres:
ifneq ($(PG_INITDB),)
	@echo "PostgreSQL server binaries: $(dir $(PG_INITDB))"
else
	@if [ "$$(id -u)" = 0 ]; then \
		echo "PostgreSQL server binaries missing: installing them (apt-get install postgresql)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	else \
		echo "PostgreSQL server binaries (initdb, pg_ctl) missing. Install them with:"; \
		echo "    sudo apt-get install postgresql"; \
		exit 1; \
	fi
endif

# tests/integration/test_topology.py runs the compose topology locally: Redis broker, Celery worker.
check-redis:
	$(call debian,redis-server,redis-server)

# The Backfills page test drives Debian's Chromium with Playwright (no browser download).
check-chromium:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "Chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Chromium missing: installing it (apt-get install chromium)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "Chromium missing: the browser test (tests/integration/test_ui.py) will be skipped. Install it with:"; \
		echo "    sudo apt-get install chromium"; \
	fi

# A stock deployment (tests/stock): the wheel, not editable, in a virtualenv holding only the
# requirements.txt pins of Airflow and the standard provider (under constraints.txt), started with
# the repository off PYTHONPATH. The virtualenv is made afresh when those pins change, else reused;
# the wheel is reinstalled every run.
VENV_STOCK  := .venv-stock
STOCK_STAMP := $(VENV_STOCK)/requirements.stamp
STOCK_PINS   = $(shell grep -E '^apache-airflow(-providers-standard)?==' requirements.txt)

$(STOCK_STAMP): requirements.txt constraints.txt
	rm -rf $(VENV_STOCK)
	$(PYTHON) -m venv $(VENV_STOCK)
	$(VENV_STOCK)/bin/python -m pip install -q $(STOCK_PINS) -c constraints.txt
	touch $(STOCK_STAMP)

# $(call install-wheel,VENV): the wheel of dist/ into VENV, its own files always replaced.
define install-wheel
	$(1)/bin/python -m pip install -q --no-deps --force-reinstall dist/*.whl
	$(1)/bin/python -m pip check
endef

test-stock: dist $(STOCK_STAMP)
	$(VENV_STOCK)/bin/python -m pip install -q dist/*.whl -c constraints.txt
	$(call install-wheel,$(VENV_STOCK))
	$(BIN)/python -m pytest tests/stock -m stock --stock-venv $(VENV_STOCK) -p no:cacheprovider

test: venv lint compose-config unit integration-sqlite integration-postgres test-stock

# The next Airflow (requirements-next.txt) in a second virtualenv, with the package installed from
# its wheel (not editable): the unit tests, the controller end to end on SQLite (windows, explicit
# dates, a failing date, a task subset, cancels, the front door), then the stock deployment test
# on that virtualenv (tests/stock: the wheel, the repository off PYTHONPATH).
VENV_NEXT := .venv-next
NEXT_SMOKE := tests/integration/test_controller.py tests/integration/test_cancel.py \
	tests/integration/test_front_door.py tests/integration/test_security.py

venv-next: dist
	test -x $(VENV_NEXT)/bin/python || $(PYTHON) -m venv $(VENV_NEXT)
	$(VENV_NEXT)/bin/python -m pip install -q -r requirements-next.txt
	$(call install-wheel,$(VENV_NEXT))
	$(VENV_NEXT)/bin/python -c "import airflow; print('Airflow', airflow.__version__)"

test-next: smoke-next test-stock-next

smoke-next: venv-next
	$(VENV_NEXT)/bin/python -m pytest tests/unit -q -p no:cacheprovider
	$(VENV_NEXT)/bin/python -m pytest $(NEXT_SMOKE) -m integration --backend=sqlite -q -p no:cacheprovider

test-stock-next: venv-next
	$(BIN)/python -m pytest tests/stock -m stock --stock-venv $(VENV_NEXT) -p no:cacheprovider

demo: venv
	$(BIN)/python -m scripts.demo

up: venv
	$(BIN)/python -m scripts.local_airflow up --backend sqlite --home .airflow-demo

bench: venv
	$(BIN)/python -m scripts.bench --burst --scale $(BENCH_ARGS)

.PHONY: bench-next
bench-next: venv venv-next
	$(BIN)/python -m scripts.bench --burst --scale --next $(BENCH_ARGS)

clean:
	rm -rf .airflow-demo .airflow-* .pytest_cache .mypy_cache .ruff_cache .venv-next .venv-stock dist build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
