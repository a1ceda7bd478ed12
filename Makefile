# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
# Extra pytest options for both steps of `make test` (e.g. PYTEST_ARGS="-x").
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench-scale compose-check clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/sitepulse warm  # numba compiles the services' kernels now, not in the first `sitepulse services list`
	touch $(STAMP)

install: $(STAMP)

demo: install
	@if [ -z "$$SITEPULSE_MQTT_URL" ]; then bash scripts/ensure-system-packages.sh mosquitto; fi
	$(BIN)/sitepulse demo

# Two steps: the quick tests, then the long scenarios (marked slow). Those mostly wait (outages, restarts, soaks),
# so two pytest-xdist workers nearly halve that step (642 -> 371 s measured); each worker starts its own
# PostgreSQL, Mosquitto and TimescaleDB on free ports, and a test file stays on one worker.
test: install
	bash scripts/ensure-system-packages.sh mosquitto
	bash scripts/ensure-timescaledb.sh
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)
	$(BIN)/pytest -m slow -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench-scale: install
	$(BIN)/python benchmarks/scale_out.py

compose-check: install
	python3 scripts/compose_secrets.py --sites demo
	$$(dirname $$($(BIN)/python -c 'import compose; print(compose.__file__)'))/docker-compose config --quiet

clean:
	rm -rf $(VENV) .sitepulse .pytest_cache .ruff_cache
