"""realesr.schema, the one range vocabulary of config keys, options and state files: its rules on their edges."""

from __future__ import annotations

import pytest

from realesr.schema import INT_LIMIT, SEED, Float, Int, Invalid, Map, Name, Record, Seq, Str


def test_integer_bounds_are_inclusive_and_present_by_default():
    assert Int(0, 5).check(0) == 0 and Int(0, 5).check(5) == 5 and Int(0, 5).check(3.0) == 3
    for bad in (-1, 6, 2.5, True, "3", None, float("inf")):
        with pytest.raises(Invalid):
            Int(0, 5).check(bad)
    assert Int().check(INT_LIMIT) == INT_LIMIT
    with pytest.raises(Invalid, match="-9007199254740992..9007199254740992"):
        Int().check(2**70)
    assert Int(text=True).check(" 12 ") == 12 and SEED.check(2**32 - 1) == 2**32 - 1
    with pytest.raises(Invalid):
        SEED.check(2**32)


def test_floats_are_finite_and_bounded_unless_a_log_says_otherwise():
    assert Float(above=0).check("1e-4") == 1e-4  # PyYAML's reading of 1e-4
    for bad in (float("nan"), float("inf"), 1e300, 0, "x", True):
        with pytest.raises(Invalid):
            Float(above=0).check(bad)
    assert Float(0, 1).check(1) == 1.0 and Float(low=0, below=1).describe() == "a finite number >= 0 and < 1"
    nan = Float(finite=False).check(float("nan"))
    assert nan != nan and Float(finite=False).check(float("-inf")) == float("-inf")


def test_a_name_is_one_usable_file_name():
    assert Name().check("run-1") == "run-1" and Name().check("é" * 127) == "é" * 127  # 254 bytes
    assert Name(empty=True).check("") == ""
    for bad in ("", ".", "..", "a/b", "a\x00b", "a\nb", "a\x1bb", "é" * 128, "x" * 256, "a\udcffb"):
        with pytest.raises(Invalid):
            Name().check(bad)
    with pytest.raises(Invalid, match="at most 231 bytes"):
        Name(reserve=24).check("x" * 240)
    with pytest.raises(Invalid, match="NUL"):
        Str().check("path\x00")


def test_places_inside_a_value_are_named():
    shape = Record(
        {"a": Seq(Record({"b": Int(0)}), max_len=2), "m": Map(Float())}, required=frozenset({"a"}), closed=True
    )
    cases = {
        "a[1].b": {"a": [{"b": 1}, {"b": -1}]},
        "a": {"a": [{}, {}, {}]},
        "m.x": {"a": [], "m": {"x": "y"}},
        "z": {"a": [], "z": 1},
    }
    for where, value in cases.items():
        with pytest.raises(Invalid) as err:
            shape.check(value, "")
        assert err.value.where == where, (where, err.value)
    with pytest.raises(Invalid) as err:
        shape.check({}, "top")
    assert err.value.where == "top.a" and err.value.why == "is missing"
