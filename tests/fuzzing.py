"""Mutations of containers and the outcome of decoding each, for tests/test_fuzz.py and
benchmarks/fuzz.py.

A case is one mutated copy of a base container: bytes damaged anywhere in the file, or a
structured edit of a record (the header, an entry's record, its stream table), of the
skeleton or of an embedded model. A record edit comes in two forms: ``stale`` leaves the
checksums as they are (format 5 must refuse every one), ``forged`` recomputes them as a
forger would (then a different decode is legitimate, but an internal error, a hang or a
memory bomb never is). Each case runs ``aezip info`` and then a decode in a child process
forked for it, so that a hang is cut at ``timeout`` seconds and its peak RSS is its own.

Outcomes: ``clean`` (an AezipError: exit 2), ``identical`` (decodes to the base's values),
``different``, ``other`` (any other exception: exit 1, a bug), ``hang``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import time
import traceback

import h5py
import numpy as np

OUTCOMES = ("clean", "identical", "different", "other", "hang")

# values a forger tries in place of a record's field
ODD_VALUES = [None, True, -1, 0, 1, 2, 7, 31, 64, 255, 2 ** 31, 2 ** 63, -(2 ** 63), 10 ** 12, 1e308, -1e308, 1e-320,
              0.5, -0.5, "", "x", "abs", [], [0], [-1], [10 ** 12], [1, 2, 3], {}, {"a": 1}]


def _known_keys() -> list[str]:
    from aezip.container.layout import CodecParams, Figures

    return sorted({f.name for f in dataclasses.fields(CodecParams)} | {f.name for f in dataclasses.fields(Figures)}
                  | {"slab", "models", "n_arrays", "streams", "shape"})


KNOWN_KEYS = _known_keys()


@dataclasses.dataclass
class Case:
    kind: str  # "bytes", "stale", "forged", "skeleton", "model"
    what: str  # a description of the mutation
    base: str  # the unmutated container
    data: bytes  # the mutated file


def _image(path: str, edit) -> bytes:
    """The bytes of a copy of ``path`` after ``edit(h5py.File)`` (opened r+)."""
    with open(path, "rb") as fp:
        buf = io.BytesIO(fp.read())
    with h5py.File(buf, "r+") as f:
        edit(f)
    return buf.getvalue()


def _set(attrs, key: str, text: bytes, fix: bool) -> None:
    from aezip.container.writer import text_crc32

    attrs[key] = np.bytes_(text)
    if fix and f"{key}_crc32" in attrs:
        attrs[f"{key}_crc32"] = np.uint32(text_crc32(text))


def _paths(d, prefix=()):
    """Every (path, value) inside a JSON value, dict keys and list indices as path parts."""
    yield prefix, d
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


def _edited(record, path, rng: random.Random):
    """A copy of ``record`` with the value at ``path`` replaced, deleted or perturbed."""
    d = json.loads(json.dumps(record))
    dicts = [p for p, v in _paths(d) if isinstance(v, dict)]
    if rng.random() < 0.2 and dicts:  # a key a lean record left out (at its default), added
        parent = d
        for p in rng.choice(dicts):
            parent = parent[p]
        key = rng.choice(KNOWN_KEYS)
        parent[key] = rng.choice(ODD_VALUES)
        return d, f"add {key} = {json.dumps(parent[key])[:40]}"
    parent = d
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    value = parent[key]
    roll = rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        del parent[key]
        return d, f"delete {'.'.join(map(str, path))}"
    if roll < 0.45 and isinstance(value, (int, float)) and not isinstance(value, bool):
        new = rng.choice([value * 2, value * 10, -value, value + 1, value - 1, value / 3 if value else 1e-9])
        new = int(new) if isinstance(value, int) and not isinstance(new, float) else new
    elif roll < 0.55 and isinstance(value, str):
        new = rng.choice([value + "x", value[:-1], value.upper(), "/../" + value, "raw", "constant", "bounded",
                          "latent", "uint8", "int8", "float32", "mask", "residuals", "values"])
    else:
        new = rng.choice(ODD_VALUES)
    parent[key] = new
    return d, f"{'.'.join(map(str, path))} = {json.dumps(new)[:40]}"


def record_case(base: str, rng: random.Random, fix: bool) -> Case:
    """One edit of the header or of an entry's record (its stream table included)."""
    with h5py.File(base, "r") as f:
        entries = sorted(k for k in f if k.startswith("array_"))
        if rng.random() < 0.2 or not entries or not isinstance(f[entries[0]], h5py.Dataset):
            where, text = "/", f.attrs.get("header")
        else:
            where = rng.choice(entries)
            text = f[where].attrs["record"]
    if text is None:  # format 1: attributes, not JSON records
        return byte_case(base, rng)
    key = "header" if where == "/" else "record"
    record = json.loads(text)
    path, _ = rng.choice([p for p in _paths(record) if p[0]])
    new, what = _edited(record, path, rng)

    def edit(f):
        _set(f[where].attrs, key, json.dumps(new).encode(), fix)

    return Case("forged" if fix else "stale", f"{where} {key}: {what}", base, _image(base, edit))


def byte_case(base: str, rng: random.Random) -> Case:
    with open(base, "rb") as fp:
        data, spots = damaged(fp.read(), rng, [1, 1, 2, 3, 8])
    return Case("bytes", f"bytes {spots[:3]}", base, data)


def damaged(data: bytes, rng: random.Random, counts: list[int]) -> tuple[bytes, list[int]]:
    """``data`` with a few bytes (how many: drawn from ``counts``) XORed with random values."""
    out = bytearray(data)
    spots = [rng.randrange(len(out)) for _ in range(rng.choice(counts))]
    for i in spots:
        out[i] ^= rng.randrange(1, 256)
    return bytes(out), spots


def _root_stream(base: str, name: str, data: bytes) -> bytes:
    from aezip.container.writer import crc32

    def edit(f):
        del f[name]
        a = np.frombuffer(data, np.uint8)
        f[name] = a
        f[name].attrs["crc32"] = np.uint32(crc32(a))

    return _image(base, edit)


def skeleton_case(base: str, rng: random.Random, victim: str) -> Case:
    """The skeleton replaced by a forged one (reaching ``victim``) or damaged, its checksum fixed."""
    with h5py.File(base, "r") as f:
        skeleton = f["skeleton"][()].tobytes()
    roll = rng.random()
    if roll < 0.4:
        image = io.BytesIO(skeleton)
        kind = rng.choice(["external", "link", "virtual"])
        with h5py.File(image, "r+") as f:
            name = f"forged{rng.randrange(1000)}"
            if kind == "external":
                f.create_dataset(name, shape=(64,), dtype="u1", external=[(victim, 0, 64)])
            elif kind == "link":
                f[name] = h5py.ExternalLink(victim, "/x")
            else:
                layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
                layout[:] = h5py.VirtualSource(victim, "x", shape=(4,))
                f.create_virtual_dataset(name, layout)
        return Case("skeleton", f"skeleton + {kind}", base, _root_stream(base, "skeleton", image.getvalue()))
    data, spots = damaged(skeleton, rng, [1, 2, 4])
    return Case("skeleton", f"skeleton bytes {spots[:3]}", base, _root_stream(base, "skeleton", data))


def model_case(base: str, rng: random.Random) -> Case:
    """The embedded model damaged or its configuration edited, the container's checksum fixed."""
    with h5py.File(base, "r") as f:
        model = f["model"][()].tobytes()
    if rng.random() < 0.5:
        image = io.BytesIO(model)
        with h5py.File(image, "r+") as f:
            config = json.loads(f.attrs["config"])
            key = rng.choice(sorted(config))
            config[key] = rng.choice(ODD_VALUES + [10 ** 9, config[key]])
            f.attrs["config"] = np.bytes_(json.dumps(config).encode())
        return Case("model", f"model config {key}", base, _root_stream(base, "model", image.getvalue()))
    data, spots = damaged(model, rng, [1, 2, 4])
    return Case("model", f"model bytes {spots[:3]}", base, _root_stream(base, "model", data))


def cases(bases: list[str], n: int, seed: int, victim: str):
    """``n`` cases over ``bases``, drawn with ``seed``: a mix of every kind that applies."""
    rng = random.Random(seed)
    roots = {}
    for b in bases:
        with h5py.File(b, "r") as f:
            roots[b] = set(f)
    skeletons = [b for b in bases if "skeleton" in roots[b]]
    models = [b for b in bases if "model" in roots[b]]
    for _ in range(n):
        roll = rng.random()
        if roll < 0.1 and skeletons:
            yield skeleton_case(rng.choice(skeletons), rng, victim)
        elif roll < 0.2 and models:
            yield model_case(rng.choice(models), rng)
        elif roll < 0.5:
            yield byte_case(rng.choice(bases), rng)
        else:
            yield record_case(rng.choice(bases), rng, fix=rng.random() < 0.5)


def _digest(result) -> str:
    h = hashlib.sha256()
    items = sorted(result.items()) if isinstance(result, dict) else [("", result)]
    for name, x in items:
        x = np.asarray(x)
        h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def decode_digest(path: str, out_dir: str | None = None) -> str:
    """Run ``aezip info`` (CLI, for its formatting) and decode; the digest of the values.
    With ``out_dir`` the decode is written there too (an HDF5 whole file, a .npz)."""
    import contextlib
    import warnings

    import aezip
    from aezip.cli import main
    from aezip.errors import AezipError

    warnings.simplefilter("ignore")
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        code = main(["info", path])
    if code == 1:
        raise RuntimeError("aezip info: internal error")
    if code != 0:
        raise AezipError("info refused it")
    if out_dir is None:
        result, _ = aezip.decompress(path, write=False, threads=1)
    else:
        kind = aezip.info(path).source.kind
        out = os.path.join(out_dir, "out" + {"hdf5": ".h5", "npz": ".npz"}.get(kind, ".npy"))
        result, _ = aezip.decompress(path, out, threads=1, force=True)
    return _digest(result)


def _child(path: str, out_dir: str | None, pipe_w: int) -> None:
    from aezip.errors import AezipError

    try:
        outcome, detail = "ok", decode_digest(path, out_dir)
    except AezipError as e:
        outcome, detail = "clean", str(e)[:200]
    except BaseException as e:  # noqa: BLE001 - the point is to see every other failure
        outcome, detail = "other", f"{type(e).__name__}: {e}"[:300] + "\n" + traceback.format_exc()[-1500:]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB
    os.write(pipe_w, json.dumps({"outcome": outcome, "detail": detail, "rss_kb": rss}).encode())
    os.close(pipe_w)
    os._exit(0)


def run_case(path: str, timeout: float, out_dir: str | None = None) -> dict:
    """Decode ``path`` in a forked child: {"outcome": ok|clean|other|hang, "detail", "rss_kb", "seconds"}."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _child(path, out_dir, w)
        finally:
            os._exit(1)
    os.close(w)
    chunks, deadline = [], t0 + timeout
    os.set_blocking(r, False)
    while True:
        try:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        except BlockingIOError:
            if time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(r)
                return {"outcome": "hang", "detail": f"over {timeout} s", "rss_kb": 0, "seconds": timeout}
            time.sleep(0.002)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - t0
    if not chunks:
        return {"outcome": "other", "detail": f"child died (status {status})", "rss_kb": 0, "seconds": seconds}
    d = json.loads(b"".join(chunks))
    d["seconds"] = seconds
    return d


def _serve(conn) -> None:
    """The forker's loop: a fresh process that imported aezip and torch but never ran a
    network, so that forking it is safe (a process that ran torch's thread pools is not)."""
    import aezip  # noqa: F401
    import aezip.cli  # noqa: F401 - every module a case runs, imported once: edits to the tree meanwhile do not count
    import aezip.model  # noqa: F401

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_case(*job))


class Forker:
    """Runs each case in a child forked from a clean spawned process (see ``_serve``)."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()

    def run(self, path: str, timeout: float, out_dir: str | None = None) -> dict:
        self.conn.send((path, timeout, out_dir))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(10)


def files(folder: str) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime_ns), to prove nothing was created or changed."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            st = os.stat(os.path.join(root, n))
            out[os.path.join(root, n)] = (st.st_size, st.st_mtime_ns)
    return out


def classify(case: Case, work: str, reference: dict[str, str], timeout: float, victims: str,
             forker: Forker) -> dict:
    """Write the case to ``work``, decode it, and name the outcome against the base's digest."""
    folder = os.path.join(work, "case")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    path = os.path.join(folder, "c.aez")
    with open(path, "wb") as fp:
        fp.write(case.data)
    before = files(victims)
    writes = case.kind == "skeleton"
    d = forker.run(path, timeout, folder if writes else None)
    if d["outcome"] == "ok":
        d["outcome"] = "identical" if d["detail"] == reference[case.base] else "different"
    d["outside_writes"] = files(victims) != before
    return d


def reference_digests(bases: list[str], forker: Forker, timeout: float = 120) -> dict[str, str]:
    out = {}
    for b in bases:
        d = forker.run(b, timeout)
        if d["outcome"] != "ok":
            raise RuntimeError(f"{b} does not decode: {d['detail']}")
        out[b] = d["detail"]
    return out


def make_bases(folder: str) -> list[str]:
    """Small containers of every storage and feature: constant, raw, bounded (abs with NaN,
    pw_rel, integers), slabs, an npz of two arrays, a whole HDF5 file (skeleton); the v5
    golden files (latent, embedded model) are added by the caller."""
    import aezip
    from aezip import slabs
    from aezip.codec.sample import sample_field

    os.makedirs(folder, exist_ok=True)
    made = []

    def add(name, x, **kw):
        p = os.path.join(folder, name + ".aez")
        if not isinstance(x, str):
            src = os.path.join(folder, name + ".npy")
            np.save(src, x)
            x = src
        aezip.compress(x, p, force=True, **kw)
        made.append(p)

    field = sample_field((40, 50), seed=3) * 3
    nan = field.copy()
    nan[3, 4], nan[7, :3] = np.nan, np.inf
    add("constant", np.full((30, 20), 2.5))
    add("raw", np.array([1e-30, 3e30, -7.0, 0.5], np.float32))
    add("abs-nan", nan, abs=1e-3)
    add("pw-rel", np.linspace(-5, 5, 1000) ** 3, pw_rel=1e-3)
    add("int16", np.rint(field * 100).astype(np.int16))
    add("psnr", field.astype(np.float32), psnr=40)
    rows, slabs.slab_rows = slabs.slab_rows, lambda shape, memory, workers=1: 16
    try:
        add("slabs", field, rel=1e-3)
    finally:
        slabs.slab_rows = rows
    npz = os.path.join(folder, "two.npz")
    np.savez(npz, a=field[:10], b=np.arange(300.0))
    add("two", npz, abs=1e-2)
    h5 = os.path.join(folder, "whole.h5")
    with h5py.File(h5, "w") as f:
        f["fields/t"] = field
        f["fields/t"].attrs["units"] = "K"
        f["x"] = np.arange(50.0)
        f["x"].make_scale("x")
        f["fields/t"].dims[1].attach_scale(f["x"])
        f["soft"] = h5py.SoftLink("/fields/t")
    add("whole", h5, abs=1e-3)
    return made


def tally(results: list[dict]) -> dict:
    counts = {k: 0 for k in OUTCOMES}
    for d in results:
        counts[d["outcome"]] += 1
    counts["outside_writes"] = sum(d["outside_writes"] for d in results)
    counts["peak_rss_mb"] = round(max((d["rss_kb"] for d in results), default=0) / 1024, 1)
    counts["max_seconds"] = round(max((d["seconds"] for d in results), default=0), 2)
    return counts


def format_version(path: str) -> int:
    with h5py.File(path, "r") as f:
        return int(f.attrs["format_version"])
