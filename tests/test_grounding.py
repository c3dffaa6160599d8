"""Grounding metrics on hand-made cases: hits, misses, skipped phrases, multiset scenes."""

import numpy as np
import pytest

from show_attend_tell.grounding import (
    cell_centres,
    grounding_scores,
    image_grounding,
    object_phrases,
    scene_correct,
)

G = 4  # 4×4 grid: cell centres at 0.125, 0.375, 0.625, 0.875


def obj(phrase, bbox):
    size, colour, shape = phrase.split()
    return {"bbox": bbox, "size": size, "colour": colour, "shape": shape}


def caption(text):
    return text.split()


def one_hot_steps(cells):
    """α ``[T, L]`` with step t attending only to ``cells[t]``."""
    alphas = np.zeros((len(cells), G * G))
    alphas[np.arange(len(cells)), cells] = 1.0
    return alphas


RED = obj("small red circle", (0.0, 0.0, 0.25, 0.25))  # holds the centre of cell 0
BLUE = obj("large blue square", (0.5, 0.5, 1.0, 1.0))  # holds cells 10, 11, 14, 15


def test_cells_are_row_major_from_the_top_left():
    centres = cell_centres(G * G)
    np.testing.assert_allclose(centres[1], (0.125, 0.375))
    np.testing.assert_allclose(centres[G], (0.375, 0.125))
    with pytest.raises(ValueError, match="square"):
        cell_centres(10)


def test_phrases_are_three_consecutive_attribute_words():
    words = caption("a small red circle left of a large blue square red circle")
    assert object_phrases(words) == [(1, ("small", "red", "circle")),
                                     (7, ("large", "blue", "square"))]


def test_hit_and_miss_and_mass():
    words = caption("a small red circle and a large blue square")
    # "small red circle" (steps 1-3) looks at its cell 0; "large blue square" (steps 6-8)
    # mostly at cell 0 too, outside its box: a miss with a third of the mass inside.
    alphas = one_hot_steps([0, 0, 0, 0, 0, 0, 0, 0, 0])
    alphas[7] = 0.0
    alphas[7, [10, 15]] = 0.5  # one of the square's steps spreads over the square
    result = image_grounding(words, alphas, [RED, BLUE])
    red, blue = result["phrases"]
    assert red["status"] == "scored" and red["hit"] and red["mass"] == pytest.approx(1.0)
    assert blue["status"] == "scored" and not blue["hit"]
    assert blue["mass"] == pytest.approx(1 / 3)
    assert result["scene_correct"]


def test_argmax_of_the_phrase_average_and_the_half_cell_margin():
    # A box between cell centres: no centre inside it, cell 5's centre within half a cell.
    small = obj("small green triangle", (0.26, 0.26, 0.36, 0.36))
    words = caption("small green triangle")
    alphas = one_hot_steps([5, 5, 0])  # the average peaks at cell 5
    (phrase,) = image_grounding(words, alphas, [small])["phrases"]
    assert phrase["hit"] and phrase["mass"] == 0.0
    (phrase,) = image_grounding(words, one_hot_steps([0, 0, 5]), [small])["phrases"]
    assert not phrase["hit"]


def test_ambiguous_and_unmatched_phrases_are_not_scored():
    twin = obj("small red circle", (0.5, 0.0, 0.75, 0.25))
    words = caption("a small red circle and a small purple diamond")
    result = image_grounding(words, one_hot_steps([0] * len(words)), [RED, twin])
    assert [p["status"] for p in result["phrases"]] == ["ambiguous", "unmatched"]
    assert all(p["hit"] is None for p in result["phrases"])


def test_scene_is_a_multiset_in_any_order():
    twin = obj("small red circle", (0.5, 0.0, 0.75, 0.25))
    objects = [RED, BLUE, twin]
    assert scene_correct(caption("a large blue square and two small red circle small red circle"),
                         objects)
    assert scene_correct(caption("small red circle small red circle large blue square"), objects)
    assert not scene_correct(caption("a small red circle and a large blue square"), objects)
    assert not scene_correct(
        caption("small red circle small red circle large blue square large blue square"), objects)
    assert not scene_correct(caption("small red circle large blue square"), [RED])


def test_grounding_scores_aggregates():
    words = caption("a small red circle and a large blue square")
    examples = [
        {"words": words, "alphas": one_hot_steps([0] * 5 + [15] * 4), "objects": [RED, BLUE]},
        {"words": caption("a small red circle"), "alphas": one_hot_steps([15] * 4),
         "objects": [RED, BLUE]},
    ]
    scores = grounding_scores(examples)
    assert scores["scene_accuracy"] == pytest.approx(50.0)
    assert scores["pointing_accuracy"] == pytest.approx(100 * 2 / 3)
    assert scores["attention_mass_in_box"] == pytest.approx(100 * 2 / 3)
    assert scores["phrases_scored"] == 3 and scores["grounding_images"] == 2
    assert grounding_scores([])["pointing_accuracy"] is None
