"""The EXPR track (expression recognition, Aff-Wild2): one of eight expressions per video frame.

Classes, in the challenge's order: 0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness,
5 Sadness, 6 Surprise, 7 Other; scored by the macro F1 over the eight, over every annotated
frame of the split pooled (ABAW3 on). Annotations: `<video>.txt` with the header
`Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other` and an integer a line, -1 on a
frame nobody annotated, in `EXPR_Recognition_Challenge/` (ABAW6 on; this project's generator
writes that name), `EXPR_Classification_Challenge/` (ABAW3-5) or `EXPR_Set/` (ABAW2), each
with Train_Set/ and Validation_Set/. Test listings: `Expression_Recognition_Challenge_test_set_release.txt`
(or `Expression_Classification_...`), the per-frame `*_Expr_test_set_example.txt` (or
`_sample`), or this project's `test_set.csv`. Labels, predictions and submissions:
affwild2_classes.py; everything Aff-Wild2 tracks share: affwild2.py.
"""
from __future__ import annotations

from solution.tracks.affwild2 import AffWild2Release
from solution.tracks.affwild2_classes import CLASS_UNANNOTATED, ClassTrack
from solution.tracks.base import register

EXPR_TARGETS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")


class ExprTrack(ClassTrack):
    annotation_folder = "EXPR_Recognition_Challenge"
    other_folders = ("EXPR_Classification_Challenge", "EXPR_Set")
    listing_words = frozenset({"expr", "expression"})

    def open_release(self, data, test_listing=None) -> "ExprRelease":
        return ExprRelease(data, test_listing=test_listing)


EXPR = register(ExprTrack("expr", EXPR_TARGETS, 0.0, 1.0, "macro_f1", "frame", kind="multiclass",
                          unannotated=CLASS_UNANNOTATED))


class ExprRelease(AffWild2Release):
    """An Aff-Wild2 release as the EXPR track reads it (see AffWild2Release)."""

    track = EXPR
