"""The one credentials type."""

from __future__ import annotations

from swapper.credentials import Credentials


def test_no_secret_appears_in_the_repr() -> None:
    text = repr(Credentials("alice", "hunter2", "tok-3", source="team/pull"))
    assert "alice" not in text and "hunter2" not in text and "tok-3" not in text
    assert "team/pull" in text


def test_an_identity_token_is_sent_in_place_of_a_missing_password() -> None:
    assert Credentials("alice", identity_token="tok").secret == "tok"
    assert Credentials("alice", "pw", "tok").secret == "pw"


def test_the_fingerprint_tells_credentials_apart_without_holding_them() -> None:
    one = Credentials("alice", "pw").fingerprint()
    assert one == Credentials("alice", "pw", source="elsewhere").fingerprint()
    assert one != Credentials("alice", "pw2").fingerprint()
    assert "pw" not in one and len(one) == 64


def test_no_field_set_means_anonymous() -> None:
    assert Credentials().anonymous
    assert not Credentials(identity_token="tok").anonymous
