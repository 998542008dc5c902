"""Malformed XCom results fail with a message naming the file and the fix."""

from __future__ import annotations

import pytest

from kpo_async.errors import XComError
from kpo_async.xcom import parse_xcom


def test_json_values_parse() -> None:
    assert parse_xcom(b'{"return_value": "46"}\n') == {"return_value": "46"}
    assert parse_xcom(b"[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"{'single': 'quotes'}", "is not valid JSON"),
        (b"hello", "is not valid JSON"),
    ],
)
def test_bad_xcom_names_file_and_fix(raw: bytes, expected: str) -> None:
    with pytest.raises(XComError) as info:
        parse_xcom(raw)
    assert expected in str(info.value)
    assert "/airflow/xcom/return.json" in str(info.value)
    assert "Fix:" in str(info.value)
