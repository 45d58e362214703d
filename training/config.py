"""Training configuration: typed dataclasses read once from YAML, overridable with `a.b=value` strings.

    cfg = load_config("market1501")                                   # training/configs/market1501.yaml
    cfg = load_config("path/to/my.yaml", ["data.root=/data/market", "train.epochs=120"])
    cfg.run_dir                                                       # <output_dir>/<name>

Every value has a default equal to the official RGA recipe (docs: rga-recipe.md), so a YAML file only
states what differs. Override values are parsed as YAML (`train.max_minutes=6`, `model.input_size=[128,64]`,
`model.backbone_weights=null`). An unknown key, in a file or an override, is a ReidError naming it; so is a
value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model.device import PRECISIONS
from model.errors import ReidError
from model.spec import VARIANTS

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ReidError):
    """A configuration file or override that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    dataset: str = "market1501"  # a name known to training.datasets.load_dataset
    root: str = "data/market1501"
    options: dict[str, Any] = field(default_factory=dict)  # reader options, e.g. {split: labeled} for cuhk03
    ids_per_batch: int = 16  # P identities per batch
    num_instances: int = 4  # K images per identity; batch = P * K
    workers: int = 4  # DataLoader worker processes (0 = load in the main process)


@dataclass
class AugmentConfig:
    translate_p: float = 0.5  # Random2DTranslation probability (resize 1.125x + random crop)
    flip_p: float = 0.5
    erasing_p: float = 0.5
    erasing_area: list[float] = field(default_factory=lambda: [0.02, 0.4])
    erasing_aspect: list[float] = field(default_factory=lambda: [0.3, 3.33])


@dataclass
class ModelConfig:
    variant: str = "rgasc"  # rgasc | rgas | rgac | none
    input_size: list[int] = field(default_factory=lambda: [256, 128])  # (H, W)
    backbone_weights: str | None = None  # torchvision ImageNet ResNet-50 file (resnet50-19c8e357.pth)
    random_init: bool = False  # train from random weights on purpose (required when backbone_weights is null)
    # A re-ID checkpoint (ours or the official code's) whose weights start a new run: fine-tuning, or going on
    # from a finished run with a new schedule. Its classifier is kept only when it has as many ids as the data.
    init_weights: str | None = None
    ratios: list[int] = field(default_factory=lambda: [8, 8, 8])


@dataclass
class LossConfig:
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    ce_weight: float = 1.0
    triplet_weight: float = 1.0


@dataclass
class OptimConfig:
    lr: float = 8e-4  # Adam
    weight_decay: float = 5e-4
    warmup_start_lr: float = 8e-6
    warmup_epochs: int = 20
    milestones: list[int] = field(default_factory=lambda: [80, 120, 160, 200, 240, 280, 320, 360])
    gamma: float = 0.5


@dataclass
class TrainConfig:
    epochs: int = 600
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 (the official recipe) | bf16 (autocast, the fast option on CUDA)
    channels_last: bool = True  # on CUDA
    sync_bn: bool = False  # DDP on CUDA: BatchNorm over the global batch (default: each rank's share)
    checkpoint_every: int = 40  # epochs between checkpoints (0 = only the final one)
    eval_every: int = 0  # epochs between evaluations during training (0 = none)
    evaluate_at_end: bool = True
    max_iters_per_epoch: int | None = None  # cap on iterations per epoch (smoke runs)
    max_minutes: float | None = None  # wall-clock budget: stop after the iteration that exceeds it
    log_every: int = 20  # iterations between JSONL log lines
    progress: bool = True  # tqdm bar (rank 0 only)


@dataclass
class EvalConfig:
    feature: str = "feat_"  # feat_ (pooled) or feat (BNNeck); the recipe reports both
    flip: bool = False
    rerank: bool = False
    batch_size: int = 128
    ranked_lists: int = 6  # queries drawn in ranked_lists.png (0 = no picture)


@dataclass
class Config:
    name: str = "run"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def batch_size(self) -> int:
        return self.data.ids_per_batch * self.data.num_instances

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    def validate(self) -> Config:
        """Check values that every run needs; raise ConfigError naming the key."""
        problems = []
        if self.model.variant not in VARIANTS:
            problems.append(f"model.variant must be one of {', '.join(VARIANTS)}, got {self.model.variant!r}")
        size = self.model.input_size
        if len(size) != 2 or any(s <= 0 or s % 16 for s in size):
            problems.append(f"model.input_size must be [H, W], positive multiples of 16, got {size}")
        if self.data.ids_per_batch < 1 or self.data.num_instances < 1:
            problems.append("data.ids_per_batch and data.num_instances must be >= 1")
        if self.data.workers < 0:
            problems.append("data.workers must be >= 0")
        if self.train.epochs < 1:
            problems.append(f"train.epochs must be >= 1, got {self.train.epochs}")
        if self.train.max_minutes is not None and self.train.max_minutes <= 0:
            problems.append("train.max_minutes must be > 0 (or null)")
        if self.train.max_iters_per_epoch is not None and self.train.max_iters_per_epoch < 1:
            problems.append("train.max_iters_per_epoch must be >= 1 (or null)")
        if self.train.device not in ("auto", "cpu", "cuda") and not self.train.device.startswith("cuda:"):
            problems.append(f"train.device must be auto, cpu or cuda, got {self.train.device!r}")
        if self.train.precision not in PRECISIONS:
            problems.append(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.train.precision!r}")
        if self.eval.feature not in ("feat_", "feat"):
            problems.append(f"eval.feature must be feat_ or feat, got {self.eval.feature!r}")
        if self.train.log_every < 1:
            problems.append("train.log_every must be >= 1")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            problems.append(f"name must be a plain folder name, got {self.name!r}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return self


# -- reading and overriding ----------------------------------------------------------------------------


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type hint of `key`, converting where it is lossless (int -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if hint is Any:
        return value
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, str) and _looks_like_float(value):  # YAML 1.1 reads 8e-4 as a string
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is str:
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}")  # pragma: no cover - a bug in this module


def _set(obj: Any, path: list[str], value: Any, full_key: str) -> None:
    name = path[0]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        section = full_key[: len(full_key) - len(".".join(path))].rstrip(".")
        where = f"under {section!r}" if section else "at the top level"
        raise ConfigError(f"unknown configuration key {full_key!r} (keys {where}: {', '.join(fields)})")
    hint = typing.get_type_hints(type(obj))[name]
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            if not isinstance(value, dict):
                raise ConfigError(f"{full_key} is a section; give a mapping or set {full_key}.<key>")
            for sub_key, sub_value in value.items():
                _set(current, [str(sub_key)], sub_value, f"{full_key}.{sub_key}")
            return
        _set(current, path[1:], value, full_key)
        return
    if len(path) > 1:
        if isinstance(current, dict):  # free-form mapping (data.options.split=labeled)
            current[".".join(path[1:])] = value
            return
        raise ConfigError(f"unknown configuration key {full_key!r} ({name!r} is a value, not a section)")
    setattr(obj, name, _coerce(value, hint, full_key))


def apply_mapping(cfg: Config, mapping: dict[str, Any], source: str = "") -> Config:
    """Set every key of a nested mapping on `cfg` (unknown keys are errors)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source or 'configuration'}: the top level must be a mapping")
    for key, value in mapping.items():
        try:
            _set(cfg, [str(key)], value, str(key))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
    return cfg


def apply_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    """Apply `a.b=value` strings; values are parsed as YAML (`8e-4`, `[128,64]`, `null`, `true`)."""
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})".split("\n")[0]) from None
        _set(cfg, key.split("."), value, key)
    return cfg


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path as given, else training/configs/<name>.yaml."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"configuration file not found: {candidate}")
        return candidate
    path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no configuration named {str(name_or_path)!r}; choose one of {', '.join(available_configs())} "
            "or give a path to a YAML file"
        )
    return path


def load_config(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Read a named configuration (training/configs/<name>.yaml) or a YAML file, then apply overrides.

    Raises ConfigError (a ReidError) for a missing file, invalid YAML, an unknown key or a bad value.
    """
    path = resolve_config_path(name_or_path)
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".split("\n")[0]) from None
    cfg = apply_mapping(Config(), mapping, str(path))
    if "name" not in mapping:
        cfg.name = path.stem
    apply_overrides(cfg, overrides)
    return cfg.validate()


BACKBONE_FILE = "resnet50-19c8e357.pth"


def check_backbone_weights(cfg: Config) -> None:
    """A new run starts from the ImageNet backbone file, from a re-ID checkpoint (``model.init_weights``),
    or from random weights only when asked explicitly.

    Raises ConfigError naming the file and how to pass it (nothing is ever downloaded).
    """
    weights, random_init, init = cfg.model.backbone_weights, cfg.model.random_init, cfg.model.init_weights
    chosen = [
        name
        for name, given in (
            (f"model.backbone_weights={weights}", weights is not None),
            (f"model.init_weights={init}", init is not None),
            ("model.random_init=true", random_init),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} contradict each other; choose one")
    if init is not None:
        if not Path(init).is_file():
            raise ConfigError(
                f"model.init_weights={init}: no such file (expected a re-ID checkpoint, e.g. a run's final.pt)"
            )
        return
    if weights is None and not random_init:
        raise ConfigError(
            f"model.backbone_weights is not set. The official recipe starts from torchvision's ImageNet "
            f"ResNet-50, the file {BACKBONE_FILE} (nothing is downloaded: place it by hand). Pass it with "
            f"--set model.backbone_weights=PATH/{BACKBONE_FILE}, start from a re-ID checkpoint with "
            "--set model.init_weights=PATH, or train from random weights on purpose "
            "with --set model.random_init=true"
        )
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(
            f"model.backbone_weights={weights}: no such file (expected torchvision's ImageNet ResNet-50, "
            f"{BACKBONE_FILE}); fix the path, or pass --set model.random_init=true to train from random weights"
        )


def config_from_dict(mapping: dict[str, Any]) -> Config:
    """Rebuild a Config from `to_dict()` output (as saved with a run).

    Runs saved before ``train.precision`` existed carry ``train.amp`` (true = bf16 autocast on CUDA, which
    is what they trained with); it is read as the precision it meant.
    """
    train = mapping.get("train")
    if isinstance(train, dict) and "amp" in train:
        train = dict(train)
        train.setdefault("precision", "bf16" if train.pop("amp") else "fp32")
        mapping = {**mapping, "train": train}
    return apply_mapping(Config(), mapping, "saved configuration").validate()
