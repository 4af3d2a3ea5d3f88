"""The README's parameter table is the node's parameter table, rendered."""

from __future__ import annotations

from pathlib import Path

from isaac_trt_perception.params import markdown_table


def test_readme_parameter_table_is_current() -> None:
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    assert markdown_table() in readme, 'paste isaac_trt_perception.params.markdown_table() into README.md'
