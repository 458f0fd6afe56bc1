"""The login QR code, for a terminal and as a PNG (served at ``/gateway/qr.png``)."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage


def _code(payload: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=2)
    code.add_data(payload)
    code.make(fit=True)
    return code


def terminal_qr(payload: str) -> str:
    """The code drawn with block characters; phones scan it from a dark or light terminal."""
    out = io.StringIO()
    _code(payload).print_ascii(out=out, invert=True)
    return out.getvalue()


def png_qr(payload: str, box_size: int = 8) -> bytes:
    """The code as a PNG image."""
    code = _code(payload)
    code.box_size = box_size
    image = code.make_image(image_factory=PyPNGImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()
