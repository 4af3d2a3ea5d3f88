"""Write a parseable copy of the installed tensorrt-stubs for mypy: ``tensorrt_stubs.py OUT_DIR``.

tensorrt-stubs (generated from the C++ bindings) has signatures Python cannot parse: parameters
named ``in`` and parameters without a default after ones with a default. mypy stops at the first
syntax error, so ``make lint`` type-checks the TensorRT layer against this repaired copy
(mypy.ini's ``mypy_path``). Only those two things change; every type stays as shipped.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

PACKAGES = ('tensorrt', 'tensorrt_bindings')
SIGNATURE = re.compile(r'^(\s*def \w+\()(.*)(\)\s*->.*:\s*(?:\.\.\.)?\s*)$')


def _split_params(params: str) -> list[str]:
    """Top-level comma split (brackets nest)."""
    parts, depth, current = [], 0, ''
    for char in params:
        depth += char in '([{'
        depth -= char in ')]}'
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    return [*parts, current] if current.strip() else parts


def repair_signature(line: str) -> str:
    match = SIGNATURE.match(line)
    if not match:
        return line
    head, params, tail = match.groups()
    fixed, seen_default = [], False
    for original in _split_params(params):
        param = re.sub(r'^(\s*)in:', r'\1in_:', original)
        bare = param.strip()
        if '=' in bare:
            seen_default = True
        elif seen_default and not bare.startswith('*') and bare != '/':
            param = f'{param} = ...'
        fixed.append(param)
    return head + ','.join(fixed) + tail


def repair(text: str) -> str:
    return ''.join(repair_signature(line) for line in text.splitlines(keepends=True))


def main() -> int:
    out = Path(sys.argv[1])
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            print(f'tensorrt_stubs.py: {package} stubs are not installed (pip install -r '
                  'requirements/stubs.txt --no-deps)', file=sys.stderr)
            return 1
        source = Path(next(iter(spec.submodule_search_locations)))
        for stub in source.glob('*.pyi'):
            text = repair(stub.read_text())
            ast.parse(text, filename=str(stub))
            target = out / package / stub.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
