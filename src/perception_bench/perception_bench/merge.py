"""``python -m perception_bench.merge BASE.json NEW.json``: the sections measured in NEW (a later, partial run
such as ``tools/bench_device.sh --sections node`` on the same machine) replace BASE's; BASE's
JSON and Markdown are rewritten, and BASE records where each replaced section came from."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception_core.atomic import write_json, write_text

from . import report
from .run import SECTIONS


def merge(base: dict, new: dict) -> dict:
    if base['machine'].get('gpu') != new['machine'].get('gpu'):
        raise ValueError(
            f'{new["machine"].get("gpu")} results cannot replace {base["machine"].get("gpu")} ones'
        )
    merged = dict(base)
    for section in SECTIONS:
        if section in new:
            merged[section] = new[section]
            merged['section_seconds'] = {
                **base.get('section_seconds', {}),
                section: new['section_seconds'][section],
            }
            merged.setdefault('merged', {})[section] = {
                'date': new['machine']['date'],
                'command': new['command'],
            }
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m perception_bench.merge',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('base', type=Path)
    parser.add_argument('new', type=Path)
    args = parser.parse_args(argv)
    merged = merge(json.loads(args.base.read_text()), json.loads(args.new.read_text()))
    write_json(args.base, merged)
    write_text(args.base.with_suffix('.md'), report.markdown(merged))
    print(f'wrote {args.base} and {args.base.with_suffix(".md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
