"""training.train on a tiny configuration (64x32 input, batches of 4 ids x 2 images) on the small preset."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from model.builder import load_checkpoint
from model.checkpoint import read_checkpoint_file
from model.errors import ReidError
from tests.training.train_fixtures import tiny_config
from training.config import ConfigError, load_config
from training.data import DataError, build_train_loader, check_train_records
from training.datasets import load_dataset
from training.train import train


def state_of(path):
    return read_checkpoint_file(path)["state_dict"]


def assert_same_weights(a, b):
    sa, sb = state_of(a), state_of(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_loss_goes_down_and_the_run_folder_is_complete(small_synthetic, tmp_path):
    cfg = tiny_config(
        small_synthetic,
        tmp_path,
        overrides=[
            "train.epochs=3",
            "train.max_iters_per_epoch=3",
            "train.eval_every=2",
            "train.evaluate_at_end=true",
            "train.checkpoint_every=2",
        ],
    )
    result = train(cfg)

    run = tmp_path / "tiny"
    assert result["run_dir"] == run and result["checkpoint"] == run / "final.pt"
    assert result["epochs_done"] == 3 and result["iterations"] == 9
    assert result["images_per_s"] > 0 and result["stopped_by_budget"] is False
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if line["kind"] == "iter"]
    assert len(losses) == 9
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:2]) / 2
    assert [line["epoch"] for line in lines if line["kind"] == "epoch"] == [0, 1, 2]
    assert result["last_loss"] == pytest.approx(sum(losses[-3:]) / 3)

    net, meta = load_checkpoint(result["checkpoint"])
    assert (meta.variant, meta.input_size, meta.dataset, meta.epoch) == ("rgasc", (64, 32), "synthetic", 3)
    assert net.cls is None  # loaded for inference
    assert read_checkpoint_file(result["checkpoint"])["meta"]["num_classes"] == 12
    assert load_config(run / "config.yaml") == cfg  # the resolved configuration is saved with the run
    assert load_checkpoint(run / "checkpoints" / "epoch_0002.pt")[1].epoch == 2

    # evaluation during training (epoch 2) and at the end: JSON reports, one picture, logged
    final_report = json.loads((run / "eval.json").read_text())
    assert final_report["model"]["epoch"] == 3 and final_report["num_query"] == 25
    assert result["metrics"]["mAP"] == pytest.approx(final_report["mAP"])
    assert json.loads((run / "eval_epoch_0002.json").read_text())["model"]["epoch"] == 2
    assert (run / "ranked_lists.png").is_file()
    assert [line["epoch"] for line in lines if line["kind"] == "eval"] == [2, 3]
    # and a picture of the curves next to the log
    from PIL import Image

    with Image.open(run / "curves.png") as curves:
        assert curves.format == "PNG" and curves.size == (1300, 400)


def test_resume_gives_the_same_weights_as_not_stopping(small_synthetic, tmp_path):
    straight = train(tiny_config(small_synthetic, tmp_path, "straight"))
    assert straight["iterations"] == 4

    first = train(tiny_config(small_synthetic, tmp_path, "stopped", ["train.epochs=1"]))
    assert first["epochs_done"] == 1
    # draw from the global RNGs in between: the resume file restores them
    torch.rand(100)
    resumed = train(tiny_config(small_synthetic, tmp_path, "stopped"), resume=first["run_dir"] / "resume.pt")
    assert resumed["epochs_done"] == 2 and resumed["iterations"] == 4
    assert_same_weights(straight["checkpoint"], resumed["checkpoint"])


def test_budget_stops_mid_epoch_writes_final_and_resumes_exactly(small_synthetic, tmp_path):
    straight = train(
        tiny_config(small_synthetic, tmp_path, "straight", ["train.epochs=1", "train.max_iters_per_epoch=3"])
    )

    budget = tiny_config(
        small_synthetic,
        tmp_path,
        "budget",
        ["train.epochs=1", "train.max_iters_per_epoch=3", "train.max_minutes=1e-6"],
    )
    stopped = train(budget)
    assert stopped["stopped_by_budget"] is True
    assert stopped["iterations"] == 1 and stopped["epochs_done"] == 0
    assert stopped["checkpoint"].is_file()
    load_checkpoint(stopped["checkpoint"])  # a usable checkpoint

    budget.train.max_minutes = None
    resumed = train(budget, resume=stopped["run_dir"])
    assert resumed["iterations"] == 3 and resumed["stopped_by_budget"] is False
    assert_same_weights(straight["checkpoint"], resumed["checkpoint"])


def test_resume_refuses_a_different_model(small_synthetic, tmp_path):
    first = train(
        tiny_config(small_synthetic, tmp_path, "a", ["train.epochs=1", "train.max_iters_per_epoch=1"])
    )
    other = tiny_config(small_synthetic, tmp_path, "a", ["model.variant=none"])
    with pytest.raises(ConfigError, match="model"):
        train(other, resume=first["run_dir"])
    again = train(
        tiny_config(small_synthetic, tmp_path, "a", ["train.epochs=1", "train.max_iters_per_epoch=1"])
    )
    assert again["run_dir"] == tmp_path / "a-1"  # a new run never overwrites an old one
    assert first["checkpoint"].is_file()


def test_a_missing_resume_file_is_a_user_error(tmp_path):
    with pytest.raises(ReidError, match="resume file not found"):
        train(tiny_config(tmp_path, tmp_path), resume=tmp_path / "nope")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ReidError, match="cannot read resume file"):
        train(tiny_config(tmp_path, tmp_path), resume=tmp_path / "junk.pt")


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_corrupt_image_is_reported_by_file_name_from_a_worker(small_synthetic, tmp_path):
    root = copy_dataset(small_synthetic, tmp_path / "data")
    dataset = load_dataset("synthetic", root)
    victim = dataset.train[0].pid
    bad = [r.path for r in dataset.train if r.pid == victim]
    for path in bad:
        path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    cfg = tiny_config(
        root, tmp_path, overrides=["data.workers=1", "train.max_iters_per_epoch=null", "train.epochs=1"]
    )
    with pytest.raises(DataError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert any(str(path) in message for path in bad)


def test_missing_or_empty_files_and_label_gaps_are_found_before_training(small_synthetic, tmp_path):
    root = copy_dataset(small_synthetic, tmp_path / "data")
    records = load_dataset("synthetic", root).train
    records[5].path.write_bytes(b"")
    with pytest.raises(DataError, match=str(records[5].path)):
        check_train_records(records, 4, 2)
    records[7].path.unlink()
    with pytest.raises(DataError, match="not found: " + str(records[7].path)):
        build_train_loader(records, input_size=(64, 32), ids_per_batch=4, num_instances=2, workers=0)
    good = [r for r in load_dataset("synthetic", small_synthetic).train]
    gap = [r for r in good if r.pid != 3]
    with pytest.raises(DataError, match=r"labels without images: \[3\]"):
        check_train_records(gap, 4, 2)
    with pytest.raises(DataError, match="fewer than one batch of 16"):
        check_train_records(good, 16, 4)


def test_augmentation_does_not_depend_on_workers(small_synthetic):
    records = load_dataset("synthetic", small_synthetic).train
    batches = []
    for workers in (0, 2):
        loader, sampler = build_train_loader(
            records, input_size=(64, 32), ids_per_batch=4, num_instances=2, workers=workers, seed=3
        )
        sampler.set_epoch(1, start=1, stop=2)
        (batch,) = list(loader)
        batches.append(batch)
    assert torch.equal(batches[0].images, batches[1].images)
    assert torch.equal(batches[0].pids, batches[1].pids)
    assert batches[0].images.shape == (8, 3, 64, 32)


def test_reid_train_and_resume_from_the_command_line(small_synthetic, tmp_path, capsys):
    from reid.cli import main
    from tests.training.train_fixtures import TINY

    sets = [arg for item in TINY for arg in ("--set", item)]
    args = ["train", "--config", "synthetic", "--root", str(small_synthetic), "--output-dir", str(tmp_path)]
    code = main(
        [*args, "--name", "cli", *sets, "--set", "train.epochs=1", "--set", "train.max_iters_per_epoch=1"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_done"] == 1 and summary["checkpoint"] == str(tmp_path / "cli" / "final.pt")

    code = main(["train", "--resume", str(tmp_path / "cli"), "--set", "train.epochs=2"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_done"] == 2 and summary["iterations"] == 2


def test_ctrl_c_keeps_a_resume_file_that_continues_exactly(small_synthetic, tmp_path, monkeypatch):
    import training.train as train_module

    straight = train(tiny_config(small_synthetic, tmp_path, "straight"))

    calls = {"n": 0}
    real_check = train_module.check_batch

    def interrupt_second_batch(batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_check(batch)

    monkeypatch.setattr(train_module, "check_batch", interrupt_second_batch)
    cfg = tiny_config(small_synthetic, tmp_path, "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_module, "check_batch", real_check)
    resume_file = tmp_path / "interrupted" / "resume.pt"
    assert not (tmp_path / "interrupted" / "final.pt").exists()
    assert torch.load(resume_file, weights_only=True)["position"] == {"epoch": 0, "iteration": 1, "step": 1}

    resumed = train(cfg, resume=resume_file)
    assert resumed["iterations"] == 4
    assert_same_weights(straight["checkpoint"], resumed["checkpoint"])


@pytest.mark.parametrize(("precision", "bf16"), [("bf16", True), ("fp32", False)])
def test_train_precision_decides_the_autocast_of_forward_and_loss(
    small_synthetic, tmp_path, monkeypatch, precision, bf16
):
    import training.train as train_module

    seen = []

    class Seen(Exception):
        pass

    def recording(*args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        raise Seen

    monkeypatch.setattr(train_module, "forward_and_loss", recording)
    with pytest.raises(Seen):
        train(tiny_config(small_synthetic, tmp_path, overrides=[f"train.precision={precision}"]))
    assert seen[0][0] is bf16
    if bf16:
        assert seen[0][1] == torch.bfloat16


def test_a_real_dataset_config_refuses_to_start_without_the_backbone_file(tmp_path):
    cfg = load_config("market1501", [f"data.root={tmp_path}", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"resnet50-19c8e357\.pth.*model\.backbone_weights=") as caught:
        train(cfg)
    assert "model.random_init=true" in str(caught.value)
    cfg.model.backbone_weights = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="missing.pth: no such file"):
        train(cfg)
    cfg.model.random_init = True
    with pytest.raises(ConfigError, match="contradict"):
        train(cfg)
    assert not (tmp_path / "market1501").exists()  # refused before anything was written


def test_a_new_run_can_start_from_a_re_id_checkpoint(small_synthetic, tmp_path):
    from training.train import _build_network, read_init_weights

    first = train(tiny_config(small_synthetic, tmp_path, "first", ["train.epochs=1"]))
    saved = state_of(first["checkpoint"])
    start = ["model.random_init=false", f"model.init_weights={first['checkpoint']}"]
    cfg = tiny_config(small_synthetic, tmp_path, "second", start)
    num_classes = saved["cls.weight"].shape[0]

    same_ids = _build_network(
        cfg, num_classes, from_resume=False, init_weights=read_init_weights(cfg)
    ).state_dict()
    for key, value in saved.items():
        assert torch.equal(same_ids[key], value), key
    other_ids = _build_network(
        cfg, num_classes + 3, from_resume=False, init_weights=read_init_weights(cfg)
    ).state_dict()
    assert (
        other_ids["cls.weight"].shape[0] == num_classes + 3
    )  # fine-tuning on other people: a new classifier
    assert torch.equal(other_ids["feat_bn.weight"], saved["feat_bn.weight"])
    assert torch.equal(other_ids["backbone.layer4.2.conv3.weight"], saved["backbone.layer4.2.conv3.weight"])
    fresh = _build_network(
        tiny_config(small_synthetic, tmp_path), num_classes, from_resume=False
    ).state_dict()
    assert not torch.equal(fresh["backbone.layer4.2.conv3.weight"], saved["backbone.layer4.2.conv3.weight"])

    second = train(cfg)  # and it trains on from there
    assert second["iterations"] > 0 and state_of(second["checkpoint"]).keys() == saved.keys()


def test_a_checkpoint_for_another_network_or_no_file_is_refused_before_anything_is_written(
    small_synthetic, tmp_path
):
    first = train(tiny_config(small_synthetic, tmp_path, "first", ["train.epochs=1"]))
    start = ["model.random_init=false", f"model.init_weights={first['checkpoint']}"]
    wider = tiny_config(
        small_synthetic, tmp_path, "wider", [*start, "model.input_size=[128,64]", "model.ratios=[8,4,4]"]
    )
    with pytest.raises(ConfigError, match=r"holds a rgasc network for 64x32 input.*asks for rgasc, 128x64"):
        train(wider)
    both = tiny_config(small_synthetic, tmp_path, "both", [f"model.init_weights={first['checkpoint']}"])
    with pytest.raises(ConfigError, match="init_weights=.*and model.random_init=true contradict"):
        train(both)
    missing = tiny_config(
        small_synthetic, tmp_path, "missing", ["model.random_init=false", "model.init_weights=nope.pt"]
    )
    with pytest.raises(ConfigError, match="nope.pt: no such file"):
        train(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pt"):
        train(
            tiny_config(
                small_synthetic, tmp_path, "junk", ["model.random_init=false", f"model.init_weights={junk}"]
            )
        )
    assert not any((tmp_path / name).exists() for name in ("both", "missing", "junk"))


def test_sigterm_stops_a_training_run_like_ctrl_c_and_keeps_its_resume_file(small_synthetic, tmp_path):
    """`docker stop`, Kubernetes or a preempted GPU node send SIGTERM: the run keeps its work as on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.training.train_fixtures import TINY

    sets = [arg for item in TINY for arg in ("--set", item)]
    command = [sys.executable, "-m", "reid", "train", "--config", "synthetic", "--root", str(small_synthetic)]
    command += ["--output-dir", str(tmp_path), "--name", "preempted", *sets]
    command += ["--set", "train.epochs=1000", "--set", "train.max_iters_per_epoch=null"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = tmp_path / "preempted" / "log.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (log.is_file() and '"kind": "iter"' in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    assert "interrupted at epoch" in err and "--resume" in err
    resume = torch.load(tmp_path / "preempted" / "resume.pt", weights_only=True)
    assert resume["position"]["step"] >= 1
    assert not (tmp_path / "preempted" / "final.pt").exists()
