"""The client over gRPC and REST: recommend, classify, embed, next_items, metadata, status,
errors; and the ``peterrec serve`` / ``peterrec predict`` commands."""

import argparse
import json

import numpy as np
import pytest

from peterrec.serving import cli, errors, model_config, testing
from peterrec.serving.client import Classification, Client
from peterrec.serving.server import Server

ITEMS = ["i1", "i5", "i9"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("client") / "peterrec"
    return str(base), {1: testing.export_toy_model(str(base), 1, seed=3)}


@pytest.fixture(scope="module")
def server(models):
    base, _ = models
    entry = model_config.ModelEntry("peterrec", base, labels={"stable": 1})
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture(scope="module", params=["grpc", "rest"])
def client(request, server):
    target = server.rest_url if request.param == "rest" else server.grpc_target
    with Client(target, rest=request.param == "rest") as opened:
        yield opened


def _top(reference, k):
    return [(item.decode(), float(score)) for item, score in zip(reference["items"][0], reference["scores"][0])][:k]


def _assert_pairs(got, expected):
    assert [item for item, _ in got] == [item for item, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)


def test_recommend_slices_the_top_k(client, models):
    toy = models[1][1]
    _assert_pairs(client.recommend("shop", ITEMS, k=4), _top(toy.reference("shop", [ITEMS]), 4))
    assert len(client.recommend("shop", ITEMS, k=1000)) == toy.top_k  # K fixed at export


def test_next_items(client, models):
    toy = models[1][1]
    _assert_pairs(client.next_items(ITEMS, k=3), _top(toy.reference("next_items", [ITEMS]), 3))


def test_classify_one_and_a_batch(client, models):
    toy = models[1][1]
    answer = client.classify("genre", ITEMS)
    expected = toy.reference("genre", [ITEMS])
    assert isinstance(answer, Classification)
    assert answer.label == expected["label"][0].decode() and answer.label_id == int(expected["label_id"][0])
    np.testing.assert_allclose(list(answer.probabilities.values()), expected["probabilities"][0], rtol=1e-5)
    assert list(answer.probabilities) == ["action", "comedy", "drama"]
    batch = [ITEMS, ["i2"], ["i3", "i4"]]
    answers = client.classify("genre", batch)
    assert [a.label for a in answers] == [v.decode() for v in toy.reference("genre", batch)["label"]]


def test_embed_one_and_a_batch(client, models):
    toy = models[1][1]
    vector = client.embed(ITEMS)
    assert vector.shape == (8,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, toy.reference("embed", [ITEMS])["embedding"][0], atol=1e-5)
    batch = [ITEMS, ["i2"]]
    np.testing.assert_allclose(client.embed(batch), toy.reference("embed", batch)["embedding"], atol=1e-5)


def test_metadata_and_status(client):
    info = client.metadata()
    assert info["version"] == 1
    kinds = {name: signature["kind"] for name, signature in info["signatures"].items()}
    assert kinds == {"genre": "classification", "shop": "cold_start", "embed": "embed", "next_items": "next_items"}
    assert info["signatures"]["embed"]["outputs"]["embedding"] == {"dtype": "float32", "shape": [-1, 8]}
    assert client.status() == [{"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]


def test_errors_carry_the_server_status(client, server):
    with pytest.raises(errors.ServingError) as raised:
        client.recommend("no-such-task", ITEMS, k=3)
    # TF Serving's answer: FAILED_PRECONDITION over gRPC, 400 (read back as INVALID_ARGUMENT) over REST.
    expected = errors.INVALID_ARGUMENT if client.rest else errors.FAILED_PRECONDITION
    assert raised.value.code == expected and 'signature key "no-such-task"' in raised.value.message
    target = server.rest_url if client.rest else server.grpc_target
    with Client(target, rest=client.rest, model_name="other") as other:
        with pytest.raises(errors.ServingError) as raised:
            other.embed(ITEMS)
        assert raised.value.code == errors.NOT_FOUND
    with Client(target, rest=client.rest, version_label="stable") as pinned:
        assert pinned.embed(ITEMS).shape == (8,)


def test_bad_client_arguments_fail_before_sending(client):
    with pytest.raises(ValueError):
        client.recommend("shop", ITEMS, k=0)
    with pytest.raises(ValueError):
        client.embed([])
    with pytest.raises(TypeError):
        client.embed("i1")
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", version=1, version_label="stable")


def test_unreachable_server_is_unavailable():
    with Client("127.0.0.1:1", timeout=5) as unreachable:
        with pytest.raises(errors.ServingError) as raised:
            unreachable.embed(ITEMS)
    assert raised.value.code in (errors.UNAVAILABLE, errors.DEADLINE_EXCEEDED)
    with Client("http://127.0.0.1:1", rest=True, timeout=5) as unreachable:
        with pytest.raises(errors.ServingError) as raised:
            unreachable.embed(ITEMS)
    assert raised.value.code == errors.UNAVAILABLE


def _parser():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("rest", [False, True])
def test_predict_command(server, models, capsys, rest):
    toy = models[1][1]
    target = server.rest_url if rest else server.grpc_target
    argv = ["predict", "--target", target, "--task", "shop", "--items", ",".join(ITEMS), "--k", "2"]
    args = _parser().parse_args(argv + (["--rest"] if rest else []))
    assert args.handler(args) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["kind"] == "cold_start"
    assert [item for item, _ in answer["answer"]] == [i for i, _ in _top(toy.reference("shop", [ITEMS]), 2)]
    args = _parser().parse_args(["predict", "--target", target, "--task", "genre", "--items", "i1", "--items", "i2,i3"]
                                + (["--rest"] if rest else []))
    assert args.handler(args) == 0
    assert len(json.loads(capsys.readouterr().out)["answer"]) == 2
    args = _parser().parse_args(["predict", "--target", target, "--task", "nope", "--items", "i1"]
                                + (["--rest"] if rest else []))
    assert args.handler(args) == 2
    assert "no signature 'nope'" in capsys.readouterr().err


def test_serve_command_builds_a_server_from_config_files(tmp_path, models):
    base, _ = models
    paths = model_config.write_serving_files(
        str(tmp_path), [model_config.ModelEntry("peterrec", base)],
        batching=model_config.BatchingParameters(max_batch_size=8, batch_timeout_micros=0),
    )
    args = _parser().parse_args([
        "serve", "--model-config", paths["model_config"], "--port", "0", "--rest-port", "0",
        "--batching-parameters-file", paths["batching_parameters"],
        "--monitoring-config-file", paths["monitoring_config"], "--poll-seconds", "0",
    ])
    server = cli.build_server(args)
    assert server.host == "127.0.0.1" and server.batcher.options.max_batch_size == 8
    with server:
        with Client(server.grpc_target) as client:
            assert client.embed(ITEMS).shape == (8,)
    args = _parser().parse_args(["serve", "--model-base-path", base, "--port", "0", "--rest-port", "-1",
                                 "--no-batching"])
    server = cli.build_server(args)
    assert server.batcher is None
    with server:
        assert server.rest_port is None
        with Client(server.grpc_target, model_name="peterrec") as client:
            assert client.metadata()["version"] == 1
