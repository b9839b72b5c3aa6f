"""Personal data never reaches the gap log."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoreply.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的手机13812345678", "我的手机[PHONE]"),
        ("call me at +86 138 1234 5678", "call me at [PHONE]"),
        ("phone +1 415-555-0132 now", "phone [PHONE] now"),
        ("mail li.wei@example.com", "mail [EMAIL]"),
        ("身份证11010519491231002X", "身份证[ID_NUMBER]"),
        ("card 4111 1111 1111 1111 declined", "card [CARD] declined"),
        ("卡号6222021234567890128", "卡号[CARD]"),
    ],
)
def test_personal_data_is_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["order 20261123 has 3 items", "订单号 1234567", "version 2.3.1", "price 1999 yuan"],
)
def test_ordinary_numbers_survive(text: str) -> None:
    assert redact(text) == text


def test_card_needs_a_valid_checksum() -> None:
    assert redact("ref 4111 1111 1111 1112") == "ref 4111 1111 1111 1112"


@given(st.text())
def test_redact_never_fails_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
