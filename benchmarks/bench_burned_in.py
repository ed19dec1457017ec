"""Speed of the burned-in text check (:mod:`core.library.burned_in`), which every import runs.

Prints the median time of the pixel check on a demo X-ray phantom at 256, 512, 1024 and 2048
pixels, with and without a line of text along the top border. Target: under 20 ms at 1024 px
(an import of a few thousand images should not notice it).

    python benchmarks/bench_burned_in.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_ms  # noqa: E402

from core.demo.xray_phantom import generate_xray  # noqa: E402
from core.library.burned_in import text_reasons  # noqa: E402


def with_text(unit: np.ndarray) -> np.ndarray:
    """The image with 'PORTABLE AP 2020-04-19' written in white near its top left corner."""
    size = unit.shape[0]
    im = Image.fromarray(np.rint(unit * 255).astype(np.uint8))
    font = ImageFont.load_default(size=max(8, size // 40))
    ImageDraw.Draw(im).text((size // 20, size // 30), "PORTABLE AP 2020-04-19", fill=255, font=font)
    return np.asarray(im, dtype=np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    base = generate_xray("COVID-19", 0.5, 7, size=1024).pixels
    for size in (256, 512, 1024, 2048):
        clean = np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
        text = with_text(clean)
        assert not text_reasons(clean) and text_reasons(text), "the benchmark's images are not what they should be"
        t_clean = median_ms(lambda c=clean: text_reasons(c), args.repeats)
        t_text = median_ms(lambda t=text: text_reasons(t), args.repeats)
        print(f"{size:5d} px: {t_clean:6.1f} ms without text, {t_text:6.1f} ms with text (median of {args.repeats})")


if __name__ == "__main__":
    main()
