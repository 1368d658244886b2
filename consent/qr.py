"""QR codes as PNG or SVG bytes (qrcode with Pillow, and qrcode's own SVG factory)."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


def _qr(text: str, box_size: int) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    return qr


def qr_png(text: str, box_size: int = 6) -> bytes:
    buffer = io.BytesIO()
    _qr(text, box_size).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def qr_image(text: str, box_size: int = 6):  # noqa: ANN201 - a PIL image, drawn onto the card
    return _qr(text, box_size).make_image().get_image()


def qr_svg(text: str, box_size: int = 10) -> bytes:
    """A standalone ``<svg>`` (path-based, one element) for embedding in a card."""
    image = _qr(text, box_size).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode").encode()
