"""Binding hallucination on hand-made shapes scenes."""

from __future__ import annotations

import pytest

from captioning.metrics.binding import binding_errors, scene_pairs
from captioning.metrics.chair import Chair

INSTANCES = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
             "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}],
             "annotations": [{"image_id": 1, "category_id": 2, "color": "yellow"},
                             {"image_id": 1, "category_id": 1, "color": "green"},
                             {"image_id": 2, "category_id": 1, "color": "red"},
                             {"image_id": 2, "category_id": 1, "color": "red"}]}


def test_swapped_colours_are_binding_errors_that_chair_cannot_see() -> None:
    chair, scenes = Chair.from_file("shapes"), scene_pairs(INSTANCES)
    assert scenes == {1: {("yellow", "square"), ("green", "circle")}, 2: {("red", "circle")}, 3: set()}
    captions = {1: "a yellow circle and a green square",  # both objects present, both bound wrongly
                2: "two red disks",                       # plural synonym, correct
                3: "three shapes and a big box"}          # no colour named: no pair
    result = binding_errors(chair, captions, scenes, colours={"yellow", "green", "red", "blue"})
    assert result.per_image[1].errors == [("yellow", "circle"), ("green", "square")]
    assert result.per_image[2].pairs == [("red", "circle")] and result.per_image[2].errors == []
    assert result.per_image[3].pairs == []  # "big" is a size, not a colour
    assert result.rate == pytest.approx(2 / 3)
    truth = {1: {"circle", "square"}, 2: {"circle"}, 3: set()}
    assert chair.evaluate({1: captions[1]}, truth).chair_s == 0.0  # CHAIR sees nothing wrong in image 1


def test_blue_box_pairs_and_scenes_without_colours() -> None:
    chair = Chair.from_file("shapes")
    result = binding_errors(chair, {3: "a large blue box"}, {3: {("blue", "square")}})
    assert result.per_image[3].pairs == [("blue", "square")] and result.rate == 0.0
    coco = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"image_id": 1, "category_id": 1}]}
    assert scene_pairs(coco) is None  # no colours annotated: the metric does not apply
    assert binding_errors(chair, {1: "nothing here"}, {1: set()}).rate == 0.0
