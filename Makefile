# govbot — every command a person needs. README names two: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PYTHONPATH := $(CURDIR)
export RASA_TELEMETRY_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PY := .venv/bin/python
GOVBOT := .venv/bin/govbot
PORT ?= 8000

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venvs:  ## build .venv (3.11) and .venv-rasa (3.10) from the lock files, once per lock-file hash
	@scripts/venv.sh .venv python3.11 locks/app.lock
	@scripts/venv.sh .venv-rasa python3.10 locks/rasa.lock
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
	  || $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .

model: venvs  ## build the offline embedding model (once per input hash)
	@$(PY) -m retrieval.setup model

index: model  ## validate the bundled knowledge base and build its index (only when it changed)
	@$(GOVBOT) kb build

rasa-model: venvs  ## train the Rasa model if its inputs changed (cached by input hash)
	@$(PY) -m bot.train

setup: index rasa-model  ## everything `run` and `test` need; idempotent

run: setup  ## the whole system on the embedded defaults (Rasa, actions, gateway); prints the URLs; Ctrl-C stops all
	@$(PY) -m bot.runner --gateway-port $(PORT)

browser:  ## what the browser tests drive: Debian chromium and a CJK font (installed if missing), playwright-core (npm ci)
	@{ command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; } \
	  || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null)
	@cd tests/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --silent; }

test: setup browser  ## lint, type-check and the whole test suite (both runtimes)
	@.venv/bin/ruff check knowledge nlu retrieval connectors bot tests bench
	@.venv/bin/mypy
	@.venv/bin/pytest -q tests

eval: setup  ## retrieval quality on the Beijing FAQ dev and test splits (see bench/README.md)
	@$(PY) -m bench.faq_eval
	@$(PY) -m bench.rasa_bench

train:  ## learn fusion weights and the confidence model on the dev split (writes retrieval/weights.json)
	@$(PY) -m retrieval.train

bench: setup  ## speed, memory and quality benchmarks (writes bench/results/; figures go to bench/README.md)
	@$(PY) -m bench.vector_bench
	@$(PY) -m bench.embed_speed
	@$(PY) -m bench.faq_eval
	@$(PY) -m bench.rasa_bench
	@$(PY) -m bench.gateway_bench

.PHONY: help venvs model index rasa-model setup browser run test eval train bench
