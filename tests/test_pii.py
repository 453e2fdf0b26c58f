"""Masking of 身份证号, phone and bank-card numbers (connectors/pii.py), as logs and statistics use it."""

from __future__ import annotations

import io
import logging

import pytest

from connectors.pii import MaskingFilter, mask, mask_any


@pytest.mark.parametrize(("text", "hidden", "kept"), [
    ("身份证号110101199003071234丢了", "19900307", "110***********1234"),
    ("旧证11010119900307X号", None, "11010119900307X"),  # not an ID (14 digits + X): untouched
    ("身份证11010119900307123X", "199003071", "110***********123X"),
    ("电话13812345678", "1234", "138****5678"),
    ("电话 +86 138 1234 5678", "1234 5", "+86 138****5678"),
    ("卡号6222021234567890123", "0212345678", "6222"),
    ("卡号 6222 0212 3456 7890", "0212 3456", "6222 **** ****"),
    ("订单号 2025112612345678901234567", None, "2025112612345678901234567"),  # too long for any of them
    ("预约编号 20251126", None, "20251126"),
])
def test_mask(text: str, hidden: str | None, kept: str) -> None:
    masked = mask(text)
    assert kept in masked
    if hidden is not None:
        assert hidden not in masked, masked


def test_mask_any_walks_json_values() -> None:
    assert mask_any({"a": ["电话13812345678", 3], "b": None}) == {"a": ["电话138****5678", 3], "b": None}


def test_logging_filter_masks_message_and_arguments() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("govbot.test-pii")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("citizen 13812345678 said %s (%d)", "我的身份证110101199003071234", 7)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "13812345678" not in line and "110101199003071234" not in line
    assert "138****5678" in line and "110***********1234" in line and "(7)" in line
