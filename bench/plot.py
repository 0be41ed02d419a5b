"""A PNG summary drawn with Pillow (already installed with Streamlit): one bar panel per part.

Each panel shows measured/target bars normalised so the target line sits at 1.0:
a bar that crosses the red line missed its target.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

W, PANEL_H, PAD = 1100, 260, 60


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _panel(draw, top: int, title: str, bars: list[tuple[str, float, str]]) -> None:
    """bars: (label, value relative to target (1.0 = at target), annotation)."""
    f_title, f = _font(18), _font(13)
    draw.text((PAD, top + 5), title, fill="black", font=f_title)
    x0, y0, y1 = PAD + 10, top + 40, top + PANEL_H - 50
    h = y1 - y0
    vmax = max([1.3, *[b[1] for b in bars]]) * 1.05
    draw.line((x0, y1, W - PAD, y1), fill="black")
    target_y = y1 - h / vmax
    draw.line((x0, target_y, W - PAD, target_y), fill="red", width=2)
    draw.text((W - PAD - 60, target_y - 16), "target", fill="red", font=f)
    if not bars:
        draw.text((x0 + 10, y0 + 20), "not measured", fill="gray", font=f)
        return
    slot = (W - PAD - x0) / len(bars)
    for i, (label, value, note) in enumerate(bars):
        bx = x0 + i * slot + slot * 0.2
        bw = slot * 0.6
        by = y1 - h * min(value, vmax) / vmax
        color = "#2e7d32" if value <= 1.0 else "#c62828"
        draw.rectangle((bx, by, bx + bw, y1), fill=color)
        draw.text((bx, by - 16), note, fill="black", font=f)
        draw.text((bx, y1 + 6), label, fill="black", font=f)


def write_png(path: Path, panels: list[tuple[str, list[tuple[str, float, str]]]]) -> Path:
    """Draw ``panels`` (title, bars) one under the other and save a PNG at ``path``."""
    img = Image.new("RGB", (W, PANEL_H * len(panels) + 20), "white")
    draw = ImageDraw.Draw(img)
    for i, (title, bars) in enumerate(panels):
        _panel(draw, 10 + i * PANEL_H, title, bars)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
