"""A relay source's URL is checked at the edge: anything urllib cannot parse is a clear refusal
(schemathesis found ``http://]...`` ending in a 500 from ``POST /api/channels``)."""

from __future__ import annotations

import pytest

from broadcaster.live.probe import SourceError, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://]\u0095\u00c1x",
        "http://[::1",
        "https://[zz]/live",
        "ftp://vov.vn/live",
        "http:///x",
        "",
        "vov.vn",
    ],
)
def test_a_url_that_cannot_be_a_source_is_refused_in_vietnamese(url: str) -> None:
    with pytest.raises(SourceError) as err:
        check_url(url)
    assert "Địa chỉ nguồn phát" in str(err.value)


def test_a_good_url_is_kept_as_given_without_the_spaces() -> None:
    assert check_url("  https://[::1]:8000/vov1.m3u8 ") == "https://[::1]:8000/vov1.m3u8"
    assert check_url("http://radio.example.vn/live") == "http://radio.example.vn/live"
