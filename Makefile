# mailstead — the two commands of the README are `make lab` and `make test`.
# Both install what they need: a venv with the Python dependencies, the lab's host packages (labctl).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LABCTL := tests/lab/labctl
export MAILSTEAD_LAB_ID ?= lab

LOCK   := requirements.lock
LOCK_TOOLS := .venv-lock
# pip-compile's options for requirements.lock: hashes of every file, the dev extra (pytest), the build backend
# (setuptools, so the project itself installs without fetching anything unlocked), no index or find-links lines
# (they name this machine's package sources)
LOCK_OPTIONS := --quiet --generate-hashes --extra dev --all-build-deps --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-trusted-host --no-emit-find-links

.PHONY: venv lock lock-upgrade lab lab-down lab-deploy test unit bench readme clean

## make venv: .venv with exactly the versions in requirements.lock (every file checked against its hash),
## then mailstead itself (editable, no dependencies of its own: they all come from the lock).
venv: $(VENV)/.installed

$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## make lock: re-resolve requirements.lock after a change to pyproject.toml (keeps the versions already locked
## where they still fit); make lock-upgrade: the newest versions pyproject.toml allows. Both use pip-tools from
## their own venv (.venv-lock), resolve for this Python, and leave .venv to `make venv`.
lock: $(LOCK_TOOLS)/bin/pip-compile
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(LOCK_OPTIONS) -o $(LOCK) pyproject.toml

lock-upgrade: $(LOCK_TOOLS)/bin/pip-compile
	CUSTOM_COMPILE_COMMAND="make lock-upgrade" $(LOCK_TOOLS)/bin/pip-compile $(LOCK_OPTIONS) --upgrade \
		-o $(LOCK) pyproject.toml

$(LOCK_TOOLS)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet 'pip-tools>=7.4,<8'

## make lab: boot the lab (Debian 13 hosts in private network namespaces) and deploy mailstead onto it.
lab: venv
	$(LABCTL) up
	$(MAKE) --no-print-directory lab-deploy

# The deploy runs with the lab's own inventory (tests/lab/inventory.py; pyinfra reads group_data/, then
# tests/lab/group_data/) from the lab's outside world (its network namespace), where it reaches the hosts and
# the DNS provider's API as a real deploy machine reaches real servers.
LAB_INVENTORY := tests/lab/inventory.py

lab-deploy: venv
	$(LABCTL) net -- $(BIN)/pyinfra -y $(LAB_INVENTORY) deploy.py

lab-down:
	$(LABCTL) down

## make test: the whole suite (unit + lab). Boots the lab if it is not up, and takes down only what it booted.
test: venv
	tests/run-suite

unit: venv
	tests/run-suite tests/unit

## make bench: benchmarks that print side-by-side figures (boots and deploys the lab first).
bench: lab
	$(BIN)/python bench/run.py

## make readme: regenerate README.md's settings reference from the settings model.
readme: venv
	$(BIN)/python -m mailstead settings-reference --write README.md

clean:
	rm -rf $(VENV) $(LOCK_TOOLS) build *.egg-info
