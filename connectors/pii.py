"""Masking of personal numbers (身份证号, mobile phone, bank card) for logs, metrics, statistics and the audit log.

The clerk handling a ticket sees the original text; everything that is kept for analysis or leaves the desk sees
the masked form. Digits are matched only as whole runs so order numbers inside longer runs are not cut apart."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

# 18-digit ID (last may be X) or the old 15-digit one; bank cards 16-19 digits (spaces/dashes in groups of 4 allowed);
# mainland mobile numbers 1[3-9]x, optionally with +86.
_ID = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{5})(\d{8}|\d{6})(\d{3}[0-9Xx]|\d{1})(?![0-9A-Za-z])")
_CARD = re.compile(r"(?<!\d)(\d{4})((?:[ -]?\d){8,11})([ -]?\d{4})(?!\d)")
_PHONE = re.compile(r"(?<!\d)((?:\+?86[ -]?)?1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")


def _mask_id(m: re.Match[str]) -> str:
    whole = m.group(0)
    if len(whole) not in (15, 18):
        return whole
    return whole[:3] + "*" * (len(whole) - 7) + whole[-4:]


def _mask_card(m: re.Match[str]) -> str:
    whole = m.group(0)
    digits = sum(c.isdigit() for c in whole)
    if not 16 <= digits <= 19:
        return whole
    return m.group(1) + re.sub(r"\d", "*", m.group(2)) + m.group(3)


def mask(text: str) -> str:
    """Mask every 身份证号, bank-card and phone number in `text`."""
    if not text:
        return text
    if any("\uff10" <= c <= "\uff19" for c in text):  # full-width digits (１３８…) count as digits too
        text = unicodedata.normalize("NFKC", text)
    text = _ID.sub(_mask_id, text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def mask_any(value: Any) -> Any:
    """Mask strings inside JSON-like values (audit details, statistics)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_any(v) for v in value]
    return value


class MaskingFilter(logging.Filter):
    """A logging filter (put on handlers) that masks the message and its string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:  # tracebacks quote values (e.g. SQL parameters)
            record.exc_text = mask(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True

    @staticmethod
    def _arg(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value)
        if isinstance(value, BaseException):
            return mask(str(value))
        return value


_FORMATTER = logging.Formatter()
