"""Kokoro exports name their inputs/outputs two ways; the loader takes both.

onnx-community/Kokoro-82M-v1.0-ONNX: ``input_ids, style, speed -> waveform``; the export
the real-model tests use: ``tokens, style, speed -> audio``. A tiny ONNX graph built here
with the ``onnx`` package stands in for each naming (it returns the style vector scaled
by speed, so the test also sees which style row was picked and that speed arrives).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelctl.runtime import KokoroPaths
from modelctl.runtime.kokoro import Kokoro

np = pytest.importorskip("numpy", reason="numpy builds voices")
onnx = pytest.importorskip("onnx", reason="onnx builds the stand-in graphs")
pytest.importorskip("onnxruntime", reason="onnxruntime runs them")


def tiny_kokoro(path: Path, ids_name: str, out_name: str) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["style", "speed"], ["scaled"]),
            helper.make_node("Flatten", ["scaled"], ["flat"], axis=0),
            helper.make_node("Squeeze", ["flat"], [out_name], axes=None),
            helper.make_node("Shape", [ids_name], ["ids_shape"]),
        ],
        "tiny-kokoro",
        [
            helper.make_tensor_value_info(ids_name, TensorProto.INT64, [1, None]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
            helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None),
            helper.make_tensor_value_info("ids_shape", TensorProto.INT64, [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def paths(tmp_path: Path, ids_name: str, out_name: str) -> KokoroPaths:
    model = tmp_path / f"{ids_name}.onnx"
    tiny_kokoro(model, ids_name, out_name)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(json.dumps({"model": {"vocab": {"$": 0, "a": 1, "b": 2}}}))
    voice = tmp_path / "v.bin"
    table = np.arange(510 * 256, dtype="<f4").reshape(510, 1, 256)
    table.tofile(voice)
    return KokoroPaths(model, tokenizer, {"v": voice})


@pytest.mark.parametrize(("ids_name", "out_name"), [("input_ids", "waveform"), ("tokens", "audio")])
def test_both_namings_synthesize(tmp_path: Path, ids_name: str, out_name: str) -> None:
    k = Kokoro.from_paths(paths(tmp_path, ids_name, out_name))
    assert k.ids_input == ids_name
    ids = k.encode("abxa")  # 'x' is not in the vocab: dropped
    assert ids == [1, 2, 1]
    audio = k.synthesize(ids, "v", speed=2.0)
    assert audio.dtype == np.float32 and audio.shape == (256,)
    expected_row = np.arange(256, dtype=np.float32) + 3 * 256  # row len(ids) = 3
    assert np.array_equal(audio, expected_row * 2.0)


def test_a_graph_without_kokoro_inputs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a Kokoro export"):
        Kokoro.from_paths(paths(tmp_path, "text", "audio"))


def test_unknown_voice_and_bad_lengths(tmp_path: Path) -> None:
    k = Kokoro.from_paths(paths(tmp_path, "tokens", "audio"))
    with pytest.raises(KeyError, match="locked voices"):
        k.synthesize([1], "nope")
    with pytest.raises(ValueError, match="token count"):
        k.synthesize([], "v")
