"""The release readers, by their older names: each track's reader now lives with its track.

    solution/readers.py        what every reader shares (CSV and ids, metadata, organizer pickles, VideoSources)
    solution/transcripts.py    transcripts, plain or word-timed ASR JSON
    solution/tracks/emi.py     the EMI release (Hume-Vidmimic2): EmiRelease, its labels and test listing
    solution/tracks/affwild2.py  the Aff-Wild2 family: videos, crops, listings, the annotation-fit policy
    solution/tracks/va.py      the VA track on it: VaRelease, its annotations

This module keeps every name scripts import from it (`from solution.layouts import
detect_track` in run_all.sh, for one); new code imports from the modules above, or asks the
track (solution.tracks).
"""
from solution.errors import DataError
from solution.readers import (LATENT_FOLDERS, ORGANIZER_FOLDERS, VideoSources, coerce_feature_array,
                              load_feature_pickle, parse_video_id, read_feature_pickle, stated_fps)
from solution.tracks import detect_track, open_release, release_videos
from solution.tracks.affwild2 import FIT_ENV as VA_FIT_ENV
from solution.tracks.affwild2 import FIT_MODES as VA_FIT_MODES
from solution.tracks.affwild2 import SPLIT_FOLDERS as VA_SPLIT_FOLDERS
from solution.tracks.affwild2 import annotation_fit_mode, annotation_tolerance, count_annotation_lines
from solution.tracks.emi import EMI_KINDS, EMI_TEST_NAMES, EmiRelease, emi_key, read_emi_labels, read_id_list
from solution.tracks.va import VaRelease, annotated_mask, read_va_annotation, read_va_test_listing
from solution.transcripts import TIMED_FORMS, Transcript, parse_transcript, read_transcript

__all__ = ["DataError", "LATENT_FOLDERS", "ORGANIZER_FOLDERS", "VideoSources", "coerce_feature_array",
           "load_feature_pickle", "parse_video_id", "read_feature_pickle", "stated_fps", "detect_track", "open_release",
           "release_videos", "VA_FIT_ENV", "VA_FIT_MODES", "VA_SPLIT_FOLDERS", "annotation_fit_mode",
           "annotation_tolerance", "count_annotation_lines", "EMI_KINDS", "EMI_TEST_NAMES", "EmiRelease", "emi_key",
           "read_emi_labels", "read_id_list", "VaRelease", "annotated_mask", "read_va_annotation",
           "read_va_test_listing", "TIMED_FORMS", "Transcript", "parse_transcript", "read_transcript"]
