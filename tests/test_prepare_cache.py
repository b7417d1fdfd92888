"""internvla-s2-prepare-cache (issue 14 item 2): builds the fast path once and reports where the caches
are; usage errors are one line with exit 2. CPU and a tiny checkpoint: nothing is compiled there, so
the run checks the command's plumbing (the H200 start-up run measures what the cache saves)."""

from __future__ import annotations

import json

import pytest
from fixtures_models import tiny_checkpoint  # noqa: F401  (pytest fixture)

from internvla_s2_node.cli import prepare_cache

PROG = "internvla-s2-prepare-cache"


def _err_line(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith(PROG + ":")]
    assert len(lines) == 1, lines
    return lines[0]


def test_help_is_plain_text_with_debug(capsys):
    with pytest.raises(SystemExit) as done:
        prepare_cache.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"usage: {PROG}") and "--debug" in out and "``" not in out


@pytest.mark.parametrize(
    "argv,expected",
    [(["--model", "tiny:qwen3_vl", "--cache-dir", "off"], "--cache-dir off leaves nothing to prepare"),
     (["--model", "/no/such/checkpoint"], "checkpoint directory not found"),
     (["--model", "tiny:qwen3_vl", "--device", "tpu"], "device must be auto, cpu, cuda or cuda:N")],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    assert prepare_cache.main(argv) == 2
    assert expected in _err_line(capsys)


def test_builds_the_fast_path_and_prints_where_the_cache_is(tiny_checkpoint, tmp_path, capsys):  # noqa: F811
    ckpt = tiny_checkpoint("qwen2_5_vl")
    assert prepare_cache.main(["--model", str(ckpt), "--device", "cpu", "--num-history", "2", "--cache-dir", str(tmp_path / "cc")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["state"] == "ready" and out["error"] == "" and out["failures"] == {} and out["build_s"] >= 0
