"""Small things a new user trips on: `cep --version`, help text for every `serve` and
`alerts tail` option, and the demo not announcing a file it deletes."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from service.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cep {version('cep')}"


@pytest.mark.parametrize("argv", [["serve", "--help"], ["alerts", "tail", "--help"]])
def test_every_option_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    out = capsys.readouterr().out
    options = out[out.index("options:"):]
    # an option line with nothing after its name and metavar would be `  --port PORT`
    bare = [line for line in options.splitlines()
            if re.fullmatch(r"\s+(-\w, )?--[\w-]+( [A-Z_{},\w-]+)?", line)
            and not line.strip().startswith("-h")]
    # argparse puts long metavars' help on the next line: such a line is followed by help
    lines = options.splitlines()
    for line in bare:
        nxt = lines[lines.index(line) + 1]
        assert nxt.startswith(" " * 20) and nxt.strip(), f"no help for {line.strip()}"


def test_demo_does_not_announce_a_kept_events_file(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))
    assert main(["demo", "--events", "2000"]) == 0
    err = capsys.readouterr().err
    assert "temporary file, removed after the run" in err
    assert "generated events.jsonl" not in err
