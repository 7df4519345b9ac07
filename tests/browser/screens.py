"""Screenshots for docs/console.md, made small (palette PNG) when Pillow is there."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def save_screenshot(browser: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png: bytes = browser.get_screenshot_as_png()
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(png)
        return
    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = img.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    path.write_bytes(out.getvalue())
