"""The workspace benchmarks: `make bench` runs `python -m perception_bench.run`; figures land in
bench/results/."""
