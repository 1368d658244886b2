"""Reading QR codes back the way a scanner would: OpenCV's detectors (opencv-python-headless, a
test dependency; no system library needed)."""

from __future__ import annotations

import numpy as np
import pytest


def decode_qr(png: bytes) -> str:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (a test dependency) decodes the QR codes")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
        text, _, _ = detector.detectAndDecode(image)
        if text:
            return text
    raise AssertionError("no QR code could be decoded")
