"""The AU track (action unit detection, Aff-Wild2): twelve action units, each on or off, per
video frame.

Units, in the challenge's order: AU1, AU2, AU4, AU6, AU7, AU10, AU12, AU15, AU23, AU24, AU25,
AU26; scored by the mean over the twelve of each unit's binary F1, over every annotated frame
of the split pooled. Annotations: `<video>.txt` with the header
`AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26` and a line per frame of twelve 0/1,
every unit -1 on a frame nobody annotated, in `AU_Detection_Challenge/` (ABAW3 on; this
project's generator writes that name) or `AU_Set/` (ABAW2), each with Train_Set/ and
Validation_Set/. Test listings: `Action_Unit_Detection_Challenge_test_set_release.txt`, a
per-frame `*_AU_test_set_example.txt` (or `_sample`), or this project's `test_set.csv`.
Labels, predictions and submissions: affwild2_classes.py; what Aff-Wild2 tracks share: affwild2.py.
"""
from __future__ import annotations

from solution.tracks.affwild2 import AffWild2Release
from solution.tracks.affwild2_classes import CLASS_UNANNOTATED, ClassTrack
from solution.tracks.base import register

AU_TARGETS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")


class AuTrack(ClassTrack):
    annotation_folder = "AU_Detection_Challenge"
    other_folders = ("AU_Set",)
    listing_words = frozenset({"au", "action", "unit", "units"})

    def open_release(self, data, test_listing=None) -> "AuRelease":
        return AuRelease(data, test_listing=test_listing)


AU = register(AuTrack("au", AU_TARGETS, 0.0, 1.0, "mean_f1", "frame", kind="multilabel",
                      unannotated=CLASS_UNANNOTATED))


class AuRelease(AffWild2Release):
    """An Aff-Wild2 release as the AU track reads it (see AffWild2Release)."""

    track = AU
