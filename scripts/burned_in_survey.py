"""How often the burned-in text check flags the real images in ../shared/data (never committed).

Prints, per folder, how many images the pixel check of :mod:`core.library.burned_in` flags out
of how many, and on which borders. The real chest X-rays often carry burned-in text ("PORTABLE",
"AP ERECT", "PORTATIL", a scale, a date) and markers ("L", "D"), so the X-ray figures are not a
false-positive rate: look at the flagged crops (``--crops DIR``, written outside the repository,
never committed) to judge them. The CT slices are exports cropped to the body, which rarely
carry text.

    python scripts/burned_in_survey.py ../shared/data [--limit N] [--crops /tmp/burned-in]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.library.burned_in import text_reasons  # noqa: E402

FOLDERS = ("cxr-adult/covid", "cxr-adult/normal", "cxr-adult/pneumonia", "ct-slices/covid", "ct-slices/non_covid")


def unit_image(path: Path) -> np.ndarray:
    """An 8-bit PNG as it is displayed: float in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="the shared data folder (with cxr-adult/ and ct-slices/)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per folder")
    parser.add_argument("--crops", type=Path, default=None, help="write flagged and unflagged examples here")
    parser.add_argument("--examples", type=int, default=24, help="examples of each verdict per folder")
    args = parser.parse_args()
    if not all((args.root / f).is_dir() for f in FOLDERS):
        parser.error(f"{args.root} lacks one of the folders {', '.join(FOLDERS)}")
    start = time.perf_counter()
    for folder in FOLDERS:
        files = sorted((args.root / folder).glob("*.png"))[: args.limit]
        flagged: list[Path] = []
        clean: list[Path] = []
        sides: Counter[str] = Counter()
        for path in files:
            reasons = text_reasons(unit_image(path))
            (flagged if reasons else clean).append(path)
            sides.update(r.rsplit(" ", 2)[-2] for r in reasons)
        share = 100.0 * len(flagged) / max(len(files), 1)
        by_side = ", ".join(f"{k} {v}" for k, v in sorted(sides.items())) or "none"
        print(f"{folder:22s} flagged {len(flagged):5d} / {len(files):5d} ({share:5.1f} %); borders: {by_side}")
        if args.crops is not None:
            for verdict, paths in (("flagged", flagged), ("clean", clean)):
                out = args.crops / folder.replace("/", "-") / verdict
                out.mkdir(parents=True, exist_ok=True)
                step = max(1, len(paths) // max(args.examples, 1))
                for path in paths[::step][: args.examples]:
                    Image.open(path).convert("L").save(out / path.name)
    print(f"{time.perf_counter() - start:.1f} s in all")


if __name__ == "__main__":
    main()
