# The two commands of the README. Both install what is missing first (scripts/setup).
.PHONY: up test setup down lint imports typecheck security bench

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
VENV := .venv/bin
PACKAGES := core cryptopulse schemas scoring views model_export producers stream_processors spark_jobs api retraining alerting

## Install everything, then start the full local pipeline on bundled data.
up: setup
	$(VENV)/cryptopulse up

## Install everything, then run the whole test suite (starts the local platform itself).
test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports
	$(VENV)/mypy $(PACKAGES) tests bench
	$(VENV)/python -m schemas.jsonschema --check
	$(MAKE) --no-print-directory security
	$(VENV)/pytest --durations=80 --durations-min=3

setup:
	scripts/setup

down:
	$(VENV)/cryptopulse down

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

## The import contract of docs/architecture.md (layers, independent stages).
imports:
	$(VENV)/lint-imports

typecheck:
	$(VENV)/mypy $(PACKAGES) tests bench

## Supply-chain checks (docs/testing.md): bandit over our code (an accepted finding is marked
## where it is, `# nosec BXXX # why`), then the scan for secrets that .secrets.baseline lacks.
security:
	$(VENV)/bandit -q -c pyproject.toml -r .
	scripts/scan-secrets

bench:
	$(VENV)/python bench/bench_model.py --model models:/cryptopulse-sentiment@champion
	$(VENV)/python bench/bench_stream.py
	$(VENV)/python bench/bench_spark.py
	$(VENV)/python bench/bench_api.py
	$(VENV)/python bench/bench_drift.py --model models:/cryptopulse-sentiment@champion
