"""xView3-style scoring: one-to-one Hungarian matching, 200 m radius, near-shore split, COCO/VOC truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routewatch.detect.base import Detection
from routewatch.detect.evaluate import (
    TruthObject,
    distance_to_shore_px,
    load_coco,
    load_truth,
    load_voc,
    match,
    score,
)


def det(r: float, c: float, length: float = 100.0) -> Detection:
    return Detection(row=r, col=c, length_m=length, width_m=20.0, heading_deg=0.0, score=0.9)


def truth(r: float, c: float, length: float | None = None) -> TruthObject:
    return TruthObject(r, c, (c - 2, r - 2, 4, 4), length_m=length)


def test_one_detection_cannot_claim_two_ships() -> None:
    s = score([det(10, 10)], [truth(10, 11), truth(11, 10)], pixel_size_m=10.0)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    assert s.precision == 1.0 and s.recall == 0.5
    assert s.f1 == pytest.approx(2 / 3)


def test_hungarian_finds_the_assignment_greedy_matching_misses() -> None:
    # Greedy nearest-first would pair d0 with t1 (distance 1) and leave t0 unmatched (d1-t0 is too far).
    dets = np.array([[0.0, 10.0], [0.0, 21.0]])
    tru = np.array([[0.0, 0.0], [0.0, 11.0]])
    pairs = match(dets, tru, max_distance=12.0)
    assert sorted(pairs) == [(0, 0), (1, 1)]


def test_200_m_radius_in_ground_metres() -> None:
    near = score([det(0, 19)], [truth(0, 0)], pixel_size_m=10.0)  # 190 m
    far = score([det(0, 21)], [truth(0, 0)], pixel_size_m=10.0)  # 210 m
    assert near.tp == 1 and far.tp == 0 and far.fp == 1 and far.fn == 1
    # Without a ground scale the radius is in pixels.
    assert score([det(0, 15)], [truth(0, 0)], max_px=20).tp == 1


def test_length_error_over_matched_pairs() -> None:
    s = score([det(0, 0, 150.0), det(50, 50, 80.0)], [truth(0, 1, 120.0), truth(50, 50, 100.0)], pixel_size_m=10.0)
    assert sorted(s.length_errors_m) == [-20.0, 30.0]
    assert s.length_mae_m == pytest.approx(25.0)


def test_near_shore_split() -> None:
    water = np.ones((500, 500), bool)
    water[:, :50] = False  # land strip on the left; 2 km = 200 px of 10 m
    shore = distance_to_shore_px(water)
    tru = [truth(100, 100), truth(100, 400)]  # 50 px from land (near), 350 px (far)
    s = score([det(100, 100)], tru, pixel_size_m=10.0, shore_distance_px=shore)
    assert (s.near_tp, s.near_fn, s.near_fp) == (1, 0, 0)
    assert s.f1_near_shore == 1.0 and s.recall == 0.5


def test_coco_rle_and_polygon(tmp_path: Path) -> None:
    # A 3-row x 5-column ship at rows 2..4, cols 4..8 in a 10 x 12 image, as column-major RLE.
    mask = np.zeros((10, 12), bool)
    mask[2:5, 4:9] = True
    flat = mask.T.ravel()
    counts, cur, n = [], False, 0
    for v in flat:
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    ann = [{"bbox": [4, 2, 5, 3], "segmentation": {"counts": counts, "size": [10, 12]}},
           {"bbox": [0, 0, 3, 8], "segmentation": [[0, 0, 3, 0, 3, 8, 0, 8]]}]
    p = tmp_path / "truth.json"
    p.write_text(json.dumps({"images": [], "annotations": ann}))
    t = load_coco(p, pixel_size_m=10.0)
    assert t[0].row == pytest.approx(3.0) and t[0].col == pytest.approx(6.0)
    assert t[0].length_m == pytest.approx(50.0)
    assert t[1].length_m == pytest.approx(80.0)
    assert t[1].mask_rows is not None and t[1].mask_rows.size == 24


def test_voc_boxes_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "chip.xml"
    p.write_text("<annotation><object><name>ship</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax>"
                 "<ymax>60</ymax></bndbox></object></annotation>")
    t = load_voc(p)
    assert len(t) == 1 and t[0].row == 40 and t[0].col == 20
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object><bndbox><xmin>a</xmin></bndbox></object></annotation>")
    with pytest.raises(ValueError, match=r"bad\.xml: object 0"):
        load_voc(bad)
    with pytest.raises(ValueError, match="COCO JSON"):
        load_truth(tmp_path / "truth.csv")


@pytest.mark.shared
def test_shared_truth_lengths_are_ground_metres(shared_dir: Path) -> None:
    from routewatch.detect.evaluate import load_sen2ships_port

    port = load_sen2ships_port(shared_dir / "data" / "sen2ships" / "gdynia")  # 54.5 N: pixel about 5.8 m
    assert port.pixel_size_m[1] == pytest.approx(10.0 * np.cos(np.radians(54.53)), rel=0.02)
    lengths = [t.length_m for t in port.truth]
    assert len(lengths) == 20 and all(length is not None and 20 < length < 450 for length in lengths)


@pytest.mark.shared
def test_a_truth_file_names_its_own_image_and_no_other(shared_dir: Path) -> None:
    """All eight SAR chips are 256 x 256, so only the names tell another chip's labels from the chip's own; the
    sen2ships labels name a band file (B04.tiff), which is the same scene only in the image's own folder."""
    from routewatch.detect.evaluate import same_image_name, truth_image_name

    chips = shared_dir / "data" / "sar-chips"
    xmls = sorted(chips.glob("*.xml"))
    assert len(xmls) == 8
    for image in sorted(chips.glob("*.jpg")):
        for xml in xmls:
            assert same_image_name(truth_image_name(xml), str(image), xml) == (xml.stem == image.stem), (image, xml)
    ports = shared_dir / "data" / "sen2ships"
    own, other = ports / "honolulu" / "annotations_coco.json", ports / "busan" / "annotations_coco.json"
    assert truth_image_name(own) == "B04.tiff"
    assert same_image_name("B04.tiff", str(ports / "honolulu" / "B02.tiff"), own)
    assert not same_image_name("B04.tiff", str(ports / "honolulu" / "B02.tiff"), other)
