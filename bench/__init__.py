"""``make bench``: the workspace's speed report (``python -m bench.run``); see bench/README.md."""
