"""Config dataclasses: defaults, validation messages, dict round trips, strategy -> adapter."""

import json

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
    with pytest.raises(ValueError, match="unknown keys"):
        BackboneConfig.from_dict({"vocab_size": 10, "embeding_dim": 3})


def test_strategy_decides_the_adapter():
    base = AdapterConfig(kind="iak", placement="parallel", bottleneck=3)
    assert TaskConfig("t", strategy="peterrec-serial", adapter=base).effective_adapter() == AdapterConfig(
        "patch", "serial", 3)
    assert TaskConfig("t", strategy="peterrec-parallel", adapter=base).effective_adapter().placement == "parallel"
    assert TaskConfig("t", strategy="iak").effective_adapter().kind == "iak"
    assert TaskConfig("t", strategy="peter-zero", adapter=base).effective_adapter() == base
    assert base.kind == "iak"                 # the task's own config is not modified
    assert TaskConfig("t", strategy="peterrec+items", adapter=base).effective_adapter() == AdapterConfig(
        "patch", "serial", 3)
    assert [TaskConfig("t", strategy=s).uses_adapters for s in STRATEGIES] == [
        True, True, True, False, False, False, True, True]
