# The two commands a newcomer needs are `make run` and `make test`; every target
# installs what it needs into .venv first, from nothing but Python and pip.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run token test lint format lock loadtest bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## run: the service on loopback, against the local AWS stand-in and identity provider
run: $(INSTALLED)
	$(BIN)/python -m standin.launcher

## token SUB=alice NAME="Alice Example": print a token the local setup accepts
token: $(INSTALLED)
	@$(BIN)/python -m standin.identity_provider --sub "$(or $(SUB),alice)" $(if $(NAME),--name "$(NAME)")

## test: format check, lint, type check, then the whole test suite
test: lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## loadtest: 20 s of the mixed Locust scenario against a local stand-in and service (SCENARIO=warm|storm|mixed|fault, REPLICAS=N, REDIS=1)
loadtest: $(INSTALLED)
	$(BIN)/python -m loadtest $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(REDIS),--redis)

## bench: every benchmark figure, about 7 minutes (installs wrk with apt-get if missing); rewrites BENCHMARKS.md's table
bench: $(INSTALLED)
	$(BIN)/python -m bench

## lock: regenerate requirements.lock (the image's pins, with hashes); UPGRADE=1 bumps them
lock:
	tmp=$$(mktemp -d) && $(PYTHON) -m venv "$$tmp" \
	&& "$$tmp/bin/python" -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0 \
	&& "$$tmp/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		--output-file=requirements.lock pyproject.toml; \
	status=$$?; rm -rf "$$tmp"; exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
