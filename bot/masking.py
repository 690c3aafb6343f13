"""How personal data and member codes are shown where a person reads them (previews, exports,
pages): enough to recognise, not enough to copy."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "—"
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def mask_code(code: str | None) -> str:
    """A member code with its middle hidden: 123456789012 -> 1234****9012."""
    if not code:
        return "—"
    return code[:4] + "****" + code[-4:] if len(code) >= 10 else "****"
