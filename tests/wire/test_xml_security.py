"""Hostile and broken files: every one is refused as a whole with XmlRejected, quickly and without side effects."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from promoflow.wire.xml import MAX_RECORD_BYTES, Record, XmlRejected, check_file, read_file, read_redemptions
from promoflow.wire.xml._parser import hardened_iterparse
from tests.wire._samples import GUID

RECORD = (
    f"<redemption><couponId>{GUID}</couponId><redeemedOn>2024-05-01T14:03:00+02:00</redeemedOn></redemption>"
)

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<promotionRedemptions><redemption><couponId>&lol9;</couponId></redemption></promotionRedemptions>"
)

QUADRATIC = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
    + "x" * 50_000
    + '">]><promotionRedemptions><redemption><couponId>'
    + "&a;" * 50_000
    + "</couponId></redemption></promotionRedemptions>"
)


@pytest.fixture
def listener() -> Iterator[tuple[int, socket.socket]]:
    """A local TCP port that records whether anybody connected: the parser must never fetch anything."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    yield server.getsockname()[1], server
    server.close()


def assert_nobody_connected(server: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        server.accept()


def rejected(data: str | bytes) -> XmlRejected:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(XmlRejected) as info:
        list(read_redemptions(raw))
    return info.value


@pytest.mark.parametrize("data", [BILLION_LAUGHS, QUADRATIC], ids=["billion-laughs", "quadratic-blowup"])
def test_entity_expansion_attacks_are_refused_at_once(data: str) -> None:
    started = time.perf_counter()
    error = rejected(data)
    assert "DOCTYPE" in error.reason
    assert time.perf_counter() - started < 1


def test_external_file_entity_is_refused_and_nothing_is_read() -> None:
    data = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<promotionRedemptions><redemption><couponId>&x;</couponId></redemption></promotionRedemptions>"
    )
    error = rejected(data)
    assert "DOCTYPE" in error.reason
    assert "root:" not in str(error)


def test_external_http_entity_is_refused_without_a_connection(listener: tuple[int, socket.socket]) -> None:
    port, server = listener
    data = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'
        "<promotionRedemptions><redemption><couponId>&x;</couponId></redemption></promotionRedemptions>"
    )
    assert "DOCTYPE" in rejected(data).reason
    assert_nobody_connected(server)


def test_external_dtd_is_refused_without_a_connection(listener: tuple[int, socket.socket]) -> None:
    port, server = listener
    data = f'<!DOCTYPE promotionRedemptions SYSTEM "http://127.0.0.1:{port}/x.dtd"><promotionRedemptions/>'
    assert "DOCTYPE" in rejected(data).reason
    assert_nobody_connected(server)


def test_parameter_entity_is_refused() -> None:
    data = '<!DOCTYPE r [<!ENTITY % x SYSTEM "file:///etc/passwd"> %x;]><promotionRedemptions/>'
    assert "DOCTYPE" in rejected(data).reason


def test_harmless_internal_dtd_is_refused_too() -> None:
    error = rejected("<?xml version='1.0'?>\n\n<!DOCTYPE promotionRedemptions><promotionRedemptions/>")
    assert error.reason == "DOCTYPE and entity declarations are not allowed"
    assert error.line == 3


def test_doctype_after_a_long_prolog_is_caught_by_the_parser_check(
    listener: tuple[int, socket.socket],
) -> None:
    # The byte scan only looks at the first 64 KiB; libxml2's own report of a DOCTYPE is the second line of defence.
    port, server = listener
    data = (
        "<!--" + "x" * 100_000 + "-->"
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'
        f"<promotionRedemptions>{RECORD}<redemption><couponId>&x;</couponId></redemption></promotionRedemptions>"
    )
    assert "DOCTYPE" in rejected(data).reason
    assert_nobody_connected(server)


def test_utf16_doctype_is_refused() -> None:
    data = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><promotionRedemptions/>'
    ).encode("utf-16")
    assert "DOCTYPE" in rejected(data).reason


def test_undeclared_entity_is_not_well_formed() -> None:
    error = rejected(
        f"<promotionRedemptions>\n{RECORD}\n<redemption><couponId>&x;</couponId></redemption>\n</promotionRedemptions>"
    )
    assert error.reason == "not well-formed: Entity 'x' not defined"
    assert error.line == 3


def test_not_well_formed_gives_the_parser_message_and_line() -> None:
    data = f"<promotionRedemptions>\n{RECORD}\n<redemption><couponId>x</redemption>\n</promotionRedemptions>"
    error = rejected(data)
    assert error.reason.startswith("not well-formed: Opening and ending tag mismatch: couponId")
    assert error.line == 3


def test_truncated_file_is_rejected_after_the_records_before_the_fault() -> None:
    data = f"<promotionRedemptions>{RECORD}{RECORD}<redemption><couponId>".encode()
    reader = read_redemptions(data)
    assert isinstance(next(reader), Record)
    assert isinstance(next(reader), Record)
    with pytest.raises(XmlRejected, match="not well-formed"):
        next(reader)
    # check_file finds the same fault before anything is applied.
    with pytest.raises(XmlRejected, match="not well-formed"):
        check_file("redemptions", data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the document is empty"),
        (b"   \n", "not well-formed"),
        (b"just text", "not well-formed"),
        (b"<a>\xff</a>", "not well-formed"),
        (b"<promotionRedemptions/><promotionRedemptions/>", "Extra content"),
        (b"<promotionRedemptions>\x00</promotionRedemptions>", "not well-formed"),
    ],
)
def test_broken_bytes_are_rejected(data: bytes, reason: str) -> None:
    assert reason in rejected(data).reason


def test_excessive_depth_is_rejected() -> None:
    data = (
        "<promotionRedemptions><redemption>"
        + "<a>" * 300
        + "</a>" * 300
        + "</redemption></promotionRedemptions>"
    )
    assert "depth" in rejected(data).reason


def test_wrong_root_is_rejected_before_any_record() -> None:
    error = rejected(f"<redemptions>{RECORD}</redemptions>")
    assert error.reason == "root element must be <promotionRedemptions>, found <redemptions>"


def test_wrong_root_namespace_is_rejected() -> None:
    error = rejected(f'<promotionRedemptions xmlns="urn:other">{RECORD}</promotionRedemptions>')
    assert "namespace 'urn:other'" in error.reason


def test_text_between_records_is_rejected() -> None:
    with pytest.raises(XmlRejected, match="text 'oops' is not allowed"):
        list(read_redemptions(f"<promotionRedemptions>{RECORD}oops{RECORD}</promotionRedemptions>".encode()))
    with pytest.raises(XmlRejected, match="text 'oops' is not allowed"):
        list(read_redemptions(f"<promotionRedemptions>oops{RECORD}</promotionRedemptions>".encode()))
    with pytest.raises(XmlRejected, match="text 'oops' is not allowed"):
        list(read_redemptions(f"<promotionRedemptions>{RECORD}oops</promotionRedemptions>".encode()))


def test_a_record_too_large_for_memory_is_rejected() -> None:
    huge = "<redemption>" + "<x>y</x>" * 200_000 + "</redemption>"
    data = f"<promotionRedemptions>{RECORD}{huge}</promotionRedemptions>".encode()
    with pytest.raises(XmlRejected, match="larger than 65536 bytes"):
        list(read_file("redemptions", data, max_record_bytes=65536))
    assert MAX_RECORD_BYTES >= 16 * 1024 * 1024  # the default leaves room for a 5,000-line receipt


def test_the_parser_factory_has_the_hardened_options() -> None:
    parser = hardened_iterparse(__import__("io").BytesIO(b"<a/>"))
    events = list(parser)
    assert [element.tag for _, element in events] == ["a"]
