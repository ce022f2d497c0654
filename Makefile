# Backfill Controller: developer and CI entry points. `make help` lists the targets.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/requirements.stamp
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
CHROMIUM  ?= /usr/bin/chromium

.PHONY: help venv lint compose-config unit integration-sqlite integration-postgres check-postgres check-chromium check-redis test test-next demo up bench clean

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
	@echo "make lint                  ruff check, ruff format --check, mypy include"
	@echo "make compose-config        validate docker-compose.yaml with Debian's docker-compose (no engine)"
	@echo "make unit                  unit tests (no Airflow started)"
	@echo "make integration-sqlite    integration tests against a local Airflow on SQLite"
	@echo "make integration-postgres  integration tests against a local Airflow on PostgreSQL"
	@echo "make test                  all of the above (what CI runs)"
	@echo "make test-next             unit tests and an end-to-end smoke on the next Airflow (.venv-next)"
	@echo "make up                    local Airflow with the repo DAGs at http://localhost:PORT (Ctrl-C stops)"
	@echo "make demo | bench          run scripts/demo.py | scripts/bench.py"
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
	$(BIN)/python -m pytest tests/integration -m integration --backend=sqlite

integration-postgres: venv check-postgres check-redis check-chromium
	$(BIN)/python -m pytest tests/integration -m integration --backend=postgres

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

test: venv lint compose-config unit integration-sqlite integration-postgres

# The next Airflow (requirements-next.txt) in a second virtualenv: the unit tests, then the
# controller end to end on SQLite (windows, explicit dates, a failing date, a task subset, cancels,
# the front door).
VENV_NEXT := .venv-next
NEXT_SMOKE := tests/integration/test_controller.py tests/integration/test_cancel.py \
	tests/integration/test_front_door.py tests/integration/test_security.py

test-next:
	test -x $(VENV_NEXT)/bin/python || $(PYTHON) -m venv $(VENV_NEXT)
	$(VENV_NEXT)/bin/python -m pip install -q -r requirements-next.txt
	$(VENV_NEXT)/bin/python -c "import airflow; print('Airflow', airflow.__version__)"
	$(VENV_NEXT)/bin/python -m pytest tests/unit -q -p no:cacheprovider
	$(VENV_NEXT)/bin/python -m pytest $(NEXT_SMOKE) -m integration --backend=sqlite -q -p no:cacheprovider

demo: venv
	$(BIN)/python -m scripts.demo

up: venv
	$(BIN)/python -m scripts.local_airflow up --backend sqlite --home .airflow-demo

bench: venv
	$(BIN)/python -m scripts.bench

clean:
	rm -rf .airflow-demo .airflow-* .pytest_cache .mypy_cache .ruff_cache .venv-next
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
