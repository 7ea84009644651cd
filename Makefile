# kvmsnap.core developer entry points. `make demo` and `make test` are the two commands
# the README promises; everything else is a step they use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# ansible-test needs the collection under .../ansible_collections/<ns>/<name>:
# a symlink for running code, a copy for sanity (ansible-test resolves symlinks).
COLL_ROOT := $(CURDIR)/build/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/kvmsnap/core
# Outside the repo: inside it, git would hide the (ignored) copy from ansible-test.
# One copy per checkout, so two checkouts on one machine never share (and delete) each other's copy.
SANITY_ROOT := $(HOME)/.cache/kvmsnap-sanity/$(shell printf %s "$(CURDIR)" | md5sum | cut -c1-12)/ansible_collections/kvmsnap/core
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export PYTHONPATH := $(COLL_ROOT)
export PATH := $(BIN):$(PATH)
PYTEST_ARGS ?=

.PHONY: help sysdeps venv collection sanity lint typecheck units integration pytest test demo bench docs clean lab-clean
.PHONY: tools publish-check docs-site

help:
	@echo "make demo   - start the lab and run the backup/restore demo"
	@echo "make test   - sanity, lint, type check, unit and integration tests (what CI runs)"
	@echo "make bench  - benchmarks (tests/bench), ratios against a same-run baseline"
	@echo "make docs   - render docs/diagrams/*.dot to the SVGs the docs show (commit them), and the docs site (build/docs-site/html)"
	@echo "make publish-check - galaxy-importer (Automation Hub settings) and antsibull-docs lint on the collection"
	@echo "make lab-clean - stop the lab's own libvirtd and guests, delete the lab dir (/var/tmp/kvmsnap-lab)"

sysdeps:
	@tests/lab/ensure-sysdeps tests/lab/bindep.txt

$(VENV)/.stamp: requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# NetApp's netapp.ontap collection (for tests/netapp), extracted from the pinned `ansible` wheel on PyPI.
venv: sysdeps $(VENV)/.stamp
	@tests/lab/netapp-collection --python $(BIN)/python

collection:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(CURDIR) $(COLL_LINK)

# ansible-test --venv fetches a pip bootstrap script from a host this lab cannot reach;
# give it our stand-in (ensurepip + PyPI) under the name it looks for.
ATEST_PIP := $(shell $(BIN)/python -c "import re,ansible_test,os;p=os.path.dirname(ansible_test.__file__)+'/_internal/python_requirements.py';print(re.search(r\"pip='([0-9.]+)'\",open(p).read()).group(1).replace('.','_'))" 2>/dev/null)

sanity: venv
	@mkdir -p $(HOME)/.ansible/test/cache
	@test -z "$(ATEST_PIP)" || cp tests/lab/ansible-test-get-pip.py $(HOME)/.ansible/test/cache/get_pip_$(ATEST_PIP).py
	@rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	@git ls-files --cached --others --exclude-standard -z | rsync -a --from0 --files-from=- ./ $(SANITY_ROOT)/
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

# awx.awx (for playbooks/awx_setup.yml) comes from the pinned `ansible` wheel with netapp.ontap (make venv).
AWX_COLLECTIONS := $(COLL_ROOT):$(CURDIR)/build/netapp-collections
lint: venv collection
	$(BIN)/ruff check plugins tests
	ANSIBLE_COLLECTIONS_PATH=$(AWX_COLLECTIONS) $(BIN)/ansible-lint --offline roles playbooks
	ANSIBLE_COLLECTIONS_PATH=$(AWX_COLLECTIONS) $(BIN)/ansible-playbook --syntax-check playbooks/awx_setup.yml

# mypy on the collection link, so imports resolve as ansible_collections.kvmsnap.core.* (mypy.ini).
typecheck: venv collection
	cd $(COLL_ROOT) && MYPYPATH=. $(BIN)/mypy --config-file $(CURDIR)/mypy.ini -p ansible_collections.kvmsnap.core.plugins

pytest: venv collection
	$(BIN)/python -m pytest $(PYTEST_ARGS)

units: venv collection
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: venv collection
	$(BIN)/python -m pytest tests/integration tests/sim tests/netapp $(PYTEST_ARGS)

# sanity, then lint, then the unit, simulator, NetApp-client and integration tiers,
# all pytest tiers in one run so its closing line is the last thing printed.
test: venv collection
	tests/lab/ensure-services
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory publish-check docs-site
	$(BIN)/python -m pytest tests/unit tests/sim tests/netapp tests/integration $(PYTEST_ARGS)

demo: venv collection
	tests/lab/ensure-services
	$(BIN)/python tests/lab/demo.py

bench: venv collection
	tests/lab/ensure-services
	$(BIN)/python -m pytest tests/bench -p no:cacheprovider -s $(PYTEST_ARGS)

# The pictures of docs/: Graphviz sources rendered to the committed SVGs; tests/unit/test_docs_build.py
# (part of `make test`) fails when a committed SVG is not the rendering of its current source.
DOT_SOURCES := $(wildcard docs/diagrams/*.dot)
docs: $(DOT_SOURCES:.dot=.svg) docs-site

docs/diagrams/%.svg: docs/diagrams/%.dot
	@command -v dot >/dev/null || { echo "make docs needs Graphviz: apt install graphviz (tests/lab/bindep.txt)"; exit 1; }
	dot -Tsvg $< -o $@

clean:
	rm -rf build tests/output .pytest_cache

# The lab's libvirtd, guests and files (KVMSNAP_LAB_DIR, default /var/tmp/kvmsnap-lab); nothing else.
lab-clean:
	tests/lab/labd remove

# The publishing tools (galaxy-importer, antsibull-docs, Sphinx) in their own venv: their pins would downgrade
# packages of the dev venv (tests/publish/requirements.txt says which). docs/dev/publishing.md explains the checks.
TOOLS := build/tools-venv
TOOLS_BIN := $(CURDIR)/$(TOOLS)/bin

$(TOOLS)/.stamp: tests/publish/requirements.txt
	@test -x $(TOOLS_BIN)/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS_BIN)/pip install -q --disable-pip-version-check -r tests/publish/requirements.txt
	@touch $@

tools: $(TOOLS)/.stamp

# the tools venv's commands first (its ansible-doc, ansible-lint and flake8 are what the tools call)
publish-check docs-site: export PATH := $(TOOLS_BIN):$(PATH)

# What Galaxy and Automation Hub check on upload, offline: the plugin and role docs (antsibull-docs), then
# galaxy-importer on the tarball `ansible-galaxy collection build` makes (tests/publish/publish_check.py).
PUBLISH_DIR := build/publish
publish-check: tools collection
	antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs all \
		--disallow-unknown-collection-refs .
	@rm -rf $(PUBLISH_DIR) && mkdir -p $(PUBLISH_DIR)
	ansible-galaxy collection build --force --output-path $(PUBLISH_DIR) . >/dev/null
	$(TOOLS_BIN)/python tests/publish/publish_check.py $(PUBLISH_DIR)/kvmsnap-core-*.tar.gz $(PUBLISH_DIR)

# The documentation site: plugin and role pages from antsibull-docs, the guides of docs/ through myst-parser,
# Sphinx with warnings as errors (docs/site/conf.py). Offline: no intersphinx fetches.
DOCS_SITE := build/docs-site
docs-site: tools collection
	@rm -rf $(DOCS_SITE) && mkdir -p $(DOCS_SITE)/rst/guides && chmod og-w $(DOCS_SITE)/rst
	antsibull-docs --config-file docs/site/antsibull-docs.cfg collection --use-current \
		--dest-dir $(DOCS_SITE)/rst kvmsnap.core >/dev/null
	cp docs/site/*.rst $(DOCS_SITE)/rst/
	rsync -a --exclude=site/ --include='*/' --include='*.md' --include='*.svg' --include='*.png' --exclude='*' \
		docs/ $(DOCS_SITE)/rst/guides/
	sphinx-build -W --keep-going -q -b html -c docs/site $(DOCS_SITE)/rst $(DOCS_SITE)/html
	@echo "docs site: $(DOCS_SITE)/html/index.html"
