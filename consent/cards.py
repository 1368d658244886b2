"""Health cards: the holder's details and a QR code whose JSON is the ABHA card payload plus ``sig``,
a detached JWS (RFC 7515 appendix F) by the server's key over the canonical JSON of the other fields.
A scanner verifies it offline with ``/.well-known/jwks.json``; changing any field breaks it.

Rendered as PNG (Pillow), SVG (qrcode's SVG path factory inside a hand-laid card) and PDF (fpdf2).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import orjson
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from consent.health_id import HealthId
from consent.keys import KeyRing, canonical_json, verify_detached
from consent.qr import qr_image, qr_png, qr_svg
from mappings.abha_qr import format_dob, write_payload

CARD_TYPE = "abha-card+jws"
SIGNATURE_FIELD = "sig"
FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
TITLE = "Health ID Card"
_GENDER_LABEL = {"male": "Male", "female": "Female", "other": "Other", "unknown": "Unknown"}


@dataclass(frozen=True, slots=True)
class CardHolder:
    health_id: HealthId
    name: str
    address: str | None
    gender: str | None  # FHIR code
    birth_date: str | None  # FHIR date
    facility: str | None  # the issuing facility's name

    def lines(self) -> list[tuple[str, str]]:
        return [("Name", self.name), ("ABHA address", self.address or "-"),
                ("Date of birth", format_dob(self.birth_date) if self.birth_date else "-"),
                ("Gender", _GENDER_LABEL.get(self.gender or "", "-")), ("Issued by", self.facility or "-")]


def signed_payload(holder: CardHolder, keys: KeyRing) -> dict[str, Any]:
    payload = write_payload(health_id=holder.health_id.formatted, address=holder.address, name=holder.name,
                            gender=holder.gender, birth_date=holder.birth_date)
    payload[SIGNATURE_FIELD] = keys.sign_detached(canonical_json(payload), typ=CARD_TYPE)
    return payload


def verify_payload(payload: dict[str, Any], jwks: dict[str, Any]) -> bool:
    """Whether a scanned payload carries a valid signature by a key in ``jwks``."""
    signature = payload.get(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        return False
    rest = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    return verify_detached(canonical_json(rest), signature, jwks, typ=CARD_TYPE)


def render(holder: CardHolder, keys: KeyRing, fmt: str) -> bytes:
    qr_text = orjson.dumps(signed_payload(holder, keys)).decode()
    return {"png": _png, "svg": _svg, "pdf": _pdf}[fmt](holder, qr_text)


# --- PNG -------------------------------------------------------------------------------------------

_W, _H = 1400, 860  # ID-1 card proportions (85.6 x 54 mm)
_ACCENT = (11, 83, 148)


def _png(holder: CardHolder, qr_text: str) -> bytes:
    card = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default

    draw.rectangle((0, 0, _W, 110), fill=_ACCENT)
    draw.text((40, 30), TITLE, fill="white", font=font(size=48))
    draw.text((40, 150), "Health ID number", fill=(90, 90, 90), font=font(size=28))
    draw.text((40, 185), holder.health_id.formatted, fill="black", font=font(size=58))
    y = 290
    for label, value in holder.lines():
        draw.text((40, y), label, fill=(90, 90, 90), font=font(size=26))
        draw.text((40, y + 30), value[:40], fill="black", font=font(size=36))
        y += 100
    qr = qr_image(qr_text, box_size=6)
    side = min(_H - 150, 640)
    qr = qr.convert("RGB").resize((side, side), Image.NEAREST) if qr.size[0] > side else qr.convert("RGB")
    card.paste(qr, (_W - qr.size[0] - 30, 130))
    buffer = io.BytesIO()
    card.save(buffer, format="PNG")
    return buffer.getvalue()


# --- SVG -------------------------------------------------------------------------------------------

_SVG_ROOT = re.compile(r'^<svg[^>]*?(viewBox="[^"]*")[^>]*>')


def _svg(holder: CardHolder, qr_text: str) -> bytes:
    qr = qr_svg(qr_text).decode()
    qr = qr[qr.index("<svg"):]
    qr = _SVG_ROOT.sub(lambda m: f'<svg x="540" y="95" width="300" height="300" {m.group(1)}>', qr, count=1)
    rows = []
    y = 190
    for label, value in holder.lines():
        rows.append(f'<text x="24" y="{y}" font-size="13" fill="#5a5a5a">{escape(label)}</text>'
                    f'<text x="24" y="{y + 18}" font-size="18">{escape(value)}</text>')
        y += 46
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<svg xmlns="http://www.w3.org/2000/svg" width="85.6mm" height="54mm" viewBox="0 0 856 540" '
        'font-family="Helvetica, Arial, sans-serif">'
        '<rect width="856" height="540" rx="24" fill="#fff" stroke="#0b5394" stroke-width="2"/>'
        '<rect width="856" height="70" rx="24" fill="#0b5394"/><rect y="46" width="856" height="24" fill="#0b5394"/>'
        f'<text x="24" y="46" font-size="28" fill="#fff">{TITLE}</text>'
        '<text x="24" y="108" font-size="13" fill="#5a5a5a">Health ID number</text>'
        f'<text x="24" y="142" font-size="32" font-weight="bold">{escape(holder.health_id.formatted)}</text>'
        f'{"".join(rows)}{qr}</svg>'
    ).encode()


# --- PDF -------------------------------------------------------------------------------------------

def _latin1(text: str) -> str:
    """The PDF core fonts cover Latin-1; other characters print as '?' rather than fail."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _pdf(holder: CardHolder, qr_text: str) -> bytes:
    pdf = FPDF(orientation="L", unit="mm", format=(54, 85.6))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.add_page()
    pdf.set_title(TITLE)
    pdf.set_fill_color(*_ACCENT)
    pdf.rect(0, 0, 85.6, 8, style="F")
    pdf.set_text_color(255, 255, 255)
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_xy(3, 1.5)
    pdf.cell(text=TITLE)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 5)
    pdf.set_xy(3, 10)
    pdf.cell(text="Health ID number")
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_xy(3, 12.5)
    pdf.cell(text=holder.health_id.formatted)
    y = 19.0
    for label, value in holder.lines():
        pdf.set_font("Helvetica", "", 4.5)
        pdf.set_text_color(90, 90, 90)
        pdf.set_xy(3, y)
        pdf.cell(text=label)
        pdf.set_font("Helvetica", "", 6.5)
        pdf.set_text_color(0, 0, 0)
        pdf.set_xy(3, y + 2)
        pdf.cell(w=48, text=_latin1(value[:40]))
        y += 6.6
    pdf.image(io.BytesIO(qr_png(qr_text, box_size=8)), x=51.5, y=12, w=32, h=32)
    return bytes(pdf.output())
