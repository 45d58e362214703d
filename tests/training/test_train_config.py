"""training.config: named configurations, a.b=value overrides, errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from reid.cli import main
from training.config import ConfigError, available_configs, config_from_dict, load_config
from training.schedule import RECIPE_BASE_LR, RECIPE_MILESTONES, RECIPE_WARMUP_EPOCHS, RECIPE_WARMUP_START_LR


def test_every_dataset_has_a_config_with_the_recipe():
    assert {"market1501", "dukemtmc", "cuhk03", "msmt17", "synthetic"} <= set(available_configs())
    for name in ("market1501", "dukemtmc", "cuhk03", "msmt17"):
        cfg = load_config(name)
        assert cfg.name == name and cfg.data.dataset == name
        assert (cfg.data.ids_per_batch, cfg.data.num_instances, cfg.batch_size) == (16, 4, 64)
        assert cfg.model.input_size == [256, 128] and cfg.model.variant == "rgasc"
        assert cfg.optim.lr == RECIPE_BASE_LR and cfg.optim.warmup_start_lr == RECIPE_WARMUP_START_LR
        assert cfg.optim.warmup_epochs == RECIPE_WARMUP_EPOCHS
        assert tuple(cfg.optim.milestones) == RECIPE_MILESTONES
        assert cfg.train.epochs == 600 and cfg.optim.weight_decay == 5e-4
        assert (cfg.loss.label_smoothing, cfg.loss.triplet_margin) == (0.1, 0.3)
    assert load_config("cuhk03").data.options == {"split": "labeled"}


def test_store_config_reads_the_store_crops_at_their_size():
    cfg = load_config("store-reid")
    assert cfg.data.dataset == "synthetic" and cfg.data.root == "data/store-reid"
    assert cfg.model.input_size == [128, 64] and cfg.model.random_init
    assert max(cfg.optim.milestones) < cfg.train.epochs


def test_overrides_are_yaml_parsed_and_typed():
    cfg = load_config(
        "synthetic",
        [
            "data.root=/data/x",
            "train.max_minutes=6",
            "model.input_size=[128,64]",
            "optim.lr=3e-4",
            "model.backbone_weights=null",
            "train.precision=bf16",
            "data.options.split=detected",
            "name=demo",
        ],
    )
    assert cfg.data.root == "/data/x"
    assert cfg.train.max_minutes == 6.0 and isinstance(cfg.train.max_minutes, float)
    assert cfg.model.input_size == [128, 64]
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.backbone_weights is None and cfg.train.precision == "bf16"
    assert cfg.data.options == {"split": "detected"}
    assert cfg.run_dir.as_posix() == "runs/demo"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.bogus=1", "train.bogus"),
        ("nosuch.key=1", "nosuch.key"),
        ("data.root.deeper=1", "data.root.deeper"),
        ("train.epochs=abc", "train.epochs"),
        ("model.input_size=5", "model.input_size"),
        ("model.variant=resnet", "model.variant"),
        ("train.epochs", "train.epochs"),
    ],
)
def test_a_bad_override_is_an_error_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config("synthetic", [override])


def test_unknown_key_in_a_yaml_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  dataset: synthetic\n  ids_per_btach: 8\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*data\.ids_per_btach"):
        load_config(path)
    with pytest.raises(ConfigError, match="no configuration named 'nope'"):
        load_config("nope")


def test_a_saved_config_reads_back_equal(tmp_path):
    cfg = load_config("cuhk03", ["train.epochs=7", "eval.flip=true"])
    path = cfg.save(tmp_path / "config.yaml")
    again = config_from_dict(yaml.safe_load(path.read_text()))
    assert again == cfg
    assert load_config(path).to_dict() == cfg.to_dict()


def test_reid_train_print_config(capsys):
    code = main(
        ["train", "--config", "synthetic", "--set", "train.epochs=5", "--root", "elsewhere", "--print-config"]
    )
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 5
    assert printed["data"]["root"] == "elsewhere"
    assert printed["model"]["variant"] == "rgasc"


def test_reid_train_unknown_key_is_one_line_exit_2(capsys):
    code = main(["train", "--config", "synthetic", "--set", "optim.lrate=1", "--print-config"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lrate" in err[0]


def test_resume_checks_only_what_shapes_the_run_and_reads_older_saved_configurations():
    from training.run_state import check_resume_config

    cfg = load_config("synthetic")
    saved = cfg.to_dict()
    saved["model"].pop("random_init")  # saved before model.random_init existed
    saved["train"].pop("precision")
    saved["train"]["amp"] = True  # and before train.precision: amp meant bf16 autocast on CUDA
    check_resume_config(saved, cfg)  # the same run: resumes
    assert config_from_dict(saved).train.precision == "bf16"
    other = load_config("synthetic", ["model.variant=none"])
    with pytest.raises(ConfigError, match="model.variant"):
        check_resume_config(saved, other)
