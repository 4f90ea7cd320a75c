"""The signature contract: kinds, contract checks, the tasks metadata file, padding."""

import json

import pytest

from peterrec.serving import signatures as sig

ITEMS_IN = {"items": ("string", (-1, -1))}
CLASSIFICATION_OUT = {"probabilities": ("float32", (-1, 3)), "label": ("string", (-1,)),
                      "label_id": ("int64", (-1,)), "classes": ("string", (-1, 3))}
TOP_K_OUT = {"items": ("string", (-1, 100)), "scores": ("float32", (-1, 100))}


def test_kinds_from_names_and_outputs():
    assert sig.signature_kind("genre", CLASSIFICATION_OUT) == sig.KIND_CLASSIFICATION
    assert sig.signature_kind("shop", TOP_K_OUT) == sig.KIND_COLD_START
    assert sig.signature_kind("next_items", TOP_K_OUT) == sig.KIND_NEXT_ITEMS
    assert sig.signature_kind("embed", {"embedding": None}) == sig.KIND_EMBED
    assert sig.signature_kind("embed", TOP_K_OUT) is None
    assert sig.signature_kind("x", {"logits": None}) is None


def test_contract_checks_accept_the_contract_and_name_each_departure():
    assert sig.contract_problems("genre", ITEMS_IN, CLASSIFICATION_OUT) == []
    assert sig.contract_problems("shop", ITEMS_IN, TOP_K_OUT) == []
    assert sig.contract_problems("embed", ITEMS_IN, {"embedding": ("float32", (-1, 64))}) == []
    problems = sig.contract_problems("shop", {"items": ("int64", (-1, -1))}, TOP_K_OUT)
    assert problems and "input 'items'" in problems[0]
    problems = sig.contract_problems("shop", ITEMS_IN, {"items": ("string", (-1,)), "scores": ("float32", (-1, 9))})
    assert problems and "output 'items'" in problems[0]
    assert "expected" in sig.contract_problems("genre", ITEMS_IN, {"logits": ("float32", (-1, 3))})[0]
    assert "takes inputs" in sig.contract_problems("genre", {}, CLASSIFICATION_OUT)[0]


def test_task_names():
    assert sig.validate_task_name("genre-2") == "genre-2"
    for bad in ("", "2x", "a b", "embed", "next_items", "x" * 65):
        with pytest.raises(ValueError):
            sig.validate_task_name(bad)


def test_tasks_metadata_round_trip(tmp_path):
    tasks = {
        "genre": sig.task_entry(sig.KIND_CLASSIFICATION, labels=["a", "b"], strategy="peterrec-serial"),
        "shop": sig.task_entry(sig.KIND_COLD_START, top_k=100),
        "embed": sig.task_entry(sig.KIND_EMBED, dim=64),
    }
    path = sig.write_tasks_metadata(str(tmp_path), tasks, backbone_fingerprint="abc")
    assert path.endswith("assets.extra/peterrec_tasks.json")
    document = sig.read_tasks_metadata(str(tmp_path))
    assert document["tasks"] == tasks and document["backbone_fingerprint"] == "abc"
    assert sig.read_tasks_metadata(str(tmp_path / "none"))["tasks"] == {}
    with open(path, "w") as handle:
        json.dump({"format_version": 99, "tasks": {}}, handle)
    with pytest.raises(ValueError, match="format_version"):
        sig.read_tasks_metadata(str(tmp_path))


def test_bad_task_entries():
    with pytest.raises(ValueError, match="labels"):
        sig.task_entry(sig.KIND_CLASSIFICATION)
    with pytest.raises(ValueError, match="kind"):
        sig.task_entry("regression")
    with pytest.raises(ValueError, match="top_k"):
        sig.task_entry(sig.KIND_COLD_START, top_k=0)
    with pytest.raises(ValueError, match="kind"):
        sig.write_tasks_metadata("/nonexistent", {"genre": {"kind": "nope"}})


def test_pad_item_rows():
    assert sig.pad_item_rows([["a", "b"], ["c"], []]) == [["a", "b"], ["c", ""], ["", ""]]
    assert sig.pad_item_rows([[1, 2]]) == [["1", "2"]]
