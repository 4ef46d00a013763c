"""``aezip bench``: aezip against SZ3, ZFP and zstd on the same arrays at the same bounds.

For every array and range-relative bound R (E = R × value range of the valid values):
aezip ``--abs E`` (ratio from the container file on disk), SZ3 (pysz, ABS mode at E),
ZFP (zfpy, fixed accuracy with tolerance E) and, once per array since it is lossless,
zstd (level 3). Each gives a :class:`Row`: ratio, bits/value, PSNR and max error / bound
over the valid values, and compression and decompression MB/s (original bytes / 1e6 /
seconds of one call, after a warm-up call on a tiny array).

Only numpy is needed here; pysz, zfpy, zstandard and matplotlib are imported where they
are used, and a missing one is skipped with a note (``pip install 'aezip[bench]'``).
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import progress
from .errors import UsageError
from .fileutil import atomic_output, check_writable
from .metrics import Quality, bits_per_value, ratio, valid_mask, value_range

DEFAULT_RELS = (1e-2, 1e-3, 1e-4)
DEFAULT_QUALITIES = (40.0, 45.0, 50.0, 55.0)  # PSNR targets of aezip's plain learned mode (--quality)
LEARNED = "aezip learned"  # the compressor name of those rows
COMPRESSORS = ("sz3", "zfp", "zstd")  # what --against may name; aezip always runs
PACKAGES = {"sz3": "pysz", "zfp": "zfpy", "zstd": "zstandard"}
LOSSY = ("aezip", "sz3", "zfp")
PLOTTED = ("aezip", LEARNED, "sz3", "zfp")  # the curves of the figure
ZSTD_LEVEL = 3
# dtypes each external compressor takes (pysz and zfpy refuse the others)
DTYPES = {"sz3": ("float32", "float64", "int32", "int64"), "zfp": ("float32", "float64", "int32", "int64"),
          "zstd": None}
ZFP_MAX_NDIM = 4

Note = Callable[[str], None]


def _stderr_note(message: str) -> None:
    print(f"aezip bench: {message}", file=sys.stderr)


@dataclass(frozen=True, kw_only=True)
class Row:
    """One compressor on one array at one bound (``rel`` and ``bound`` are None for zstd and
    for aezip's plain learned mode, which has its PSNR target ``quality`` instead).

    ``psnr`` is None when the reconstruction is exact (PSNR infinite).
    """

    array: str
    compressor: str
    rel: float | None
    bound: float | None
    shape: tuple[int, ...]
    n_values: int
    original_bytes: int
    compressed_bytes: int
    psnr: float | None
    max_abs_error: float
    comp_seconds: float
    decomp_seconds: float
    quality: float | None = None

    @property
    def ratio(self) -> float:
        return ratio(self.original_bytes, self.compressed_bytes)

    @property
    def bits_per_value(self) -> float:
        return bits_per_value(self.compressed_bytes, self.n_values)

    @property
    def max_err_over_bound(self) -> float | None:
        if self.bound is None:
            return None
        if self.bound > 0:
            return self.max_abs_error / self.bound
        return 0.0 if self.max_abs_error == 0 else math.inf

    @property
    def comp_mb_s(self) -> float:
        return _mb_s(self.original_bytes, self.comp_seconds)

    @property
    def decomp_mb_s(self) -> float:
        return _mb_s(self.original_bytes, self.decomp_seconds)

    def to_dict(self) -> dict:
        """The figures by name, non-finite numbers as None (JSON has no inf)."""
        d = {"array": self.array, "compressor": self.compressor, "rel": self.rel, "bound": self.bound,
             "shape": list(self.shape), "n_values": self.n_values, "original_bytes": self.original_bytes,
             "compressed_bytes": self.compressed_bytes, "ratio": self.ratio, "bits_per_value": self.bits_per_value,
             "psnr": self.psnr, "max_err_over_bound": self.max_err_over_bound, "comp_mb_s": self.comp_mb_s,
             "decomp_mb_s": self.decomp_mb_s, "quality": self.quality}
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}


CSV_FIELDS = ("array", "compressor", "rel", "bound", "shape", "n_values", "original_bytes", "compressed_bytes", "ratio",
              "bits_per_value", "psnr", "max_err_over_bound", "comp_mb_s", "decomp_mb_s", "quality")


def _mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else math.inf


# ---------------------------------------------------------------- options


def parse_rels(text: str) -> list[float]:
    """``1e-2,1e-3`` -> [0.01, 0.001]; every bound a positive finite number."""
    rels = []
    for part in text.split(","):
        part = part.strip()
        try:
            r = float(part)
        except ValueError:
            r = math.nan
        if not (math.isfinite(r) and r > 0):
            raise UsageError(f"--rel {text!r}: {part!r} is not a positive number; give e.g. --rel 1e-2,1e-3,1e-4")
        rels.append(r)
    return list(dict.fromkeys(rels))


def parse_against(text: str) -> list[str]:
    """``sz3,zfp`` -> ['sz3', 'zfp'] (case-insensitive); an empty text: aezip alone."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in COMPRESSORS]
    if unknown:
        raise UsageError(f"--against {unknown[0]!r} is not a compressor bench knows; choose from "
                         f"{','.join(COMPRESSORS)}")
    return list(dict.fromkeys(names))


def available(names: Sequence[str], note: Note = _stderr_note) -> list[str]:
    """The compressors of ``names`` whose package imports; a note for each that does not."""
    found = []
    for name in names:
        try:
            __import__(PACKAGES[name])
        except ImportError:
            note(f"{PACKAGES[name]} is not installed: skipping {name} (pip install 'aezip[bench]')")
            continue
        found.append(name)
    return found


# ---------------------------------------------------------------- one compressor each


def _quality(x: np.ndarray, x_hat: np.ndarray, valid: np.ndarray) -> Quality:
    x_hat = np.asarray(x_hat)
    if x_hat.shape != x.shape:
        raise RuntimeError(f"reconstruction has shape {x_hat.shape}, the array {x.shape}")
    return Quality.measure(x, x_hat, valid)


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def run_aezip(x: np.ndarray, e: float | None, valid: np.ndarray, *, workdir: str, model: str | None = None,
              device: str = "auto", threads: int | None = None, quality: float | None = None
              ) -> tuple[int, Quality, float, float]:
    """aezip --abs E, or the plain learned mode at --quality (``e`` None): (container file
    bytes, quality, compress s, decompress s)."""
    from . import api

    path = os.path.join(workdir, "bench.aez")
    how = {"abs": e} if e is not None else {"quality": quality}
    _, tc = _timed(api.compress, x, path, model=model, device=device, force=True, threads=threads, **how)
    size = os.path.getsize(path)
    (x_hat, _), td = _timed(api.decompress, path, model=model, device=device, write=False, threads=threads)
    os.unlink(path)
    return size, _quality(x, x_hat, valid), tc, td


def run_sz3(x: np.ndarray, e: float, valid: np.ndarray) -> tuple[int, Quality, float, float]:
    """SZ3 through pysz in ABS mode at E: (bytes, quality, compress s, decompress s)."""
    import pysz

    cfg = pysz.szConfig()
    cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
    cfg.absErrorBound = e
    (data, _), tc = _timed(pysz.sz.compress, x, cfg)
    (x_hat, _), td = _timed(pysz.sz.decompress, data, x.dtype, x.shape)
    return int(data.nbytes), _quality(x, x_hat, valid), tc, td


def run_zfp(x: np.ndarray, e: float, valid: np.ndarray) -> tuple[int, Quality, float, float]:
    """ZFP through zfpy in fixed-accuracy mode (tolerance E): (bytes, quality, compress s, decompress s)."""
    import zfpy

    data, tc = _timed(zfpy.compress_numpy, x, tolerance=e)
    x_hat, td = _timed(zfpy.decompress_numpy, data)
    return len(data), _quality(x, x_hat, valid), tc, td


def run_zstd(x: np.ndarray) -> tuple[int, float, float]:
    """zstd (zstandard, level 3) on the raw bytes, lossless: (bytes, compress s, decompress s)."""
    import zstandard

    c, d = zstandard.ZstdCompressor(level=ZSTD_LEVEL), zstandard.ZstdDecompressor()
    raw = np.ascontiguousarray(x)
    data, tc = _timed(c.compress, raw.data)
    t0 = time.perf_counter()
    x_hat = np.frombuffer(d.decompress(data), dtype=x.dtype).reshape(x.shape)
    td = time.perf_counter() - t0
    if not np.array_equal(x_hat.view(np.uint8), raw.view(np.uint8)):
        raise RuntimeError("zstd did not restore the bytes exactly")
    return len(data), tc, td


def _warm_up(lossy: Sequence[str], ndims: set[int], use_zstd: bool, workdir: str, model: str | None,
             device: str, threads: int | None) -> None:
    """One call of each compressor on a tiny array, so that first-call costs (model loading,
    library start-up) are not timed; aezip once per spatial rank the inputs have, on noise
    at a loose bound so that its network runs too (one tile of each model)."""
    rng = np.random.default_rng(0)
    shapes = {1: (1024,), 2: (64, 64), 3: (32, 32, 32)}
    for d in sorted(ndims):
        y = rng.standard_normal(shapes[d]).astype(np.float32)
        e = 0.05 * value_range(y)
        valid = np.ones(y.shape, bool)
        if "aezip" in lossy:
            run_aezip(y, e, valid, workdir=workdir, model=model, device=device, threads=threads)
        if d == 2:
            if "sz3" in lossy:
                run_sz3(y, e, valid)
            if "zfp" in lossy:
                run_zfp(y, e, valid)
            if use_zstd:
                run_zstd(y)


# ---------------------------------------------------------------- the whole bench


@dataclass(frozen=True)
class _Array:
    label: str
    x: np.ndarray
    valid: np.ndarray


def _read(inputs: Sequence[str]) -> list[_Array]:
    """Every array of every input, in memory, native byte order and C order."""
    from . import io as aeio

    arrays = []
    for spec in inputs:
        src = aeio.read_input(spec)
        try:
            base = os.path.basename(src.path) or spec
            for f in src.fields:
                x = np.ascontiguousarray(np.asarray(f.x))  # lazy inputs (memmap, HDF5 dataset) are read here
                x = x.astype(x.dtype.newbyteorder("="), copy=False)
                arrays.append(_Array(label=f"{base}:{f.name}" if f.name else base, x=x,
                                     valid=valid_mask(x, f.fill_values)))
        finally:
            getattr(src, "close", lambda: None)()
    return arrays


def _takes(name: str, x: np.ndarray) -> str | None:
    """Why compressor ``name`` cannot take ``x`` (None when it can)."""
    dtypes = DTYPES.get(name)
    if dtypes is not None and x.dtype.name not in dtypes:
        return f"{name} does not take {x.dtype.name} arrays"
    if name == "zfp" and not 1 <= x.ndim <= ZFP_MAX_NDIM:
        return f"zfp takes 1- to {ZFP_MAX_NDIM}-D arrays, not {x.ndim}-D"
    return None


def run(inputs: Sequence[str], rels: Sequence[float] = DEFAULT_RELS, against: Sequence[str] = COMPRESSORS, *,
        model: str | None = None, device: str = "auto", threads: int | None = None,
        qualities: Sequence[float] = DEFAULT_QUALITIES, note: Note = _stderr_note) -> list[Row]:
    """Bench every array of ``inputs`` (any spec ``aezip.io.read_input`` reads) at every bound.

    aezip always runs; ``against`` names the others (``sz3``, ``zfp``, ``zstd``), those not
    installed are skipped with a note. Rows come per array: per bound aezip, sz3, zfp,
    then zstd once. ``threads`` is aezip's (default: every CPU); the others run on one
    thread, so ``threads=1`` compares speeds like for like. aezip's plain learned mode also
    runs at each PSNR target of ``qualities`` (rows "aezip learned", for float arrays).
    """
    arrays = _read(inputs)
    others = available(against, note)
    lossy = ["aezip"] + [n for n in others if n in LOSSY]
    plans = []  # (array, its bound's scale, compressors per array) decided before any bar is drawn
    for a in arrays:
        vrange = value_range(a.x, a.valid)
        names = []
        for n in lossy + (["zstd"] if "zstd" in others else []):
            why = _takes(n, a.x)
            if why:
                note(f"{why}: skipping it on {a.label}")
            else:
                names.append(n)
        if not vrange > 0 and any(n in LOSSY for n in names):
            note(f"{a.label} is constant (no value range): no bounded runs, E = rel x range would be 0")
            names = [n for n in names if n not in LOSSY]
        plans.append((a, vrange, names))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="aezip-bench-") as workdir:
        _warm_up(lossy, {min(a.x.ndim, 3) for a, _, names in plans if names and a.x.ndim},
                 "zstd" in others, workdir, model, device, threads)
        with progress.bar(len(arrays) * (len(rels) + len(qualities)), "bench", unit="run") as advance:
            for a, vrange, names in plans:
                nbytes, n = int(a.x.nbytes), int(a.x.size)
                for rel in rels:
                    e = rel * vrange
                    for name in (k for k in names if k in LOSSY):
                        if name == "aezip":
                            size, q, tc, td = run_aezip(a.x, e, a.valid, workdir=workdir, model=model,
                                                        device=device, threads=threads)
                        else:
                            size, q, tc, td = (run_sz3 if name == "sz3" else run_zfp)(a.x, e, a.valid)
                        rows.append(Row(array=a.label, compressor=name, rel=rel, bound=e, shape=a.x.shape, n_values=n,
                                        original_bytes=nbytes, compressed_bytes=size, psnr=q.psnr,
                                        max_abs_error=q.max_abs_error, comp_seconds=tc, decomp_seconds=td))
                    advance(1)
                for quality in qualities:
                    if "aezip" in names and a.x.dtype.kind == "f":
                        size, q, tc, td = run_aezip(a.x, None, a.valid, workdir=workdir, model=model, device=device,
                                                    threads=threads, quality=quality)
                        rows.append(Row(array=a.label, compressor=LEARNED, rel=None, bound=None, shape=a.x.shape,
                                        n_values=n, original_bytes=nbytes, compressed_bytes=size, psnr=q.psnr,
                                        max_abs_error=q.max_abs_error, comp_seconds=tc, decomp_seconds=td,
                                        quality=quality))
                    advance(1)
                if "zstd" in names:
                    size, tc, td = run_zstd(a.x)
                    rows.append(Row(array=a.label, compressor="zstd", rel=None, bound=None, shape=a.x.shape, n_values=n,
                                    original_bytes=nbytes, compressed_bytes=size, psnr=None, max_abs_error=0.0,
                                    comp_seconds=tc, decomp_seconds=td))
    return rows


def geometric_means(rows: Sequence[Row]) -> list[tuple[float, float, int]]:
    """(rel, geometric mean of aezip ratio / SZ3 ratio, arrays) for each bound where both ran."""
    by = {(r.array, r.rel, r.compressor): r.ratio for r in rows if r.rel is not None}
    logs: dict[float, list[float]] = {}
    for (array, rel, comp), cr in by.items():
        sz = by.get((array, rel, "sz3"))
        if comp == "aezip" and sz is not None and 0 < cr < math.inf and 0 < sz < math.inf:
            logs.setdefault(rel, []).append(math.log(cr / sz))
    return [(rel, math.exp(sum(v) / len(v)), len(v)) for rel, v in logs.items()]


# ---------------------------------------------------------------- output


HEADER = ("array", "compressor", "rel / PSNR target", "ratio", "bits/value", "PSNR", "max err/bound", "comp MB/s", "decomp MB/s")


def _cells(r: Row) -> tuple[str, ...]:
    m = r.max_err_over_bound
    target = f"{r.quality:g} dB" if r.quality is not None else "lossless" if r.rel is None else f"{r.rel:g}"
    return (r.array, r.compressor, target, f"{r.ratio:.2f}",
            f"{r.bits_per_value:.3f}", "inf" if r.psnr is None else f"{r.psnr:.2f}",
            "-" if m is None else f"{m:.4f}", f"{r.comp_mb_s:.1f}", f"{r.decomp_mb_s:.1f}")


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table, then the aezip/SZ3 geometric means."""
    cells = [HEADER] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    means = geometric_means(rows)
    if means:
        lines.append("")
        lines += [f"geometric mean of aezip/SZ3 ratio at rel {rel:g}: {g:.3f} ({n} array{'s' * (n != 1)})"
                  for rel, g, n in means]
    return "\n".join(lines)


def to_json(rows: Sequence[Row]) -> dict:
    return {"rows": [r.to_dict() for r in rows],
            "geometric_means": [{"rel": rel, "aezip_over_sz3": g, "arrays": n} for rel, g, n in geometric_means(rows)]}


def write_csv(rows: Sequence[Row], path: str, force: bool = False) -> None:
    """The rows as CSV (one header line); exact PSNR is written as ``inf``, no bound as empty."""
    with atomic_output(path, force) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_FIELDS)
            for r in rows:
                d = {**r.to_dict(), "shape": "x".join(map(str, r.shape)),
                     "psnr": math.inf if r.psnr is None else r.psnr, "max_err_over_bound": r.max_err_over_bound,
                     "comp_mb_s": r.comp_mb_s, "decomp_mb_s": r.decomp_mb_s, "ratio": r.ratio}
                w.writerow(["" if d[k] is None else d[k] for k in CSV_FIELDS])


STYLE = {"aezip": ("#1f77b4", "o"), LEARNED: ("#9467bd", "D"), "sz3": ("#d62728", "s"), "zfp": ("#2ca02c", "^")}
LEGEND_IN = 0.32  # inches under the panels for the shared legend
LABELS = {"aezip": "aezip --abs", LEARNED: "aezip learned (--quality)", "sz3": "SZ3", "zfp": "ZFP", "zstd": "zstd (lossless)"}


def plot(rows: Sequence[Row], path: str, force: bool = False, note: Note = _stderr_note) -> bool:
    """Rate–distortion figure (PSNR against bits/value, one panel per array) as a 150-dpi PNG.

    Exact reconstructions (PSNR infinite) sit on the top edge as hollow markers; zstd is a
    dashed vertical line at its bits/value. Returns False (after a note) without matplotlib.
    """
    try:
        import matplotlib
    except ImportError:
        note("matplotlib is not installed: no plot (pip install 'aezip[bench]')")
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg on this figure only: no pyplot, no global backend
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    check_writable(path, force)
    arrays = list(dict.fromkeys(r.array for r in rows))
    ncols = min(4, max(1, len(arrays)))
    nrows = max(1, math.ceil(len(arrays) / ncols))
    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 9}):
        fig = Figure(figsize=(3.4 * ncols, 2.9 * nrows + LEGEND_IN))
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        used: dict[str, Line2D] = {}
        exact_shown = False
        for ax, name in zip(axes.flat, arrays):
            mine = [r for r in rows if r.array == name]
            right = 0.0
            for comp in PLOTTED:
                pts = sorted((r for r in mine if r.compressor == comp), key=lambda r: r.bits_per_value)
                if not pts:
                    continue
                color, marker = STYLE[comp]
                right = max(right, pts[-1].bits_per_value)
                finite = [r for r in pts if r.psnr is not None]
                (line,) = ax.plot([r.bits_per_value for r in finite], [r.psnr for r in finite], color=color,
                                  marker=marker, markersize=5, linewidth=1.4)
                used.setdefault(comp, line)
                exact = [r for r in pts if r.psnr is None]
                if exact:  # PSNR is infinite: a hollow marker on the top edge
                    ax.plot([r.bits_per_value for r in exact], [1.0] * len(exact), linestyle="none", marker=marker,
                            markersize=6, markerfacecolor="white", color=color, clip_on=False,
                            transform=ax.get_xaxis_transform())
                    exact_shown = True
            right = 1.08 * right if right > 0 else None
            for r in (r for r in mine if r.compressor == "zstd"):
                if right is None or r.bits_per_value <= right:
                    used.setdefault("zstd", ax.axvline(r.bits_per_value, color="0.45", linestyle="--", linewidth=1.1))
                    right = None if right is None else max(right, 1.08 * r.bits_per_value)
                else:  # far to the right of the lossy points: say where instead of squeezing them
                    used.setdefault("zstd", Line2D([], [], color="0.45", linestyle="--", linewidth=1.1))
                    ax.text(0.98, 0.04, f"zstd: {r.bits_per_value:.1f} bits/value \u2192", transform=ax.transAxes,
                            ha="right", va="bottom", color="0.35", fontsize=8)
            dims = mine[0].shape
            shape = f"{dims[0]:,} values" if len(dims) == 1 else "\u00d7".join(map(str, dims)) or "scalar"
            ax.set_title(f"{name} ({shape})", pad=8)
            ax.set_xlabel("bit rate (bits/value)")
            ax.set_ylabel("PSNR (dB)")
            ax.set_xlim(-0.02 * right if right else None, right)  # room for markers at 0
            ax.grid(True, linewidth=0.4, alpha=0.5)
        for ax in list(axes.flat)[len(arrays):]:
            ax.set_visible(False)
        handles = [used[k] for k in (*PLOTTED, "zstd") if k in used]
        labels = [LABELS[k] for k in (*PLOTTED, "zstd") if k in used]
        if exact_shown:
            handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", color="0.3"))
            labels.append("exact (PSNR = ∞), on the top edge")
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False)
        fig.tight_layout(rect=(0, LEGEND_IN / fig.get_figheight(), 1, 1))
        with atomic_output(path, force) as tmp:
            fig.savefig(tmp, format="png", dpi=150)
    return True
