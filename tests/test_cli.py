"""Every command's --help: each option explained, the summary said once, no '(default: None)'."""
import argparse
import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ["solution.synth", "solution.features", "solution.folds", "solution.train_fold", "solution.report",
           "solution.ensemble", "solution.evaluate", "solution.submit", "solution.predict_mean", "solution.runs",
           "solution.predict"]
BENCHES = sorted(p.name for p in (REPO / "bench").glob("*.py"))


class _Captured(Exception):
    pass


def parser_of(main, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's main() builds, caught as it starts parsing."""
    seen = {}

    def capture(self, args=None, namespace=None):
        seen["parser"] = self
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured):
        main([])
    return seen["parser"]


def check(parser: argparse.ArgumentParser):
    text = parser.format_help()
    silent = [a.option_strings or a.dest for a in parser._actions
              if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not silent, f"{parser.prog}: options without help text: {silent}"
    assert "(default: None)" not in text
    summary = " ".join((parser.description or "").strip().splitlines()[0].split())
    times = " ".join(text.split()).count(summary)
    assert summary and times == 1, f"{parser.prog}: summary line printed {times} times"


@pytest.mark.parametrize("module", MODULES)
def test_module_help(module, monkeypatch):
    check(parser_of(importlib.import_module(module).main, monkeypatch))


@pytest.mark.parametrize("name", BENCHES)
def test_bench_help(name, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"bench_{name[:-3]}", REPO / "bench" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check(parser_of(module.main, monkeypatch))


def test_stage_config_gives_defaults_and_flags_win(tmp_path):
    from solution.config import apply_stage_config

    (tmp_path / "run.toml").write_text('[features]\nvisual = ["hog", "fbank"]\nface-size = 96\n[folds]\nk = 7\n')
    parser = argparse.ArgumentParser()
    parser.add_argument("--visual")
    parser.add_argument("--face-size", type=int, default=112)
    parser.add_argument("--config", type=Path)
    args = apply_stage_config(parser, ["--config", str(tmp_path / "run.toml")], "features")
    assert (args.visual, args.face_size) == ("hog,fbank", 96)
    args = apply_stage_config(parser, ["--config", str(tmp_path / "run.toml"), "--face-size", "64"], "features")
    assert args.face_size == 64
    (tmp_path / "bad.toml").write_text("[features]\nvisuals = 1\n")
    with pytest.raises(SystemExit):
        apply_stage_config(parser, ["--config", str(tmp_path / "bad.toml")], "features")
