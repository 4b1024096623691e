"""Client addresses (identity.addresses): IDENTITY_TRUSTED_PROXIES parsed, addresses read, what limits count by."""

from __future__ import annotations

import ipaddress

import pytest

from identity.addresses import TrustedProxies, counting_key, forwarded_client, parse_address, parse_trusted_proxies


def test_trusted_proxies_are_a_hop_count_or_a_list_of_networks():
    assert not parse_trusted_proxies(None) and not parse_trusted_proxies("") and not parse_trusted_proxies("0")
    assert parse_trusted_proxies("2") == TrustedProxies(hops=2)
    listed = parse_trusted_proxies(" 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32")
    assert [str(n) for n in listed.networks] == ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]
    assert str(listed) == "10.0.0.0/8,192.168.1.7/32,2001:db8::/32" and str(TrustedProxies()) == "none"


@pytest.mark.parametrize("text, reason", [
    ("proxy.example.org", "is not an address or network"),
    ("10.0.0.1/8", "has host bits set"),
    ("1,10.0.0.0/8", "is not an address or network"),
    ("10.0.0.0/8,", "is not an address or network"),
    ("0.0.0.0/0", "must not trust every address"),
    ("::/0", "must not trust every address"),
    ("99", "at most 16 hops"),
    ("-1", "is not an address or network"),
])
def test_bad_trusted_proxies_say_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_trusted_proxies(text)


@pytest.mark.parametrize("text, address", [
    ("203.0.113.7", "203.0.113.7"), (" 203.0.113.7 ", "203.0.113.7"), ("203.0.113.7:4711", "203.0.113.7"),
    ("2001:db8::1", "2001:db8::1"), ("[2001:db8::1]", "2001:db8::1"), ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("", None), ("unknown", None), ("_hidden", None), ("203.0.113.7:http", None), ("[2001:db8::1]x", None),
    ("203.0.113.256", None), ("1" * 100, None),
])
def test_addresses_are_read_as_servers_and_proxies_write_them(text, address):
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == address


def test_limits_count_ipv4_per_address_and_ipv6_per_64():
    assert counting_key("203.0.113.7") == "203.0.113.7"
    assert counting_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == counting_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert counting_key("2001:db8:1:3::1") != counting_key("2001:db8:1:2::1")
    assert counting_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert counting_key("") == "unknown" and counting_key("unix-socket") == "unix-socket"


def test_a_hop_count_takes_the_address_that_many_places_from_the_right():
    two = TrustedProxies(hops=2)
    assert forwarded_client("10.0.0.2", "192.0.2.1, 203.0.113.7, 10.0.0.9", two) == "203.0.113.7"
    assert forwarded_client("10.0.0.2", "10.0.0.9", two) is None  # fewer entries than hops: ignored
    assert forwarded_client("10.0.0.2", "garbage, 10.0.0.9", two) is None


def test_a_network_list_walks_right_to_left_from_a_trusted_peer():
    trusted = TrustedProxies(networks=(ipaddress.ip_network("10.0.0.0/8"),))
    assert forwarded_client("203.0.113.9", "192.0.2.1", trusted) is None  # untrusted peer: header ignored
    assert forwarded_client("10.0.0.2", "192.0.2.1, 203.0.113.7, 10.0.0.5", trusted) == "203.0.113.7"
    assert forwarded_client("10.0.0.2", "10.0.0.7, 10.0.0.5", trusted) == "10.0.0.7"  # started inside
    assert forwarded_client("10.0.0.2", "203.0.113.7, junk, 10.0.0.5", trusted) is None  # malformed: ignored
    assert forwarded_client("::ffff:10.0.0.2", "[2001:db8::7]:443", trusted) == "2001:db8::7"
    assert forwarded_client("10.0.0.2", " , ", trusted) is None
