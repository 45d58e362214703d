"""What benchmarks record: the command without this machine's paths (BENCHMARKS.md is shared)."""

from __future__ import annotations

from bench import report


def test_recorded_commands_carry_no_machine_paths():
    root = report.BENCHMARKS.parent
    line = report.command_line(
        ["--weights", "/srv/runs/store3/final.pt", "--data=/home/me/scenes", f"--out={root}/bench/out.json",
         str(root / "README.md"), "--seeds", "0", "1", "relative/path.pt"]
    )  # fmt: skip
    assert line.endswith(
        "--weights DIR/final.pt --data=DIR/scenes --out=bench/out.json README.md --seeds 0 1 relative/path.pt"
    )
    assert "/srv" not in line and "/home" not in line and str(root) not in line
