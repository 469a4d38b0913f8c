from __future__ import annotations

import pytest

from tracer.target.goversion import _parse_modinfo, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("go1.25.5", (1, 25, 5)),
        ("go1.19", (1, 19, 0)),
        ("go1.21rc2", (1, 21, 0)),
        ("go1.24.11 X:boringcrypto", (1, 24, 11)),
        ("devel go1.26-abcdef Mon Jan 1", (1, 26, 0)),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    version = parse_version(text)
    assert version is not None
    assert (version.major, version.minor, version.patch) == expected
    assert version.key == f"1.{expected[1]}"


def test_parse_version_rejects_non_versions() -> None:
    assert parse_version("gcc 12.2") is None


def test_modinfo_settings_and_sentinels() -> None:
    body = "path\texample.com/x\nmod\texample.com/x\t(devel)\t\nbuild\t-buildmode=pie\nbuild\tCGO_ENABLED=1\n"
    wrapped = "0" * 16 + body + "1" * 16
    settings, main_path = _parse_modinfo(wrapped)
    assert main_path == "example.com/x"
    assert settings == {"-buildmode": "pie", "CGO_ENABLED": "1"}
