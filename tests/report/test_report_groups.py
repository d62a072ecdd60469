"""The representation sections of the report on a real tiny group-composition run (S4)."""

from __future__ import annotations

import json
from pathlib import Path

from project.report import main as report_main
from tests.conftest import train_in_process


def test_report_of_a_group_run_names_its_key_irreps(tmp_path: Path) -> None:
    run = train_in_process(
        tmp_path, "data=s5", "data.group=S4", "data.frac_train=0.6", "trainer=cpu",
        "trainer.max_epochs=8", "trainer.check_val_every_n_epoch=2",
        "model.optimizer.lr=1e-2", "callbacks.snapshots.every_n_epochs=4",
    )  # fmt: skip
    assert report_main([str(run)]) == 0
    text = (run / "report" / "index.html").read_text()
    for heading in ("Representations of the final model", "Restricted and excluded loss over "
                    "training", "Representations over training", "key irreps (logit shares)"):  # fmt: skip
        assert heading in text, heading
    assert "Fourier" not in text
    data = json.loads((run / "report" / "report.json").read_text())["representations"]
    assert sorted(r["dim"] for r in data["irreps"]) == [1, 1, 2, 3, 3]
    names = {r["name"] for r in data["irreps"]}
    assert set(data["key_irreps"]) <= names
    traj = data["trajectory"]
    assert traj["epoch"] == [0, 4, 8]
    for name in names:  # the shares of each kind add up to 1 at every snapshot
        assert len(traj[f"logit_share_{name}"]) == 3
    for i in range(3):
        total = sum(traj[f"embed_share_{n}"][i] for n in names)
        assert abs(total - 1) < 1e-9
    assert all(s >= 0 for s in traj["seconds"])
