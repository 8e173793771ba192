"""The ONNX plug-in hook, driven by tiny models that the test builds (no download, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")
from onnx import TensorProto, helper  # noqa: E402

from routewatch.detect.onnx import OnnxDetector, load_detector  # noqa: E402


def score_map_model(path: Path) -> Path:
    """logit = 40 * (x - 0.5): a bright-pixel detector with free image size."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])
    y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1, "h", "w"])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    gain = helper.make_tensor("gain", TensorProto.FLOAT, [], [40.0])
    nodes = [helper.make_node("Sub", ["image", "half"], ["d"]), helper.make_node("Mul", ["d", "gain"], ["logit"])]
    graph = helper.make_graph(nodes, "bright", [x], [y], initializer=[half, gain])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def outline_and_centre_model(path: Path) -> Path:
    """logit = 8 * (channels 0 and 1 of a 5-channel input): a two-output network like ``train --centres``'s."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 5, "h", "w"])
    y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 2, "h", "w"])
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 2), ("ax", 1))]
    inits.append(helper.make_tensor("gain", TensorProto.FLOAT, [], [8.0]))
    nodes = [helper.make_node("Slice", ["input", "s", "e", "ax"], ["two"]),
             helper.make_node("Mul", ["two", "gain"], ["logit"])]
    model = helper.make_model(helper.make_graph(nodes, "two", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_two_map_model_is_decoded_by_its_centres_and_read_as_logits_by_its_name(tmp_path: Path) -> None:
    """A score map with a centre map (``train --centres``) gives a ship a centre peak, so two hulls side by side
    in one score region are two ships; an output named ``logit`` is read as logits without being told."""
    feats = np.full((5, 60, 60), -1.0, np.float32)
    feats[0, 10:40, 20:28] = 1.0  # one region of the score map, two 30 x 4 px hulls
    feats[1, 24, 21] = feats[1, 24, 26] = 1.0  # their centres
    detector = OnnxDetector(outline_and_centre_model(tmp_path / "two.onnx"), preprocess=lambda d: d)  # type: ignore[arg-type, return-value]
    assert detector.logits is True
    dets = sorted(detector(feats, pixel_size_m=10.0), key=lambda d: d.col)
    assert [(round(d.col, 1), round(d.length_m), round(d.width_m)) for d in dets] == [(21.5, 300, 40), (25.5, 300, 40)]
    feats[1] = -1.0  # no centre: no ship, however strong the score map
    assert detector(feats, pixel_size_m=10.0) == []
    assert OnnxDetector(outline_and_centre_model(tmp_path / "two.onnx"), logits=False).logits is False


def test_probabilities_under_a_logit_name_are_read_as_probabilities_with_a_warning(tmp_path: Path) -> None:
    """An output named ``logits`` whose values all lie in [0, 1] holds probabilities: through the sigmoid again
    every pixel would pass 0.5 and the image become one region too long for a ship, with no word why."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "probs", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "p.onnx")
    img = np.full((64, 64), 77, np.uint8)  # sea at probability 0.3
    img[10:30, 20:23] = 255  # a 20 x 3 px ship at probability 1
    with pytest.warns(UserWarning, match="read as probabilities"):
        dets = OnnxDetector(tmp_path / "p.onnx")(img, pixel_size_m=10.0)
    assert [round(d.length_m) for d in dets] == [200]
    assert OnnxDetector(tmp_path / "p.onnx", logits=True)(img, pixel_size_m=10.0) == []  # told: read as logits


def boxes_model(path: Path, boxes: np.ndarray) -> Path:
    """Ignores the image and returns fixed boxes (x0, y0, x1, y1, score): tests the box convention."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])
    y = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, list(boxes.shape))
    const = helper.make_tensor("b", TensorProto.FLOAT, list(boxes.shape), boxes.ravel().tolist())
    nodes = [helper.make_node("Constant", [], ["boxes"], value=const)]
    graph = helper.make_graph(nodes, "boxes", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_score_map_model_gives_measured_ships(tmp_path: Path) -> None:
    img = np.zeros((120, 160), np.uint8)
    img[20:50, 30:34] = 255  # 30 x 4 px vertical ship
    img[90:93, 100:120] = 255  # 3 x 20 px horizontal ship
    detector = load_detector(score_map_model(tmp_path / "m.onnx"), logits=True)
    dets = sorted(detector(img, pixel_size_m=10.0), key=lambda d: d.row)
    assert len(dets) == 2
    assert dets[0].row == pytest.approx(34.5) and dets[0].col == pytest.approx(31.5)
    assert dets[0].length_m == pytest.approx(300.0) and dets[0].heading_deg == pytest.approx(0.0)
    assert dets[1].length_m == pytest.approx(200.0) and dets[1].heading_deg == pytest.approx(90.0)
    water = np.ones(img.shape, bool)
    water[:60] = False
    assert len(detector(img, pixel_size_m=10.0, water=water)) == 1


def test_box_model_and_threshold(tmp_path: Path) -> None:
    boxes = np.array([[10, 20, 14, 50, 0.9], [60, 60, 90, 66, 0.8], [0, 0, 5, 5, 0.1]], np.float32)
    detector = OnnxDetector(boxes_model(tmp_path / "b.onnx", boxes), threshold=0.5)
    dets = detector(np.zeros((100, 100), np.uint8), pixel_size_m=2.0)
    assert len(dets) == 2
    assert dets[0].length_m == pytest.approx(60.0) and dets[0].width_m == pytest.approx(8.0)
    assert dets[0].heading_deg == 0.0 and dets[1].heading_deg == 90.0
    assert dets[0].score == pytest.approx(0.9)


def test_bad_model_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        load_detector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        load_detector(junk)


def test_a_model_replaced_in_place_is_not_served_stale(tmp_path: Path) -> None:
    """Sessions are cached per model file version: retraining a model to the same path (as ``train`` does with
    the packaged one) gives the new model's answers in the same process."""
    import os

    path = tmp_path / "m.onnx"
    boxes_model(path, np.array([[10, 20, 14, 50, 0.9]], np.float32))
    img = np.zeros((64, 64), np.uint8)
    assert [d.col for d in OnnxDetector(path)(img, pixel_size_m=10.0)] == [pytest.approx(11.5)]
    boxes_model(path, np.array([[30, 20, 34, 50, 0.9], [40, 20, 44, 50, 0.9]], np.float32))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse file-system clock cannot hide it
    assert [d.col for d in OnnxDetector(path)(img, pixel_size_m=10.0)] == [pytest.approx(31.5), pytest.approx(41.5)]
