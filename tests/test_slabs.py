"""Arrays coded in slabs along axis 0 (bounded memory), and decoding a region."""

import os
import sys
import warnings

import numpy as np
import pytest

import aezip
import aezip.io
import aezip.io.stream
from aezip import cli, slabs
from aezip.codec.sample import sample_field
from aezip.coding import encode_array
from aezip.container import read_streams
from common import edit_record

MB = 1 << 20


def test_slab_rows_follow_the_memory_budget():
    assert slabs.slab_rows((100, 50), 1 << 30) == 100  # fits: one piece
    rows = slabs.slab_rows((100000, 1000), 256 * MB)
    assert slabs.SLABS_AT_ONCE * rows * 1000 * slabs.CODING_BYTES_PER_VALUE <= 256 * MB and rows % 64 == 0
    assert slabs.slab_rows((10, 10**7), MB) == 1  # at least one row


@pytest.mark.parametrize("mode", [{"rel": 1e-3}, {"abs": 0.05}, {}])
def test_slabs_roundtrip_and_keep_the_bound(mode, tmp_path):
    x = sample_field((300, 160), seed=11) * 4
    x[17, 3], x[250, 100] = np.nan, -np.inf
    p = str(tmp_path / "s.aez")
    with pytest.MonkeyPatch.context() as m:  # slabs of 64 rows on a small array (--memory has a 1 MB floor)
        m.setattr(slabs, "slab_rows", lambda shape, memory: 64)
        r = aezip.compress(x, p, **mode)
    c = aezip.info(p)
    assert [e.slab for e in c.arrays] == [(0, 64), (64, 128), (128, 192), (192, 256), (256, 300)]
    assert r.slabs == 5 and r.compressed_bytes == (tmp_path / "s.aez").stat().st_size
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert x_hat.shape == x.shape
    assert np.isnan(x_hat[17, 3]) and x_hat[250, 100] == -np.inf
    finite = np.isfinite(x)
    err = np.abs(x[finite].astype(np.float64) - x_hat[finite])
    assert err.max() == pytest.approx(r.max_abs_error)
    assert r2.measured.mse == pytest.approx(r.mse, rel=1e-9)
    if mode:
        assert err.max() <= r.bound and r2.measured_ratio <= 1
        e = (1e-3 * (x[finite].max() - x[finite].min())) if "rel" in mode else 0.05
        assert [a.figures.bound for a in c.arrays] == [pytest.approx(e)] * 5  # one bound for the whole array


def test_region_decodes_only_the_slabs_it_needs(tmp_path, monkeypatch):
    from aezip import coding

    x = sample_field((256, 90), seed=12)
    p = str(tmp_path / "r.aez")
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    aezip.compress(x, p, rel=1e-3)
    decoded = []
    original = coding.decode_array
    monkeypatch.setattr(slabs, "decode_array", lambda e, *a: decoded.append(e.slab) or original(e, *a))
    part, r = aezip.decompress(p, write=False, region=[(70, 120), (10, 30)], original=x)
    assert decoded == [(64, 128)]
    full, _ = aezip.decompress(p, write=False)
    np.testing.assert_array_equal(part, full[70:120, 10:30])
    assert r.measured.max_abs_error <= r.bound


def test_region_out_of_range(tmp_path):
    x = sample_field((40, 40), seed=13)
    p = str(tmp_path / "r.aez")
    aezip.compress(x, p, rel=1e-3)
    with pytest.raises(aezip.UsageError, match="does not fit"):
        aezip.decompress(p, write=False, region=[(0, 50), (0, 10)])
    with pytest.raises(aezip.UsageError, match="one START:STOP per axis"):
        aezip.decompress(p, write=False, region=[(0, 10)])


def test_missing_slab_is_detected(tmp_path, monkeypatch):
    x = sample_field((200, 30), seed=14)
    p = str(tmp_path / "m.aez")
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    aezip.compress(x, p, abs=0.01)
    edit_record(p, 1, lambda r: r.update(slab=[64, 120]))
    with pytest.raises(aezip.ContainerError, match="slabs do not tile"):
        aezip.decompress(p, write=False)


def test_cli_memory_and_region(tmp_path, capsys):
    import json

    from aezip import cli

    x = sample_field((200, 64), seed=15)
    src = tmp_path / "x.npy"
    np.save(src, x)
    aez = tmp_path / "x.aez"
    assert cli.main(["compress", str(src), "-o", str(aez), "--rel", "1e-3", "--memory", "1M", "--threads", "1",
                     "--json"]) == 0
    # 1 MB holds two slabs of 85 rows of 64 values at once: three slabs of equal size
    assert json.loads(capsys.readouterr().out)["slabs"] == 3
    out = tmp_path / "part.npy"
    assert cli.main(["decompress", str(aez), "-o", str(out), "--region", "10:20,5:64", "--quiet"]) == 0
    assert np.load(out).shape == (10, 59)
    assert cli.main(["decompress", str(aez), "-o", str(out), "--region", "10:20", "--force"]) == 2
    assert "START:STOP" in capsys.readouterr().err
    assert cli.main(["compress", str(src), "-o", str(aez), "--memory", "lots", "--force"]) == 2


@pytest.mark.parametrize("kind", ["npy", "npy-fortran-big-endian", "raw", "hdf5"])
def test_large_inputs_are_read_slab_by_slab(kind, tmp_path, monkeypatch):
    """Inputs above LAZY_BYTES stay on disk (memory map / HDF5 dataset) and are read per slab;
    the result equals coding the array in memory."""
    import h5py

    from aezip.io import hdf5, npy, raw

    for module in (npy, raw, hdf5):
        monkeypatch.setattr(module, "LAZY_BYTES", 1000)
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    x = sample_field((150, 40), seed=16)
    if kind.startswith("npy"):
        src = tmp_path / "x.npy"
        np.save(src, np.asfortranarray(x.astype(">f4")) if "fortran" in kind else x)
        spec = str(src)
        lazy = aezip.io.read_input(spec)
        assert isinstance(lazy.fields[0].x, np.memmap)
    elif kind == "raw":
        src = tmp_path / "x.f32"
        x.tofile(src)
        spec = str(src)
    else:
        src = tmp_path / "x.h5"
        with h5py.File(src, "w") as f:
            f["g/x"] = x
        spec = f"{src}:/g/x"
    kw = {"shape": (150, 40)} if kind == "raw" else {}
    r = aezip.compress(spec, str(tmp_path / "a.aez"), rel=1e-3, **kw)
    b = aezip.compress(x, str(tmp_path / "b.aez"), rel=1e-3)
    assert r.slabs == b.slabs == 3
    np.testing.assert_array_equal(aezip.decompress(str(tmp_path / "a.aez"), write=False)[0],
                                  aezip.decompress(str(tmp_path / "b.aez"), write=False)[0])


@pytest.mark.parametrize("out_name", ["o.npy", "o.f32", "o.h5"])
def test_slabbed_arrays_stream_into_the_output(out_name, tmp_path, monkeypatch):
    import h5py

    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    x = sample_field((150, 40), seed=17)
    src = tmp_path / "x.npy"
    np.save(src, x)
    aez = str(tmp_path / "x.aez")
    r = aezip.compress(str(src), aez, abs=0.01)
    written = []
    original = aezip.io.stream.array_output
    monkeypatch.setattr(aezip.io, "array_output", lambda *a, **k: written.append(a[1]) or original(*a, **k))
    out = tmp_path / out_name
    result, r2 = aezip.decompress(aez, str(out), original=str(src))
    assert written  # went through the streaming writer
    if out_name.endswith(".h5"):
        with h5py.File(out) as f:
            x_hat = f["data"][()]
        assert result is None
    else:
        x_hat = np.load(out) if out_name.endswith(".npy") else np.fromfile(out, np.float32).reshape(x.shape)
        np.testing.assert_array_equal(np.asarray(result), x_hat)
    assert np.abs(x.astype(np.float64) - x_hat).max() <= 0.01
    assert r2.measured.mse == pytest.approx(r.mse, rel=1e-9) and r2.measured_ratio <= 1


def test_large_arrays_get_a_slab_per_thread_and_decode_the_same_with_any_thread_count(tmp_path):
    assert slabs.slab_rows((4096, 2048), 1 << 30) == 2048  # 2^22 values a slab
    assert slabs.slab_rows((100, 100), 1 << 30) == 100  # small: one piece
    x = sample_field((300, 80), seed=18)
    p = str(tmp_path / "t.aez")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(slabs, "SLAB_VALUES", 12000)
        r = aezip.compress(x, p, rel=1e-3, threads=2)
    assert r.slabs == 2
    one, _ = aezip.decompress(p, write=False, threads=1)
    two, _ = aezip.decompress(p, write=False, threads=2)
    np.testing.assert_array_equal(one, two)


def test_psnr_mode_in_slabs(tmp_path, monkeypatch):
    """Each slab settles on its own bound; the whole array reaches the PSNR and each value its slab's bound."""
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    x = sample_field((200, 80), seed=19)
    x[:64] *= 0.1  # a quiet slab and loud ones
    p = str(tmp_path / "p.aez")
    r = aezip.compress(x, p, psnr=60)
    bounds = [a.figures.bound for a in aezip.info(p).arrays]
    assert r.psnr >= 60 and r.bound == max(bounds)
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert r2.measured.psnr >= 60 and r2.measured_ratio <= 1


def test_psnr_filter_in_slabs(tmp_path, monkeypatch):
    """Each slab fits its own filter and filters within its own rows, so a region decodes
    to the same values as the whole array."""
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    x = (sample_field((200, 180), seed=21) * 3).astype(np.float32)
    p = str(tmp_path / "p.aez")
    r = aezip.compress(x, p, psnr=60)
    assert sum(bool(a.codec.filter) for a in aezip.info(p).arrays) >= 2
    full, r2 = aezip.decompress(p, write=False, original=x)
    assert r2.measured.psnr == pytest.approx(r.psnr) and r2.measured_ratio <= 1
    part, _ = aezip.decompress(p, write=False, region=[(50, 140), (10, 100)])
    assert part.tobytes() == full[50:140, 10:100].tobytes()


fork_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are forked on Linux only")


@fork_only
def test_slabs_coded_in_worker_processes_are_those_of_one_thread(tmp_path):
    """The bounded modes code slabs in forked processes: the same streams as one thread."""
    x = sample_field((300, 80), seed=21)
    streams = []
    for threads in (1, 2):
        p = str(tmp_path / f"t{threads}.aez")
        with pytest.MonkeyPatch.context() as m:
            m.setattr(slabs, "SLAB_VALUES", 12000)
            m.setattr(slabs, "slab_rows", lambda shape, memory: 64)
            aezip.compress(x, p, rel=1e-3, threads=threads)
        streams.append([{k: v.tobytes() for k, v in read_streams(p, i).items()} for i in range(5)])
    assert streams[0] == streams[1]


@fork_only
@pytest.mark.parametrize("how", ["error", "death"])
def test_a_failing_worker_process_is_one_clear_error(tmp_path, monkeypatch, how):
    def fail(*args, **kwargs):
        if how == "death":
            os._exit(1)
        raise aezip.UnsupportedDataError("this slab cannot be coded")

    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    monkeypatch.setattr(slabs, "encode_array", fail)
    p = str(tmp_path / "t.aez")
    error = aezip.WorkerError if how == "death" else aezip.UnsupportedDataError
    with pytest.raises(error, match="worker process died" if how == "death" else "cannot be coded"):
        aezip.compress(sample_field((300, 80), seed=21), p, rel=1e-3, threads=2)
    assert not os.path.exists(p)


@fork_only
def test_warnings_in_worker_processes_reach_the_caller(tmp_path, monkeypatch):
    def warn_and_code(*args, **kwargs):
        warnings.warn("slab warning", UserWarning)
        return encode_array(*args, **kwargs)

    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    monkeypatch.setattr(slabs, "encode_array", warn_and_code)
    with pytest.warns(UserWarning, match="slab warning"):
        aezip.compress(sample_field((300, 80), seed=21), str(tmp_path / "t.aez"), rel=1e-3, threads=2)


def test_threads_where_worker_processes_cannot_start(tmp_path, monkeypatch):
    def no_semaphores(*args, **kwargs):
        raise OSError("no /dev/shm")

    monkeypatch.setattr(slabs, "ProcessPoolExecutor", no_semaphores)
    monkeypatch.setattr(slabs, "SLAB_VALUES", 12000)
    x = sample_field((300, 80), seed=21)
    r = aezip.compress(x, str(tmp_path / "t.aez"), rel=1e-3, threads=2)
    assert r.slabs == 2


def _compress_in_a_pool_worker(path: str) -> int:
    slabs.SLAB_VALUES = 12000
    r = aezip.compress(sample_field((300, 80), seed=21), path, rel=1e-3, threads=2)
    return r.slabs


@fork_only
def test_compress_inside_a_multiprocessing_pool_worker(tmp_path):
    """A daemonic process may not have children: its slabs are coded on threads."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_compress_in_a_pool_worker, [str(tmp_path / "t.aez")]) == [2]
    x = sample_field((300, 80), seed=21)
    x_hat, _ = aezip.decompress(str(tmp_path / "t.aez"), write=False)
    assert np.max(np.abs(x_hat.astype(np.float64) - x)) <= 1e-3 * (float(x.max()) - float(x.min()))


def entry_streams(path: str) -> list[tuple]:
    """Each entry's rows and stream bytes: what must not depend on --threads (records hold timings)."""
    return [(e.slab, {k: v.tobytes() for k, v in read_streams(path, i).items()})
            for i, e in enumerate(aezip.info(path).arrays)]


def test_slabs_depend_on_shape_and_memory_never_on_threads():
    for shape in [(4096, 4096), (512, 1024, 1024), (10**6,), (3000, 7)]:
        for memory in (MB, 64 * MB, 1 << 30):
            rows = slabs.slab_rows(shape, memory)
            row_values = int(np.prod(shape[1:]))
            assert rows == 1 or slabs.SLABS_AT_ONCE * rows * row_values * slabs.CODING_BYTES_PER_VALUE <= memory
            slab_count = -(-shape[0] // rows)
            assert slab_count >= min(-(-shape[0] * row_values // slabs.SLAB_VALUES), slabs.PARALLEL_SLABS) - 1
    assert slabs.slab_rows((4096, 4096), 1 << 30) == 1024  # 2^24 values: four slabs, for two or more workers
    for memory in (1 << 32, 1 << 34):  # 2^28 values: 16 slabs at most, of 2^24 values...
        assert slabs.slab_rows((65536, 4096), memory) == 4096
    assert slabs.slab_rows((65536, 4096), 1 << 30) == 1344  # ...more only where --memory needs them
    assert slabs.slab_rows((512, 1024, 1024), 1 << 30) == 5  # 2^29 values: 103 slabs for 1 GB
    assert slabs.at_once(1 << 22, 1 << 30, workers=16) == 2  # memory, not the thread count, bounds the slabs at once
    assert slabs.at_once(1 << 22, 1 << 30, workers=1) == 1 and slabs.at_once(1 << 30, MB, workers=8) == 1


@pytest.mark.parametrize("mode", [{"rel": 1e-3}, {}])
def test_the_same_streams_whatever_threads(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(slabs, "SLAB_VALUES", 6000)  # 24,000 values: four slabs
    x = sample_field((300, 80), seed=22)
    streams = []
    for threads in (1, 2):
        p = str(tmp_path / f"t{threads}.aez")
        aezip.compress(x, p, threads=threads, **mode)
        streams.append(entry_streams(p))
    assert len(streams[0]) == 4 and streams[0] == streams[1]


def test_decompress_and_verify_take_memory(tmp_path, monkeypatch, capsys):
    from aezip import cli

    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 128)  # slabs of 128 x 80 values: 0.98 MB to decode
    x = sample_field((512, 80), seed=23)
    p = str(tmp_path / "m.aez")
    aezip.compress(x, p, rel=1e-3)
    at_once = []
    real = slabs.in_order

    def spy(func, items, workers, processes=False):
        at_once.append(workers)
        return real(func, items, workers, processes)

    monkeypatch.setattr(slabs, "in_order", spy)
    two, _ = aezip.decompress(p, write=False, threads=2, memory=2 * MB)
    one, _ = aezip.decompress(p, write=False, threads=2, memory=MB)
    np.testing.assert_array_equal(one, two)
    aezip.verify(p, threads=2, memory=MB)
    assert at_once == [2, 1, 1]
    out = tmp_path / "m.npy"
    assert cli.main(["decompress", p, "-o", str(out), "--memory", "1M", "--threads", "2", "--quiet"]) == 0
    assert cli.main(["verify", p, "--memory", "3M", "--quiet"]) == 0
    assert at_once[-2:] == [1, 2]
    np.testing.assert_array_equal(np.load(out), one)
    assert cli.main(["verify", p, "--memory", "1K"]) == 2 and "--memory must be at least 1 MB" in capsys.readouterr().err


def test_verify_holds_no_whole_array(tmp_path, monkeypatch):
    """verify measures each slab and drops it: nothing the size of the array is allocated."""
    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory: 64)
    p = str(tmp_path / "v.aez")
    aezip.compress(sample_field((512, 80), seed=24), p, rel=1e-3)
    allocated = []
    real = np.empty
    monkeypatch.setattr(aezip.api.np, "empty", lambda shape, *a, **k: allocated.append(shape) or real(shape, *a, **k))
    aezip.verify(p)
    assert (512, 80) not in allocated


@pytest.fixture(scope="module")
def model_slabs_field():
    from common import model_field

    # each 64-row slab is normalized on its own: a fixed point of the model per slab
    return np.concatenate([model_field((64, 256), 128, seed=s) for s in range(4)])


TRY_MODEL = aezip.EncoderOptions(try_model=True)


def _coded_with_the_model_in_workers(x, p, monkeypatch):
    """``x`` coded at rel 1e-3 in four slabs of 64 rows (3 MB of --memory), two at once in
    forked worker processes, the model's prediction tried on every slab (the default
    model's figures say it cannot pay)."""
    forked = []
    real = slabs.ProcessPoolExecutor
    monkeypatch.setattr(slabs, "ProcessPoolExecutor", lambda *a, **k: forked.append(a) or real(*a, **k))
    r = aezip.compress(x, p, rel=1e-3, threads=2, memory=3 * MB, options=TRY_MODEL)
    assert forked, "the slabs were not coded in worker processes"
    return r


def test_slabs_coded_in_worker_processes_name_the_model_they_used(model_slabs_field, tmp_path, monkeypatch):
    """A model that pays in slabs coded by forked workers: every entry names it by its
    content id, the container lists it (the parent builds the list from the entries), the
    report names it, and the array decodes within the bound."""
    x, p = model_slabs_field, str(tmp_path / "x.aez")
    r = _coded_with_the_model_in_workers(x, p, monkeypatch)
    c = aezip.info(p)
    used = [e for e in c.arrays if e.codec.uses_model]
    assert len(c.arrays) == 4 and used, "the model paid on no slab"
    assert [m.id for m in c.models] == [used[0].codec.model_id] and all(e.codec.model_id == c.models[0].id for e in used)
    assert all(not e.codec.model_id for e in c.arrays if not e.codec.uses_model)
    assert r.model == c.models[0].name
    one = str(tmp_path / "one.aez")
    aezip.compress(x, one, rel=1e-3, threads=1, memory=3 * MB, options=TRY_MODEL)
    assert aezip.info(one).models == c.models  # the record a worker's model gets is the one a serial run writes
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert r2.model == r.model and r2.measured_ratio <= 1
    assert np.max(np.abs(x_hat.astype(np.float64) - x)) <= r.bound


def test_an_entry_naming_a_model_the_container_does_not_list_is_refused(model_slabs_field, tmp_path, monkeypatch,
                                                                        capsys):
    x, p = model_slabs_field, str(tmp_path / "x.aez")
    _coded_with_the_model_in_workers(x, p, monkeypatch)
    i = next(i for i, e in enumerate(aezip.info(p).arrays) if e.codec.uses_model)
    edit_record(p, i, lambda rec: rec["codec"].update(model_id="0" * 64))
    with pytest.raises(aezip.ContainerError, match="names model 000000000000, which the container does not list"):
        aezip.decompress(p, write=False)
    assert cli.main(["verify", p]) == 2
    err = capsys.readouterr().err
    assert "does not list" in err and "Traceback" not in err


def test_slabs_that_disagree_on_their_bound_are_refused(tmp_path):
    """A forged slab without its bound (benchmarks/fuzz.py found it: the report's max over
    the slabs' bounds met None) is a corrupted container, not an internal error."""
    from common import edit_record

    x = np.cumsum(np.random.default_rng(4).standard_normal((200, 50)), axis=1)
    p = str(tmp_path / "s.aez")
    aezip.compress(x, p, rel=1e-3, memory=2 << 20)
    assert len(aezip.info(p).arrays) >= 2
    edit_record(p, 1, lambda r: r["figures"].pop("bound"))
    with pytest.raises(aezip.ContainerError, match="disagree"):
        aezip.decompress(p, write=False)
