"""`reid embed`: refuses without weights, writes the .npy and its sidecar in input order."""

import json

import numpy as np
import pytest
from PIL import Image

from model import ModelMeta, build_model, save_checkpoint
from reid.cli import main


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("b.jpg", "a.png", "sub/c.jpg"):
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_refuses_without_weights(image_dir, tmp_path, capsys):
    assert main(["embed", str(image_dir), "--out", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err
    assert "no --weights" in err and "reid train" in err and "--random-init" in err
    assert not (tmp_path / "e.npy").exists()


def test_embeds_folder_and_files_in_order(image_dir, tmp_path):
    weights = tmp_path / "w.pt"
    save_checkpoint(weights, build_model("none", input_size=(128, 64)), ModelMeta(variant="none", input_size=(128, 64)))
    out = tmp_path / "out" / "e.npy"
    extra = image_dir / "a.png"
    assert main(["embed", str(image_dir), str(extra), "--weights", str(weights), "--out", str(out), "--batch-size", "2"]) == 0
    vectors = np.load(out)
    sidecar = json.loads((tmp_path / "out" / "e.files.json").read_text())
    names = [p.split("imgs/")[-1] for p in sidecar["files"]]
    assert names == ["a.png", "b.jpg", "sub/c.jpg", "a.png"]
    assert vectors.shape == (4, 2048) and vectors.dtype == np.float32
    assert np.allclose(vectors[0], vectors[3], atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_random_init_and_errors(image_dir, tmp_path, capsys):
    out = tmp_path / "r.npy"
    assert main(["embed", str(image_dir / "b.jpg"), "--random-init", "--variant", "none", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 2048)
    assert main(["embed", str(tmp_path / "missing"), "--random-init", "--out", str(out)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["embed", str(image_dir), "--weights", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_the_no_weights_hint_names_commands_that_work():
    """Every command in the hint parses, `reid synth --out` and `reid train --root` name the same folder,
    and the files it names are the ones those commands (and `make demo`) write."""
    import re
    import shlex
    from pathlib import Path

    from model.cli import NO_WEIGHTS_HELP
    from reid.cli import build_parser
    from training.config import load_config

    parser = build_parser()
    commands = [shlex.split(c) for c in re.findall(r"`(reid [^`]+)`", NO_WEIGHTS_HELP)]
    assert len(commands) >= 3
    parsed = {tuple(c[1:2]): [] for c in commands}
    for command in commands:
        parsed[tuple(command[1:2])].append(parser.parse_args(command[1:]))  # argparse exits on a bad command
    synth = parsed[("synth",)][0]
    train = next(a for a in parsed[("train",)] if a.config == "synthetic")
    assert Path(synth.out) == Path(train.root)
    cfg = load_config(train.config, [f"data.root={train.root}"])
    assert str(cfg.run_dir / "final.pt") in NO_WEIGHTS_HELP
    demo = parser.parse_args(["demo"])
    assert f"--weights {demo.data / 'model.pt'}" in NO_WEIGHTS_HELP  # where `reid demo` saves its model


def test_batches_in_parallel_give_the_serial_vectors_in_order(image_dir, tmp_path, capsys):
    import torch

    weights = tmp_path / "w.pt"
    save_checkpoint(weights, build_model("none", input_size=(128, 64)), ModelMeta(variant="none", input_size=(128, 64)))
    files = [str(p) for p in sorted(image_dir.rglob("*")) if p.suffix in (".jpg", ".png")] * 3  # 9 images
    threads = torch.get_num_threads()
    base = ["embed", *files, "--weights", str(weights), "--batch-size", "2", "--device", "cpu", "--out"]
    assert main([*base, str(tmp_path / "serial.npy"), "--workers", "1"]) == 0
    assert main([*base, str(tmp_path / "parallel.npy"), "--workers", "3"]) == 0  # 5 batches over 3 workers
    assert main([*base, str(tmp_path / "auto.npy")]) == 0
    assert torch.get_num_threads() == threads  # the run's one-thread-per-worker setting is put back
    serial = np.load(tmp_path / "serial.npy")
    for name in ("parallel", "auto"):
        other = np.load(tmp_path / f"{name}.npy")
        assert other.shape == serial.shape == (9, 2048)
        # Same batches, same order; only the intra-op thread count differs (oneDNN's summation order).
        assert (other * serial).sum(1).min() >= 0.99999
    assert np.allclose(serial[:3], serial[3:6], atol=1e-6)  # repeated files, repeated rows: order kept
    assert main([*base, str(tmp_path / "bad.npy"), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "bad.npy").exists()
