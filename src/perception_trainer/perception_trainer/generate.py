"""``perception-synth``: write a synthetic data set in the formats Isaac Sim Replicator users have.

Layout of ``--out``::

    images/000000.jpg ...        the frames (RGB)
    labels/000000.txt ...        KITTI labels (KittiWriter / TAO)
    coco_instances.json          COCO instances
    metadata.json                one object per sample (metadata_format.py)

Frames render in parallel processes; scene ``i`` depends only on (seed, i, size, classes), so any
number of workers produces the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
from tqdm import tqdm

from perception_core import atomic
from perception_core.interrupt import interrupted, leave_to_parent, starting_workers
from perception_core.synth import DEFAULT_CLASSES, check_classes, render_scene

from .annotations import ImageRecord
from .coco_format import write_coco
from .kitti_format import label_text
from .metadata_format import write_metadata
from .readers import COCO_FILE, METADATA_FILE

log = logging.getLogger(__name__)
IMAGE_FORMATS = ('jpg', 'png')
JPEG_QUALITY = 95


def _write_frame(index: int, *, out: Path, seed: int, size: tuple[int, int], classes: tuple[str, ...],
                 image_format: str) -> ImageRecord:
    scene = render_scene(seed, index, size[0], size[1], classes)
    name = f'images/{index:06d}.{image_format}'
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == 'jpg' else []
    ok, encoded = cv2.imencode(f'.{image_format}', cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f'{out / name}: OpenCV could not encode the frame')
    atomic.write_bytes(out / name, encoded.tobytes())
    atomic.write_text(out / f'labels/{index:06d}.txt', label_text(scene.boxes))
    return ImageRecord(name, size[0], size[1], scene.boxes)


class RenderInterrupted(KeyboardInterrupt):
    """Ctrl-C while rendering; the message says what the folder holds."""


def generate_dataset(out: str | Path, num_images: int, seed: int, *, size: tuple[int, int] = (640, 480),
                     classes: Sequence[str] = DEFAULT_CLASSES, workers: int | None = None,
                     image_format: str = 'jpg', progress: bool = True) -> Path:
    """Render ``num_images`` scenes into ``out``; returns ``out``."""
    classes = check_classes(classes)
    if num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'image format must be one of {IMAGE_FORMATS}, got {image_format!r}')
    out = Path(out)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    (out / 'labels').mkdir(parents=True, exist_ok=True)
    # The annotations are written last: a render stopped half-way must not leave an older set's
    # annotations beside this one's images.
    for name in (COCO_FILE, METADATA_FILE):
        (out / name).unlink(missing_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, num_images))
    job = partial(_write_frame, out=out, seed=seed, size=size, classes=classes, image_format=image_format)
    bar = tqdm(total=num_images, desc=f'rendering {out.name}', unit='img', disable=not progress)
    records = []
    try:
        with contextlib.ExitStack() as stack:
            if workers == 1:
                frames = map(job, range(num_images))
            else:
                with starting_workers():
                    pool = stack.enter_context(multiprocessing.get_context('spawn').Pool(
                        workers, initializer=leave_to_parent))
                frames = pool.imap(job, range(num_images), chunksize=8)
            for record in frames:
                records.append(record)
                bar.update(1)
    except KeyboardInterrupt:
        raise RenderInterrupted(f'{out}: {len(records)} of {num_images} images rendered and no annotations '
                                f'written; the same command renders the set again') from None
    finally:
        bar.close()
    info = {'description': 'perception-synth synthetic scenes', 'seed': seed, 'num_images': num_images,
            'size': list(size), 'generator': 'perception_core.synth'}
    write_coco(out / COCO_FILE, classes, records, info)
    write_metadata(out / METADATA_FILE, classes, records)
    log.info('%s: %d images, %d boxes', out, len(records), sum(len(r.boxes) for r in records))
    return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 640x480, got {text!r}') from None
    return width, height


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='perception-synth', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, type=Path, help='output directory')
    parser.add_argument('--num-images', required=True, type=int)
    parser.add_argument('--seed', required=True, type=int,
                        help='data set seed (use a new one for held-out sets)')
    parser.add_argument('--size', type=parse_size, default=(640, 480), help='WxH, default 640x480')
    parser.add_argument('--classes', nargs='+', default=list(DEFAULT_CLASSES),
                        help=f'subset of {" ".join(DEFAULT_CLASSES)}')
    parser.add_argument('--workers', type=int, default=None, help='processes (default: all cores)')
    parser.add_argument('--image-format', choices=IMAGE_FORMATS, default='jpg')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        out = generate_dataset(args.out, args.num_images, args.seed, size=args.size, classes=args.classes,
                               workers=args.workers, image_format=args.image_format)
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt as exc:
        raise SystemExit(interrupted('perception-synth', str(exc))) from None
    print(f'wrote {args.num_images} images to {out}')


if __name__ == '__main__':
    main()
