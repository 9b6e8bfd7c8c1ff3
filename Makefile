# mailstead — the two commands of the README are `make lab` and `make test`.
# Both install what they need: a venv with the Python dependencies, the lab's host packages (labctl).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LABCTL := tests/lab/labctl
export MAILSTEAD_LAB_ID ?= lab

.PHONY: venv lab lab-down lab-deploy test unit bench readme clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

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
	rm -rf $(VENV) build *.egg-info
