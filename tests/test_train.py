"""aezip train: held-out validation, stopping rules, checkpoints and exact resumption, torchrun."""

import contextlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from aezip import progress
from aezip.cli import main
from aezip.codec.sample import sample_field
from aezip.model import load_model
from aezip.model import train as tr
from aezip.model.checkpoint import read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--tile", "16", "--channels", "8", "--batch-size", "4"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def train_json(capsys, *args):
    code, out, err = run(capsys, "train", *args, *TINY, "--json", "--quiet")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, sample_field((64, 64), seed=5))
    return path


def test_train_compress_decompress(tmp_path, src, capsys):
    model = tmp_path / "m.h5"
    d = train_json(capsys, src, "-o", model, "--max-steps", "20", "--val-every", "10")
    assert d["steps"] == 20 and d["stop_reason"] == "max-steps" and d["held_out_arrays"] == 1
    for k in ("train_psnr_normalized", "train_bits_per_value", "val_psnr_normalized", "val_bits_per_value",
              "epochs", "seconds"):
        assert np.isfinite(d[k]), k
    code, out, err = run(capsys, "compress", src, "-o", tmp_path / "x.aez", "--model", model, "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == d["name"]
    code, _, err = run(capsys, "decompress", tmp_path / "x.aez", "-o", tmp_path / "x.npy", "--model", model)
    assert code == 0, err
    assert np.load(tmp_path / "x.npy").shape == (64, 64)


def test_human_summary(tmp_path, src, capsys):
    code, out, err = run(capsys, "train", src, "-o", tmp_path / "m.h5", *TINY, "--max-steps", "5")
    assert code == 0, err
    assert "stopped by max-steps" in out and "validation PSNR" in out and "training   PSNR" in out


def test_same_seed_same_model(tmp_path, src, capsys):
    a = train_json(capsys, src, "-o", tmp_path / "a.h5", "--max-steps", "15", "--seed", "3")
    b = train_json(capsys, src, "-o", tmp_path / "b.h5", "--max-steps", "15", "--seed", "3")
    c = train_json(capsys, src, "-o", tmp_path / "c.h5", "--max-steps", "15", "--seed", "4")
    assert a["id"] == b["id"] != c["id"]


@contextlib.contextmanager
def _interrupt_after(n):
    def report(step, figures):
        if step > n:
            raise KeyboardInterrupt

    yield report


def test_resume_continues_exactly(tmp_path, src, capsys, monkeypatch):
    straight = train_json(capsys, src, "-o", tmp_path / "straight.h5", "--max-steps", "40", "--val-every", "10")
    # the same run, killed after step 20 (checkpointed at 20), then resumed from the checkpoint
    ckpt = tmp_path / "run.ckpt.h5"
    with monkeypatch.context() as m:
        m.setattr(progress, "training_bar", lambda total: _interrupt_after(20))
        code, _, _ = run(capsys, "train", src, "-o", tmp_path / "run.h5", *TINY, "--max-steps", "40",
                         "--val-every", "10", "--checkpoint-every", "20", "--quiet")
    assert code == 130 and not (tmp_path / "run.h5").exists()
    assert ckpt.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5, not a pickle
    c = read_checkpoint(str(ckpt))
    assert c["step"] == 20 and c["scheduler"]["last_epoch"] == 20
    assert set(c["adam"]["net.g_a.0.weight"]) == {"exp_avg", "exp_avg_sq", "step"}
    assert c["rng"][0]["torch"].dtype == np.uint8 and isinstance(c["rng"][0]["numpy"]["state"]["state"], int)
    resumed = train_json(capsys, src, "-o", tmp_path / "run.h5", "--resume", ckpt)
    assert resumed["steps"] == 40 and resumed["id"] == straight["id"]
    # a finished run continues with more steps
    longer = train_json(capsys, src, "-o", tmp_path / "longer.h5", "--resume", ckpt, "--max-steps", "50",
                        "--checkpoint-every", "50", "--checkpoint", tmp_path / "longer.ckpt.h5")
    assert longer["steps"] == 50 and longer["id"] != straight["id"]
    assert read_checkpoint(str(tmp_path / "longer.ckpt.h5"))["step"] == 50


def test_resume_refuses_other_options_and_non_checkpoints(tmp_path, src, capsys):
    d = train_json(capsys, src, "-o", tmp_path / "m.h5", "--max-steps", "4", "--checkpoint-every", "2")
    ckpt = d["checkpoint"]
    code, out, err = run(capsys, "train", src, "-o", tmp_path / "n.h5", "--resume", ckpt, "--lr", "0.1")
    assert code == 2 and "--lr" in err and not out
    for bad in (src, tmp_path / "m.h5", tmp_path / "missing.h5"):
        code, _, err = run(capsys, "train", src, "-o", tmp_path / "n.h5", "--resume", bad)
        assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1


def test_held_out_regions_never_reach_training():
    fields = [sample_field((64, 64), seed=1), sample_field((6, 40, 40), seed=2), sample_field((16, 20), seed=3),
              sample_field((20, 20), seed=4)]
    parts, held, info = tr.prepare(fields, 2, 16, 0.1)
    assert info["held_out_arrays"] == 3 and info["arrays"] == 4  # 16x20 is too small to split with tile 16
    seen_train, seen_val = [], []
    tr.TileSampler((), 2, 16, np.random.default_rng(0), parts=parts).sample(400, origins=seen_train)
    tr.TileSampler((), 2, 16, np.random.default_rng(1), parts=held).sample(400, origins=seen_val)
    split = {0: 48, 1: 5, 3: 18}  # 64 - max(ceil(6.4), 16); 6 - ceil(0.6); 20 - ceil(2) (a tile would leave too few)
    assert {a for a, _, _ in seen_val} == {0, 1, 3}
    assert all(lo >= split[a] for a, lo, _ in seen_val)
    assert all(a == 2 or hi <= split[a] for a, _, hi in seen_train)
    assert {a for a, _, _ in seen_train} == {0, 1, 2, 3}


def test_until_psnr_and_patience(tmp_path, src, capsys):
    d = train_json(capsys, src, "-o", tmp_path / "a.h5", "--max-steps", "100", "--val-every", "5",
                   "--until-psnr", "1")
    assert d["stop_reason"] == "until-psnr" and d["steps"] == 5
    d = train_json(capsys, src, "-o", tmp_path / "b.h5", "--max-steps", "300", "--val-every", "2",
                   "--patience", "2", "--lr", "0.5")
    assert d["stop_reason"] == "patience" and d["steps"] < 300


def test_epochs_limit(tmp_path, src, capsys):
    # 64x64, tile 16: 48 rows train (3 x 4 = 12 tiles); batch 4 -> 3 steps per epoch
    d = train_json(capsys, src, "-o", tmp_path / "a.h5", "--epochs", "2", "--max-steps", "100")
    assert d["stop_reason"] == "epochs" and d["steps"] == 6 and d["epochs"] == 2
    d = train_json(capsys, src, "-o", tmp_path / "b.h5", "--epochs", "2", "--max-steps", "4")
    assert d["stop_reason"] == "max-steps" and d["steps"] == 4


def test_target_bpv_adapts_lambda(tmp_path, src, capsys):
    d = train_json(capsys, src, "-o", tmp_path / "a.h5", "--max-steps", "100", "--target-bpv", "1e-6")
    assert d["target_bpv"] == 1e-6 and d["final_lambda"] > d["lambda"] * 3  # doubled at steps 50 and 100
    *_, s = tr.train([sample_field((64, 64), seed=5)], tr.TrainOptions(
        ndim=2, tile=16, channels=8, batch_size=4, steps=50, target_bpv=1e3, lmbda=1e-3))
    assert s["final_lambda"] == pytest.approx(1e-3 / 2, rel=1e-2)  # far above the measured rate: about halved


def test_glob_inputs(tmp_path, capsys):
    for i in range(3):
        np.save(tmp_path / f"f{i}.npy", sample_field((64, 64), seed=10 + i))
    d = train_json(capsys, tmp_path / "f*.npy", "-o", tmp_path / "m.h5", "--max-steps", "3")
    assert d["arrays"] == 3 and d["held_out_arrays"] == 3
    code, out, err = run(capsys, "train", tmp_path / "nothing*.npy", "-o", tmp_path / "n.h5")
    assert code == 2 and "matches no file" in err and not out


@pytest.mark.parametrize("bad", [
    ["--lambda", "1", "--target-bpv", "1"],
    ["--val-fraction", "1"],
    ["--max-steps", "0"],
    ["--tile", "10"],
    ["--batch-size", "0"],
    ["--patience", "0"],
    ["--until-psnr", "-3"],
    ["--target-bpv", "0"],
    ["--lr", "0"],
    ["--epochs", "0"],
])
def test_bad_options_exit_2(tmp_path, src, capsys, bad):
    code, out, err = run(capsys, "train", src, "-o", tmp_path / "m.h5", *bad)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and bad[0] in err
    assert not (tmp_path / "m.h5").exists()


def test_api_defaults_still_work():
    cfg, *_, s = tr.train([sample_field((96, 96), seed=1)],
                                       tr.TrainOptions(ndim=2, tile=16, channels=8, steps=3, batch_size=4, val_tiles=4))
    assert cfg.tile == 16 and s["steps"] == 3 and "val_psnr_normalized" in s


def test_torchrun_two_processes(tmp_path, src):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    model = tmp_path / "m.h5"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "aezip", "train",
                        str(src), "-o", str(model), "--max-steps", "10", "--batch-size", "2", "--device", "cpu",
                        "--json"], check=False, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # rank 0 alone prints
    assert d["world_size"] == 2 and d["steps"] == 10
    m = load_model(str(model))
    assert m.name == d["name"]
    code = main(["compress", str(src), "-o", str(tmp_path / "x.aez"), "--model", str(model), "--quiet"])
    assert code == 0
    with h5py.File(model) as f:
        assert f.attrs["format"] == b"aezip-model"
