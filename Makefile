# Every target sets the workspace up first (tools/bootstrap.sh: quick when already done).
SHELL := /bin/bash
RUN := tools/in_env.sh
OUT ?= out

.PHONY: help setup build test demo bench lint train clean

help:
	@echo "make demo   - the whole pipeline on a synthetic camera: bag -> node -> detections -> report"
	@echo "make test   - set up from a fresh clone, then run every test"
	@echo "make bench  - speed report for this machine (bench/results/)"
	@echo "make lint   - ruff, mypy on the TensorRT layer, launch file byte-compile"
	@echo "make train  - reproduce the shipped model bundle models/detector/"

setup:
	@tools/bootstrap.sh

build: setup

test: setup
	@$(RUN) python -m pytest

demo: setup
	@$(RUN) perception-demo --out $(OUT)/demo

bench: setup
	@$(RUN) tools/bench.sh

lint: setup
	@$(RUN) ruff check .
	@$(RUN) python -m py_compile launch/jetson.launch.py

train: setup
	@$(RUN) tools/train_default.sh

clean:
	rm -rf build install log $(OUT)
