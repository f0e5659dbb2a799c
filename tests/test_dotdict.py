import pickle

import pytest

from cpppo import dotdict


def test_dotted_keys_create_layers_readable_as_attributes():
    d = dotdict()
    d["enip.CIP.send_data.interface"] = 0
    d.enip.status = 0
    assert d.enip.CIP.send_data.interface == 0
    assert isinstance(d.enip.CIP, dotdict)
    assert d["enip.status"] == 0
    assert sorted(d) == ["enip.CIP.send_data.interface", "enip.status"]


def test_items_flatten_lists_of_dotdicts_with_indexes():
    d = dotdict()
    d["CPF.count"] = 2
    d["CPF.item"] = [dotdict(type_id=0, length=0), dotdict(type_id=178, length=4)]
    assert dict(d.items()) == {
        "CPF.count": 2,
        "CPF.item[0].type_id": 0, "CPF.item[0].length": 0,
        "CPF.item[1].type_id": 178, "CPF.item[1].length": 4,
    }
    assert d["CPF.item[1].type_id"] == 178
    d["CPF.item[1].length"] = 6
    assert d.CPF.item[1].length == 6
    assert d["CPF.item[-1].length"] == 6


def test_nested_plain_dicts_become_dotdicts():
    d = dotdict({"a": {"b": {"c": 1}}}, x=2)
    assert d.a.b.c == 1 and d.x == 2
    assert isinstance(d["a.b"], dotdict)


def test_partial_keys_are_contained_and_setdefault_keeps_layers():
    d = dotdict()
    d["a.b.c"] = 1
    assert "a" in d and "a.b" in d and "a.b.c" in d
    assert "a.x" not in d and "nope" not in d
    assert d.setdefault("a.b", "lost") == dotdict(c=1)
    assert d.setdefault("a.z", 5) == 5 and d.a.z == 5


def test_backtracking_with_double_dots():
    d = dotdict()
    d["a.b"] = 1
    assert d["a.x..b"] == 1
    assert d["a.x.y...b"] == 1
    assert d[".a.b"] == 1


def test_missing_keys_raise_key_and_attribute_errors():
    d = dotdict(a=1)
    with pytest.raises(KeyError):
        d["b"]
    with pytest.raises(AttributeError):
        d.b  # noqa: B018
    with pytest.raises(KeyError):
        d["a.b"]  # 1 is not a layer
    assert d.get("a.b") is None and d.get("b", 7) == 7
    assert not hasattr(d, "zzz")


def test_delete_and_pop():
    d = dotdict()
    d["a.b"] = 1
    d["a.c"] = 2
    with pytest.raises(KeyError, match="partial key"):
        del d["a"]
    del d["a.b"]
    assert list(d) == ["a.c"]
    assert d.pop("a.c") == 2
    assert d.pop("a.q", None) is None
    assert d.pop("zz.q", 3) == 3


def test_pickle_and_copy_round_trip():
    d = dotdict()
    d["x.y"] = [1, 2]
    assert pickle.loads(pickle.dumps(d)) == d
    c = d.copy()
    assert c == d and isinstance(c, dotdict)


def test_empty_segments_are_rejected():
    d = dotdict()
    with pytest.raises(KeyError):
        d[""] = 1
    with pytest.raises(KeyError):
        d["..."] = 1
