"""What a synthetic dataset looks like: identity counts, cameras, visit timing, image size; presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

from training.datasets.base import DatasetError

ROUTES = ("campus", "store")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of a generated dataset. Same config (seed included) -> byte-identical files.

    Ranges are inclusive `(low, high)` pairs. `route="store"` makes every visit enter at camera 1
    and leave past the last camera; `"campus"` visits a random ordered subset of cameras.
    """

    preset: str = "market"
    seed: int = 0
    num_train_ids: int = 751
    num_test_ids: int = 750
    num_cameras: int = 6
    cameras_per_visit: tuple[int, int] = (2, 6)
    images_per_track: tuple[int, int] = (2, 6)  # images of one person passing one camera
    num_distractors: int = 2000  # pid 0, gallery only
    num_junk: int = 300  # pid -1, gallery folder, dropped by readers
    twin_fraction: float = 0.1  # share of identities drawn as a near-duplicate of the previous id
    revisit_fraction: float = 0.05  # share of identities that come back later the same day
    day: str = "2024-06-03"
    opening_hours: tuple[int, int] = (8, 20)  # UTC hours [open, close)
    visit_minutes: tuple[float, float] = (2.0, 25.0)
    route: str = "campus"
    height: int = 128
    width: int = 64
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        problems = []
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            problems.append("num_train_ids and num_test_ids must be >= 1")
        if self.num_train_ids + self.num_test_ids > 9999:
            problems.append("at most 9999 identities fit the 4-digit Market file names")
        if not 2 <= self.num_cameras <= 9:
            problems.append("num_cameras must be 2..9 (one digit in Market file names)")
        low, high = self.cameras_per_visit
        if not 2 <= low <= high <= self.num_cameras:
            problems.append(
                f"cameras_per_visit must satisfy 2 <= low <= high <= num_cameras, got {low, high}"
            )
        if not 1 <= self.images_per_track[0] <= self.images_per_track[1]:
            problems.append("images_per_track must satisfy 1 <= low <= high")
        if not 0 <= self.opening_hours[0] < self.opening_hours[1] <= 24:
            problems.append("opening_hours must satisfy 0 <= open < close <= 24")
        if not 0 < self.visit_minutes[0] <= self.visit_minutes[1]:
            problems.append("visit_minutes must satisfy 0 < low <= high")
        if self.visit_minutes[1] > 60 * (self.opening_hours[1] - self.opening_hours[0]):
            problems.append("visit_minutes must fit within opening_hours")
        if self.route not in ROUTES:
            problems.append(f"route must be one of {ROUTES}")
        if self.route == "store" and self.num_cameras < 3:
            problems.append("route 'store' needs >= 3 cameras (entrance, aisles, exit)")
        if not (0 <= self.twin_fraction <= 1 and 0 <= self.revisit_fraction <= 1):
            problems.append("twin_fraction and revisit_fraction must be in [0, 1]")
        if self.num_distractors < 0 or self.num_junk < 0:
            problems.append("num_distractors and num_junk must be >= 0")
        if self.height < 32 or self.width < 16:
            problems.append("images must be at least 32x16")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append("jpeg_quality must be 1..100")
        try:
            date.fromisoformat(self.day)
        except ValueError:
            problems.append(f"day must be an ISO date like 2024-06-03, got {self.day!r}")
        if problems:
            raise DatasetError("invalid synthetic config: " + "; ".join(problems))

    @classmethod
    def from_preset(cls, name: str = "market", **overrides: object) -> SyntheticConfig:
        """A preset (`market`, `small`, `store`) with some fields replaced, e.g. `seed=3`."""
        if name not in PRESETS:
            raise DatasetError(f"unknown synthetic preset {name!r}; choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DatasetError(f"synthetic config has unknown fields {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


PRESETS: dict[str, SyntheticConfig] = {
    # Market-1501-like counts: ~13k train images, ~3k queries (one per id per camera), ~12k gallery
    "market": SyntheticConfig(preset="market"),
    # a few hundred images, generated in about a second: for tests
    "small": SyntheticConfig(
        preset="small",
        num_train_ids=12,
        num_test_ids=10,
        num_cameras=3,
        cameras_per_visit=(2, 3),
        images_per_track=(3, 6),
        num_distractors=20,
        num_junk=5,
        twin_fraction=0.2,
        revisit_fraction=0.1,
    ),
    # the service demo's store: entrance, aisles, checkout and exit cameras over one day
    "store": SyntheticConfig(
        preset="store",
        num_train_ids=100,
        num_test_ids=200,
        num_cameras=5,
        cameras_per_visit=(3, 5),
        images_per_track=(2, 5),
        num_distractors=150,
        num_junk=30,
        twin_fraction=0.08,
        revisit_fraction=0.15,
        opening_hours=(9, 21),
        visit_minutes=(4.0, 40.0),
        route="store",
    ),
}
