"""User ground truth is paired with the right image and the right labels, or refused."""

from __future__ import annotations

import json

import pytest

from saicm.data.coco import load_coco, match_categories, match_images
from saicm.errors import SaicmError
from saicm.tasks.detection import COCO_NAMES


def _gt(*file_names: str) -> dict:
    return {
        "images": [{"id": i, "file_name": f} for i, f in enumerate(file_names, start=1)],
        "annotations": [],
        "categories": [],
    }


def test_whole_relative_path_decides_between_two_entries_of_one_name(tmp_path):
    gt = _gt("val2017/person.png", "train2017/person.png")
    val, train = tmp_path / "val2017" / "person.png", tmp_path / "train2017" / "person.png"
    assert match_images(gt, [val], "a.json") == ({val: 1}, [])
    assert match_images(gt, [train], "a.json") == ({train: 2}, [])


def test_an_ambiguous_base_name_is_refused(tmp_path):
    gt = _gt("val2017/person.png", "train2017/person.png")
    with pytest.raises(SaicmError, match=r"2 entries of a.json are named person.png"):
        match_images(gt, [tmp_path / "person.png"], "a.json")


def test_a_base_name_alone_matches_one_entry_and_missing_images_are_listed(tmp_path):
    gt = _gt("val2017/000139.jpg", "./elsewhere\\cat.png")
    img, other = tmp_path / "000139.jpg", tmp_path / "x.png"
    cat = tmp_path / "elsewhere" / "cat.png"
    assert match_images(gt, [img, cat, other], "a.json") == ({img: 1, cat: 2}, [other])


def test_the_longest_fitting_path_wins_and_a_path_listed_twice_is_refused(tmp_path):
    img = tmp_path / "val2017" / "person.png"
    assert match_images(_gt("person.png", "val2017/person.png"), [img], "a.json")[0] == {img: 2}
    with pytest.raises(SaicmError, match=r"lists val2017/person\.png 2 times"):
        match_images(_gt("val2017/person.png", "val2017/person.png"), [img], "a.json")


def _numbered_from_zero() -> dict:
    """An exporter's numbering: person = 0, bicycle = 1, car = 2, with the names."""
    return {
        "images": [{"id": 7, "file_name": "a.png"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 0, "bbox": [0, 0, 5, 5]},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 5, 5]},
        ],
        "categories": [
            {"id": 0, "name": "person"},
            {"id": 1, "name": "bicycle"},
            {"id": 2, "name": "Car"},
        ],
    }


def test_categories_numbered_from_zero_map_to_the_detector_by_name():
    labels = match_categories(_numbered_from_zero(), COCO_NAMES, "detection", "a.json")
    assert labels.renumbered
    assert labels.to_file == {1: 0, 2: 1, 3: 2}
    assert "3 of the file's ids differ" in labels.note and "'person': 0" in labels.note
    out = labels.apply(
        [
            {"category_id": 1, "score": 0.9},  # person
            {"category_id": 3, "score": 0.8},  # car
            {"category_id": 18, "score": 0.7},  # dog: the file has no such category
        ]
    )
    assert [r["category_id"] for r in out] == [0, 2]


def test_cocos_own_numbering_is_kept():
    gt = _numbered_from_zero()
    for c in gt["categories"]:
        c["id"] = {"person": 1, "bicycle": 2, "Car": 3}[c["name"]]
    for a in gt["annotations"]:
        a["category_id"] += 1
    labels = match_categories(gt, COCO_NAMES, "detection", "a.json")
    assert not labels.renumbered and labels.to_file[1] == 1 and "are the file's" in labels.note


def test_names_the_detector_does_not_know_are_refused():
    gt = _numbered_from_zero()
    gt["categories"][0]["name"] = "pedestrian"
    with pytest.raises(SaicmError, match="no label named 'pedestrian'"):
        match_categories(gt, COCO_NAMES, "detection", "a.json")
    del gt["categories"][0]["name"]
    with pytest.raises(SaicmError, match="category 0 has annotations but no name"):
        match_categories(gt, COCO_NAMES, "detection", "a.json")
    # a category without annotations on the images scored does not matter
    gt["categories"][0]["name"] = "pedestrian"
    assert match_categories(gt, COCO_NAMES, "detection", "a.json", image_ids=[8]).to_file


def test_a_file_that_is_not_coco_is_one_error(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(SaicmError, match="not a COCO annotation file"):
        load_coco(bad)
    with pytest.raises(SaicmError, match="no such annotation file"):
        load_coco(tmp_path / "none.json")


GOOD = {
    "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
    "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                     "area": 12, "iscrowd": 0, "segmentation": [[1, 2, 4, 2, 4, 6]]}],
    "categories": [{"id": 1, "name": "person"}],
}


@pytest.mark.parametrize(
    ("key", "field", "value", "why"),
    [
        ("categories", None, None, "'categories' is not a list"),
        ("categories", "id", [1], "id [1]: expected an integer or a string"),
        ("categories", "name", 5, "name 5: expected a string"),
        ("images", "id", True, "id true: expected an integer or a string"),
        ("images", "file_name", None, "file_name null: expected a file name"),
        ("annotations", "category_id", {"a": 1}, "category_id {\"a\": 1}"),
        ("annotations", "image_id", 1.5, "image_id 1.5"),
        ("annotations", "bbox", [1, 2, 3], "bbox [1, 2, 3]: expected [x, y, width, height]"),
        ("annotations", "bbox", [1, 2, -3, 4], "width and height >= 0"),
        ("annotations", "bbox", [1, 2, "3", 4], "expected [x, y, width, height]"),
        ("images", "height", 200000, "height 200000: expected an integer from 1 to 65535"),
        ("images", "width", 0, "width 0"),
        ("annotations", "area", "big", "area \"big\": expected a number >= 0"),
        ("annotations", "iscrowd", "yes", "iscrowd \"yes\": expected 0 or 1"),
        ("annotations", "segmentation", {"size": [200000, 200000], "counts": "x"},
         "expected polygons or an RLE"),
        ("annotations", "segmentation", {"size": [20, 30], "counts": [1, 2]}, "an RLE"),
        ("annotations", "segmentation", [["a", 1, 2, 3, 4, 5]], "expected polygons"),
        ("annotations", "image_id", "1", "which no entry of 'images' has"),
        ("annotations", "category_id", 7, "which no entry of 'categories' has"),
    ],
)  # fmt: skip
def test_hostile_field_types_are_one_error_naming_the_file(tmp_path, key, field, value, why):
    gt = json.loads(json.dumps(GOOD))
    if field is None:
        gt[key] = value
    else:
        gt[key][0][field] = value
    path = tmp_path / "a.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(SaicmError, match=f"{path}: ") as info:
        load_coco(path)
    assert why in str(info.value), str(info.value)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert load_coco(good) == GOOD


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda gt: gt["annotations"][0].pop("id"), "without 'id' and 'image_id'"),
        (lambda gt: gt["images"].append(dict(gt["images"][0])), "two entries of 'images'"),
        (lambda gt: gt["annotations"].append(dict(gt["annotations"][0])), "of 'annotations'"),
        (lambda gt: gt["categories"].append({"id": 1, "name": "car"}), "of 'categories'"),
        (lambda gt: gt["images"][0].update(height=20000, width=20000), "above saicm.image"),
    ],
)  # fmt: skip
def test_missing_ids_duplicates_and_huge_images_are_refused(tmp_path, change, why):
    gt = json.loads(json.dumps(GOOD))
    change(gt)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(SaicmError, match=f"{path}: ") as info:
        load_coco(path)
    assert why in str(info.value), str(info.value)


def test_an_annotation_file_nested_past_the_parser_is_one_error(tmp_path):
    """Crafted JSON deeper than the parser goes raises RecursionError, not ValueError: still
    the one-line "not a COCO annotation file"."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    with pytest.raises(SaicmError, match=r"deep\.json: not a COCO annotation file \(nested"):
        load_coco(path)
