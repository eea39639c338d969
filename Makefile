# Machinery: `make run` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .sam-venv
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
# cfn-lint as the SAM CLI pins it (>=1.52,<1.59), with AWS's serverless rules (cfn-lint >=1.57).
CFN_LINT_VERSION := 1.58.0
CFN_LINT_SERVERLESS_VERSION := 0.3.6
# sam build needs a python3.13 interpreter on PATH; pyenv provides one next to the default.
# SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS: expand template.yaml's AWS::LanguageExtensions (the
# ApiAuthorization Fn::If) locally, as CloudFormation does on deploy.
SAM_FLAGS := SAM_CLI_TELEMETRY=0 SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1
SAM_ENV := $(SAM_FLAGS) AWS_DEFAULT_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	PYENV_VERSION=$(shell $(PYTHON) -c 'import platform; print(platform.python_version())'):3.13.0
PORT ?= 3000
# `make run STATE_MACHINE_TYPE=EXPRESS` runs the local stack on an EXPRESS state machine
STATE_MACHINE_TYPE ?= STANDARD
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: install sam-install browser run test test-fast lint cfn-lint build validate deploy clean \
	screenshot bench bench-load iam-report

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/pip install $(PIP_QUIET) -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' | grep -v -i 'BuildBackendWarning\|^ *!!\|^ *\*\*\*\|^ *$$' || true
	$(BIN)/python -c 'import machinery_core, moto, aws_lambda_powertools, playwright'
	touch $@

# The SAM CLI pins exact boto3/pydantic versions: it lives in its own virtual environment, with
# the cfn-lint it brings and the serverless rules for it. The stamp names the versions, so that
# changing one reinstalls.
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION)-$(CFN_LINT_SERVERLESS_VERSION)
sam-install: $(SAM_STAMP)
$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_QUIET) aws-sam-cli==$(SAM_CLI_VERSION) \
		cfn-lint==$(CFN_LINT_VERSION) cfn-lint-serverless==$(CFN_LINT_SERVERLESS_VERSION) \
		2>&1 | grep -v '^WARNING: Location' || true
	$(SAM) --version
	$(SAM_VENV)/bin/python -c 'import cfn_lint_serverless.rules'
	touch $@

# The dashboard's browser test drives Debian's chromium (Playwright downloads no browser here).
browser:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

run: install
	$(BIN)/machinery local --examples --port $(PORT) --state-machine-type $(STATE_MACHINE_TYPE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy machinery_core
	$(BIN)/mypy functions/api/app.py
	$(BIN)/mypy functions/step/app.py
	$(BIN)/lint-imports  # the layers' boundaries: pyproject.toml [tool.importlinter]

# cfn-lint with AWS's serverless rules: zero findings (a rule that does not apply is suppressed
# in template.yaml, its reason beside it). The template comes first: --append-rules takes
# every argument after it as a rules module.
cfn-lint: sam-install
	$(SAM_VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules

# The OpenAPI linters come from the npm registry, pinned by package.json and package-lock.json
# (node_modules/ is not committed; Node is on the machine). `--ignore-scripts`: no install
# scripts run, and none is needed.
.PHONY: node-install openapi-lint
node-install: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

# The document GET /openapi.json serves (built in-process by the same function that route
# calls) against Redocly's recommended rules and Spectral's spectral:oas: no error, and
# Spectral no warning either.
openapi-lint: install node-install
	mkdir -p build
	$(BIN)/python -c 'import json, sys; sys.path.insert(0, "functions/api"); import app; \
		json.dump(app.openapi_document(), open("build/openapi.json", "w"), indent=2)'
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		node_modules/.bin/redocly lint build/openapi.json --config redocly.yaml
	node_modules/.bin/spectral lint build/openapi.json --ruleset .spectral.yaml --fail-severity=warn

test: install sam-install browser lint cfn-lint openapi-lint
	MACHINERY_SAM=$(CURDIR)/$(SAM) $(BIN)/pytest

# build/iam-report.md and .json: what each role may do and what each function and the state
# machine did in the e2e suite, call by call (tests/e2e/test_permissions.py writes them).
iam-report: install sam-install browser node-install
	MACHINERY_IAM_REPORT=$(CURDIR)/build/iam-report MACHINERY_SAM=$(CURDIR)/$(SAM) \
		$(BIN)/pytest tests/e2e

test-fast: install
	$(BIN)/pytest -m 'not sam'

# `--lint` is cfn-lint only; the plain run is the SAM transform itself (what deploy would do).
validate: sam-install
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) validate

# --cached: rebuilds only what changed (about 2 s instead of 10 s once .aws-sam/ exists).
build: sam-install
	$(SAM_ENV) $(SAM) build --cached

# Deploys to the AWS account of your usual credentials (not the fake ones the tests use).
deploy: build
	$(SAM_FLAGS) $(SAM) deploy --guided

# Benchmarks measure; they fail only when an event is lost or wrong, never on speed.
# `bench` runs the whole suite (benchmarks/bench.py: requests per event, modelled cost, cold
# init, latency, throughput, a burst of 2,000) and writes benchmarks/results/latest.md and
# latest.json (BENCH_ARGS: e.g. --quick). `bench-load` is the load benchmark alone
# (BENCH_LOAD_ARGS: e.g. --events 1000).
bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-load: install
	$(BIN)/python benchmarks/load.py $(BENCH_LOAD_ARGS)

# docs/dashboard.png: the dashboard's page of the example event, from a fresh local runtime.
screenshot: install browser
	$(BIN)/python docs/screenshot.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
