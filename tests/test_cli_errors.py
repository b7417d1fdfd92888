"""Every console script fails with one line ``PROG: what is wrong; what to do`` (issue 16 item 6).

Exit 2 for usage errors, 1 for runtime errors; --debug / INTERNVLA_S2_DEBUG=1 add the traceback.
The cases run in this process (each main() returns its exit status), so the file stays fast; no
model is loaded because every input is checked first.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from internvla_s2_node.cli import errors, infer
from internvla_s2_node.core import tiny
from internvla_s2_node.train import cli as train_cli


def one_error_line(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: "), err
    return err[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty").mkdir()
    (d / "broken").mkdir()
    (d / "broken" / "config.json").write_text("{")
    (d / "llama").mkdir()
    (d / "llama" / "config.json").write_text('{"model_type": "llama"}')
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "one.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "ok.png")
    (d / "text.png").write_text("not an image")
    return d


OK = ["--instruction", "go to the kitchen", "{d}/ok.png"]


@pytest.mark.parametrize("argv, says", [
    (["--model", "/no/such/dir", *OK], "/no/such/dir: checkpoint directory not found; pass a directory"),
    (["--model", "{d}/empty", *OK], "no config.json; pass a Hugging Face checkpoint directory"),
    (["--model", "{d}/broken", *OK], "cannot read config.json"),
    (["--model", "{d}/llama", *OK], "unsupported model_type 'llama'"),
    (["--model", "tiny:qwen4", *OK], "unknown tiny architecture 'qwen4'; use one of tiny:qwen3_vl"),
    (["--instruction", "  ", "{d}/ok.png"], "argument --instruction: is empty; give the navigation instruction"),
    (["--device", "gpu", *OK], "'gpu' is not a device; use auto, cpu, cuda or cuda:N"),
    (["--instruction", "go", "{d}/ok.png", "{d}/one.png"], "frame is too small: 1x1; pass camera frames of at least 2x2"),
    (["--instruction", "go", "{d}/text.png"], "cannot read image"),
    (["--bogus", *OK], "unrecognized arguments: --bogus; see internvla-s2-infer --help"),
])
def test_infer_usage_errors_are_one_line_before_any_model_loads(inputs, capsys, argv, says):
    assert infer.main([a.format(d=inputs) for a in argv]) == 2
    assert says in one_error_line(capsys, "internvla-s2-infer")


def test_infer_cuda_without_cuda(inputs, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert infer.main(["--device", "cuda", "--instruction", "go", str(inputs / "ok.png")]) == 2
    assert "CUDA is not available; use --device cpu or auto" in one_error_line(capsys, "internvla-s2-infer")


def test_debug_adds_the_traceback(inputs, capsys, monkeypatch):
    monkeypatch.setenv(errors.DEBUG_ENV, "0")  # restored afterwards: --debug exports it for child processes
    assert infer.main(["--debug", "--model", "/no/such/dir", "--instruction", "go", str(inputs / "ok.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "CheckpointError" in err
    assert err.strip().splitlines()[-1].startswith("internvla-s2-infer: /no/such/dir: checkpoint directory not found")
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    assert infer.main(["--model", "/no/such/dir", "--instruction", "go", str(inputs / "ok.png")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_runtime_errors_exit_1_and_name_unexpected_types(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    @errors.guarded("prog")
    def boom(argv=None):
        raise KeyError("x")

    @errors.guarded("prog")
    def expected(argv=None):
        raise errors.CliError("the thing broke; do this")

    assert boom([]) == 1
    assert one_error_line(capsys, "prog") == "prog: KeyError: 'x'; rerun with --debug for the traceback"
    assert expected([]) == 1
    assert one_error_line(capsys, "prog") == "prog: the thing broke; do this"


def test_train_model_errors(tmp_path, capsys, monkeypatch, inputs):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    base = ["--data", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert train_cli.main(base) == 2  # no --model: the 8B hub id, not downloaded
    line = one_error_line(capsys, "internvla-s2-train")
    assert "no --model given" in line and "Qwen/Qwen3-VL-8B-Instruct" in line and "pass --model DIR" in line
    assert train_cli.main(base + ["--model", "/no/such/ckpt"]) == 2
    line = one_error_line(capsys, "internvla-s2-train")
    assert "checkpoint directory not found" in line and "hf download" not in line
    (tmp_path / "runs").mkdir()
    assert train_cli.main(base + ["--model", "runs/ckpt"]) == 2  # a relative path, not a hub id
    assert "hf download" not in one_error_line(capsys, "internvla-s2-train")
    assert train_cli.main(base + ["--model", str(inputs / "broken")]) == 2
    assert "cannot read config.json" in one_error_line(capsys, "internvla-s2-train")
    assert not (tmp_path / "out").exists()


def test_train_help_shows_defaults_and_no_rst(capsys):
    with pytest.raises(SystemExit) as done:
        train_cli.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "``" not in out
    assert "default: 125" in out and "default: 8B" in out and "--debug" in out


def test_make_tiny_unknown_arch(tmp_path, capsys):
    assert tiny.main(["--arch", "qwen4", str(tmp_path / "t")]) == 2
    assert "invalid choice: 'qwen4'" in one_error_line(capsys, "internvla-s2-make-tiny")


@pytest.mark.parametrize("prog", ["internvla-s2-infer", "internvla-s2-eval", "internvla-s2-train", "internvla-s2-make-tiny"])
def test_help_is_plain_text_with_debug(prog, capsys):
    from internvla_s2_node.evaluation import cli as eval_cli

    main = {"internvla-s2-infer": infer.main, "internvla-s2-eval": eval_cli.main, "internvla-s2-train": train_cli.main,
            "internvla-s2-make-tiny": tiny.main}[prog]
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"usage: {prog}")
    assert "``" not in out and "--debug" in out
    if prog == "internvla-s2-infer":
        assert "auto (CUDA when available, else CPU), cpu, cuda or cuda:N" in " ".join(out.split())
