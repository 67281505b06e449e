"""The tracks, one unit of code each (see base.py for the contract every unit fulfils).

    from solution.tracks import get_track, detect_track, open_release, release_videos
    track = get_track(detect_track(data))      # the track of a release folder
    release = track.open_release(data)          # its reader; track.release_videos(data), ...

Units: emi.py (EMI, Hume-Vidmimic2); va.py (VA), expr.py (EXPR) and au.py (AU), on the
Aff-Wild2 family of affwild2.py (the class tracks' share: affwild2_classes.py).
Importing this package registers them, in this order, which is also the order detect_track
tries them in. `python -m solution.tracks TRACK` prints what run_all.sh asks a track.
"""
from solution.tracks.base import (TRACKS, Track, as_track, detect_track, get_track, open_release, register,
                                  release_videos, track_names)
from solution.tracks.emi import EMI, EMI_TARGETS
from solution.tracks.va import VA, VA_TARGETS, VA_UNANNOTATED
from solution.tracks.expr import EXPR, EXPR_TARGETS  # noqa: E402  (after va: detection order)
from solution.tracks.au import AU, AU_TARGETS  # noqa: E402

__all__ = ["EXPR", "EXPR_TARGETS", "AU", "AU_TARGETS", "TRACKS", "Track", "as_track", "detect_track", "get_track", "open_release", "register", "release_videos",
           "track_names", "EMI", "EMI_TARGETS", "VA", "VA_TARGETS", "VA_UNANNOTATED"]
