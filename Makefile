# asrkt: `make demo` runs the default recipe end to end, `make test` runs the whole test suite.
# Both create the virtual environment (.venv) and install what is missing on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.asrkt-installed
PYTEST_ARGS ?=

.PHONY: install demo demo-commit-results test test-fast clean

install: $(STAMP)

$(STAMP): setup.py tools/setup_venv.sh
	bash tools/setup_venv.sh $(VENV) $(PYTHON)
	touch $@

# The default recipe on the synthesised digits corpus (no download needed). Its results stay under
# egs/digits/exp/ (results/*.yaml, RESULTS.md, results.png), printed next to the committed reference results:
# a run leaves the git tree clean.
demo: install
	cd egs/digits && ./run.sh

# Make the last demo run the reference: copies its records into egs/digits/results/ and regenerates
# egs/digits/RESULTS.md (an explicit act; review the diff, then commit it).
demo-commit-results: install
	cd egs/digits && ./run.sh --stage 7 --stop-stage 7 --commit-results true

# Every test, slow ones included (CI runs exactly this).
test: install
	$(VENV)/bin/python -m pytest -ra tests $(PYTEST_ARGS)

# Skip the tests marked slow (the smoke recipe run), for a quick check while developing.
test-fast: install
	$(VENV)/bin/python -m pytest -ra -m "not slow" tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
