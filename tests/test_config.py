"""Config dataclasses: defaults, validation messages, dict round trips, strategy -> adapter."""

import json

import re

import pytest

from peterrec.trainer.config import (STRATEGIES, AdapterConfig, BackboneConfig, TaskConfig)


def test_backbone_defaults_and_block_layout():
    config = BackboneConfig(vocab_size=100).validate()
    assert config.embedding_dim == 64 and config.layer_norm_epsilon == 1e-8 and config.causal
    assert config.num_blocks == 4
    assert config.block_dilations == ((1, 2), (4, 8), (16, 32), (64, 128))
    assert config.receptive_field() == 1 + 2 * 255


def test_round_trips_through_json():
    backbone = BackboneConfig(vocab_size=50, dilations=[1, 2], causal=False)
    assert BackboneConfig.from_dict(json.loads(json.dumps(backbone.to_dict()))) == backbone
    task = TaskConfig("age", num_outputs=7, strategy="iak", adapter=AdapterConfig(bottleneck=4, iak_beta=0.1))
    again = TaskConfig.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again == task and isinstance(again.adapter, AdapterConfig)


@pytest.mark.parametrize("kwargs,message", [
    (dict(vocab_size=4), "vocab_size"),
    (dict(vocab_size=50, dilations=(1, 2, 4)), "even"),
    (dict(vocab_size=50, dilations=(1, 0)), "dilations"),
    (dict(vocab_size=50, causal=False, kernel_size=2), "odd kernel_size"),
    (dict(vocab_size=50, dropout=1.0), "dropout"),
    (dict(vocab_size=50, embedding_dim=0), "embedding_dim"),
])
def test_backbone_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**kwargs).validate()


@pytest.mark.parametrize("kwargs,message", [
    (dict(strategy="fine-some"), "strategy"),
    (dict(kind="ranking"), "task kind"),
    (dict(readout="first"), "readout"),
    (dict(fine_last_convs=3), "fine_last_convs"),
    (dict(num_outputs=1), "num_outputs"),
    (dict(adapter=AdapterConfig(placement="beside")), "placement"),
    (dict(adapter=AdapterConfig(kind="lora")), "adapter kind"),
    (dict(softmax="partial"), "softmax"),
])
def test_task_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TaskConfig("t", **kwargs).validate()


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown key"):
        BackboneConfig.from_dict({"vocab_size": 10, "embeding_dim": 3})


def test_strategy_fills_unset_adapter_fields_and_keeps_set_ones():
    unset = AdapterConfig(bottleneck=3)
    assert TaskConfig("t", strategy="peterrec-serial", adapter=unset).effective_adapter() == AdapterConfig(
        "patch", "serial", 3)
    assert TaskConfig("t", strategy="peterrec-parallel", adapter=unset).effective_adapter() == AdapterConfig(
        "patch", "parallel", 3)
    assert TaskConfig("t", strategy="iak", adapter=unset).effective_adapter() == AdapterConfig("iak", "serial", 3)
    assert TaskConfig("t", strategy="iak", adapter=AdapterConfig(placement="parallel")).effective_adapter(
    ).placement == "parallel"
    assert TaskConfig("t", strategy="peterrec+items", adapter=unset).effective_adapter() == AdapterConfig(
        "patch", "serial", 3)
    explicit = AdapterConfig(kind="iak", placement="parallel", bottleneck=3)
    assert TaskConfig("t", strategy="peter-zero", adapter=explicit).effective_adapter() == explicit
    assert TaskConfig("t", strategy="peter-zero", adapter=unset).effective_adapter() == AdapterConfig(
        "patch", "serial", 3)
    assert unset.kind is None and unset.placement is None      # the task's own config is not modified


@pytest.mark.parametrize("strategy, adapter, field", [
    ("peterrec-serial", AdapterConfig(placement="parallel"), "adapter.placement"),
    ("peterrec-parallel", AdapterConfig(placement="serial"), "adapter.placement"),
    ("peterrec+items", AdapterConfig(kind="iak"), "adapter.kind"),
    ("iak", AdapterConfig(kind="patch"), "adapter.kind"),
])
def test_an_adapter_field_that_contradicts_the_strategy_is_an_error(strategy, adapter, field):
    with pytest.raises(ValueError, match=f"{field} is .* but strategy '{re.escape(strategy)}' uses"):
        TaskConfig("t", strategy=strategy, adapter=adapter).validate()
    agreeing = TaskConfig("t", strategy=strategy, adapter=TaskConfig("t", strategy=strategy).effective_adapter())
    agreeing.validate()     # the strategy's own values, written out, are fine


def test_strategies_using_adapters():
    assert [TaskConfig("t", strategy=s).uses_adapters for s in STRATEGIES] == [
        True, True, True, False, False, False, True, True]


@pytest.mark.parametrize("data, message", [
    ({"name": "t", "adapter": {"bottleneck": "16"}}, r"TaskConfig.adapter.bottleneck: expected an integer, got '16'"),
    ({"name": "t", "num_outputs": 2.5}, r"TaskConfig.num_outputs: expected an integer, got 2.5"),
    ({"name": "t", "readout_norm": "yes"}, r"TaskConfig.readout_norm: expected true or false"),
    ({"kind": "classification"}, r"TaskConfig: missing required key\(s\) \['name'\]"),
])
def test_from_dict_checks_types_and_names_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        TaskConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"BackboneConfig.dilations\[1\]: expected an integer"):
        BackboneConfig.from_dict({"vocab_size": 10, "dilations": [1, "2"]})
