"""Remove personal data from text before it is stored as an FAQ gap or shown in a report.

E-mail addresses, Chinese resident ID numbers, bank-card numbers (Luhn-checked), and phone
numbers (Chinese mobiles, +country numbers, common local formats) become [EMAIL], [ID_NUMBER],
[CARD], [PHONE]. Pure functions.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# 18-digit resident ID: 6-digit area, YYYYMMDD birth date, 3 digits, check digit or X.
_CN_ID = re.compile(
    r"(?<!\d)[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?!\d)"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_CN_MOBILE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
# International (+country) numbers, US-style 415-555-0132 / (415) 555-0132, Chinese
# landlines 010-12345678. Bare digit groups separated by spaces are too ambiguous (order and
# card numbers look the same), so they need a + or a dash to count as a phone number.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,3}"
    r"|\(?\d{3}\)?[ .-]?\d{3}-\d{4}"
    r"|0\d{2,3}-\d{7,8}"
    r")(?!\d)"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _valid_cn_id(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _cn_id(match: re.Match[str]) -> str:
    return "[ID_NUMBER]" if _valid_cn_id(match.group(0)) else match.group(0)


def redact(text: str) -> str:
    """The text with personal data replaced by placeholders.

    >>> redact("我的手机13812345678，邮箱 li.wei@example.com")
    '我的手机[PHONE]，邮箱 [EMAIL]'
    """
    text = _EMAIL.sub("[EMAIL]", text)
    text = _CN_ID.sub(_cn_id, text)
    text = _CN_MOBILE.sub("[PHONE]", text)
    text = _PHONE.sub("[PHONE]", text)
    text = _CARD.sub(_card, text)
    return text
