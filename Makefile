# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	@if [ -z "$$SITEPULSE_MQTT_URL" ]; then bash scripts/ensure-system-packages.sh mosquitto; fi
	$(BIN)/sitepulse demo

test: install
	bash scripts/ensure-system-packages.sh mosquitto
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .sitepulse .pytest_cache .ruff_cache
