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
	@echo "make train  - reproduce the shipped model bundle models/detector/ (TRAIN_ARGS=\"--device cuda --workers 12\" on a GPU host)"

setup:
	@tools/bootstrap.sh

build: setup

test: setup
	@$(RUN) python -m pytest

demo: setup
	@$(RUN) perception-demo --out $(OUT)/demo

bench: setup
	@$(RUN) tools/bench.sh

TRT_LAYER := src/perception_core/perception_core/engine/tensorrt_build.py \
             src/perception_core/perception_core/engine/torch_tensorrt_build.py \
             src/perception_core/perception_core/backends/tensorrt.py

lint: setup
	@$(RUN) ruff check .
	@$(RUN) python src/perception_engine_builder/tools/tensorrt_stubs.py .cache/tensorrt-stubs
	@$(RUN) mypy --config-file src/perception_engine_builder/mypy.ini $(TRT_LAYER)
	@$(RUN) python -m py_compile launch/jetson.launch.py
	@echo "lint: ruff, mypy (TensorRT layer against tensorrt-stubs), launch file compile: all passed"

train: setup
	@$(RUN) perception-train-default $(TRAIN_ARGS)

clean:
	rm -rf build install log $(OUT)
