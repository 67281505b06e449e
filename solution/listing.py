"""The test listing a user names: $TEST_LISTING, or --test-listing PATH on a stage's command line.

Kept apart from solution.layouts (which reads the listing) so a command line can take the
option without importing pandas. The option also sets $TEST_LISTING, so the processes a stage
starts (folds trained by solution.jobs, the stages of run_all.sh) read the same listing.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

TEST_LISTING_ENV = "TEST_LISTING"


def listing_override(explicit=None) -> Path | None:
    """The test listing a user named: `explicit` when given, else $TEST_LISTING (empty: none).
    A relative path is taken from the current folder and made absolute."""
    value = explicit if explicit is not None else os.environ.get(TEST_LISTING_ENV)
    if value is None or str(value).strip() == "":
        return None
    return Path(value).expanduser().absolute()


class _ListingOption(argparse.Action):
    """--test-listing PATH: also exported as $TEST_LISTING, so every release this process and
    its child processes open reads that listing."""

    def __call__(self, parser, namespace, values, option_string=None):
        path = listing_override(values)
        if path is not None:
            os.environ[TEST_LISTING_ENV] = str(path)
        setattr(namespace, self.dest, path)


def add_test_listing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-listing", type=str, metavar="PATH", action=_ListingOption,
                        help="the test listing to read instead of the one found in the release (sets "
                             f"${TEST_LISTING_ENV} for this stage and the processes it starts). VA, EXPR, AU: a "
                             "video,frames CSV, the organizers' *_test_set_release.txt (a video a line) or their "
                             "*_test_set_sample.txt (image_location,<the track's targets>, a row per frame), or a "
                             "folder holding them; EMI: a Filename list")


def export_listing(args) -> None:
    """After parsing: a --test-listing that came from a --config file's defaults (which skip the
    option's action) is exported too."""
    value = getattr(args, "test_listing", None)
    if value is not None:
        args.test_listing = listing_override(value)
        os.environ[TEST_LISTING_ENV] = str(args.test_listing)
