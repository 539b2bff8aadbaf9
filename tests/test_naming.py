"""Name rules, checked against an independent statement of RFC 1035 labels over generated input."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from portal.services.naming import MAX_APPLICATION, label_errors

RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
name_like = st.text(alphabet=st.sampled_from("abcxyz019-_.A Zé/"), max_size=50)


@settings(max_examples=2000)
@given(name_like)
def test_a_name_is_accepted_exactly_when_it_is_a_short_rfc1035_label(value):
    errors = label_errors(value, MAX_APPLICATION)
    valid = bool(RFC1035.fullmatch(value)) and len(value) <= MAX_APPLICATION
    assert (errors == []) == valid
    assert all(e.endswith(".") for e in errors)  # every error is a full sentence for the user


@settings(max_examples=500)
@given(st.from_regex(RFC1035, fullmatch=True).filter(lambda v: len(v) <= MAX_APPLICATION))
def test_every_valid_label_is_accepted(value):
    assert label_errors(value, MAX_APPLICATION) == []


def test_messages_say_what_is_wrong():
    assert label_errors("My_App", 40) == [
        "Only lowercase letters, digits and '-' are allowed; found 'M', '_', 'A' (use lowercase)."
    ]
    assert label_errors("-x-", 40) == ["Must start with a lowercase letter.", "Must end with a letter or a digit."]
