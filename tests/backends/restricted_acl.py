"""The minimal Redis ACL of docs/security.md, shared by the security and conformance tests."""

from __future__ import annotations

from freshlink.testing import RedisServer

#: The minimal ACL, found empirically (start from nothing, add what ACL LOG reports denied).
#: docs/security.md shows the same line; test_the_documented_acl_is_the_tested_one checks it.
ACL_NAMESPACE = "app"
ACL_RULES = (
    "reset on >acl-test-password ~app:* &app:* "
    "+evalsha +script|load +info +ping +subscribe "
    "+get +set +mget +incr +del +append +pexpire +persist +pttl +publish"
)


def acl_url(server: RedisServer) -> str:
    """The URL of the restricted ``freshlink`` user on ``server``."""
    return f"redis://freshlink:acl-test-password@127.0.0.1:{server.port}/0"
