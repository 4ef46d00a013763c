"""The ``aezip`` command: argparse subcommands over the API, no codec logic here.

Exit status: 0 success; 1 internal error (a bug); 2 usage error, bad input, unreadable
or corrupted container, an output that cannot be written; 3 a measured error above a
stored bound; 130 interrupted (SIGINT); 128 + N ended by signal N (SIGTERM 143, SIGHUP 129),
which unwinds like SIGINT: temporary files are removed and worker processes ended.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings

from . import progress
from ._version import __version__
from .errors import AezipError, BoundExceededError, UsageError
from .metrics import Report

DECODE_MEMORY_HELP = "memory the slabs decoded at once may use (default 1G; one slab at least)"
RAW_HELP = ("raw binary input: shape in C order, slowest axis first, e.g. 100,500,500 "
            "(SDRBench lists dimensions fastest first: reverse them)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(f"{message} (see {self.prog} --help)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}; use e.g. 100,500,500") from None
    if not shape or any(n <= 0 for n in shape):
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}; every extent must be positive")
    return shape


def _bytes(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t))
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}; use e.g. 512M or 2G") from None


def _region(text: str) -> list[tuple[int, int]]:
    try:
        region = [tuple(int(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        region = []
    if not region or any(len(r) != 2 for r in region):
        raise argparse.ArgumentTypeError(f"invalid region {text!r}; use START:STOP per axis, e.g. 0:100,200:300")
    return region  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--model", metavar="NAME|PATH",
                   help="model name or id prefix (see `aezip models`), a model file path, or conv-ae-v1 (the built-in "
                        "conv autoencoder for the array's dimensionality); default: the transform coder, which needs none")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs (default auto)")
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads: slabs coded at once and the network's threads (default: all CPUs)")
    g.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bars and no human-readable report")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")

    p = _Parser(prog="aezip", description="Compress numerical arrays with trained autoencoders.")
    p.add_argument("--version", action="version", version=f"aezip {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("compress", parents=[common], help="compress an array file into an .aez container")
    c.add_argument("input", help="x.npy, x.npz, x.h5 or x.nc (every float dataset), x.h5:/group/dataset, a Zarr "
                                 "store x.zarr or x.zarr:/group/array (read chunk by chunk), or a raw binary")
    c.add_argument("-o", "--output", help="container path (default: <input file>.aez)")
    c.add_argument("--ndim", type=int, choices=[1, 2, 3], help="trailing axes that are spatial (default: chosen from the data; README, --ndim)")
    c.add_argument("--key", help="one array of an .npz (its name) or HDF5 file (/group/dataset)")
    c.add_argument("--shape", type=_shape, help=RAW_HELP)
    c.add_argument("--dtype", help="raw binary input: float32 or float64 (default from .f32/.f64)")
    c.add_argument("--quality", type=float, metavar="P",
                   help="plain learned mode: the PSNR the transform coder reaches, in dB (default 45; measured on "
                        "its own decode, the max error measured, not guaranteed)")
    c.add_argument("--fit", action="store_true",
                   help="plain learned mode: fine-tune the model on the input and embed it in the container "
                        "(about 0.2 MB for the 2-D model, counted in the ratio: measured to pay from about 64 MB "
                        "of float32, not at 17 MB; see the README)")
    c.add_argument("--fit-steps", type=int, default=300, metavar="N", help="training steps of --fit (default 300)")
    c.add_argument("--memory", type=_bytes, metavar="SIZE",
                   help="memory the coders may use (default 1G); larger arrays are coded in slabs along axis 0, "
                        "and the slabs depend on this and the shape only, never on --threads")
    b = c.add_argument_group("error bounds (at most one; without: the plain learned mode, error measured "
                             "not guaranteed; integer arrays are then coded losslessly)")
    modes = b.add_mutually_exclusive_group()
    modes.add_argument("--abs", type=float, metavar="E", help="every finite value within E (integers: --abs 0 is lossless)")
    modes.add_argument("--rel", type=float, metavar="R", help="E = R x value range of the finite values (SZ's REL)")
    modes.add_argument("--psnr", type=float, metavar="P", help="PSNR at least P dB: coded within the loosest bound E found that reaches it (up to six "
                       "codings, twelve while none reaches it, then exactly), then filtered; every value within 1.5 E")
    modes.add_argument("--pw-rel", type=float, metavar="R", help="|x - x_hat| <= R |x| for every value (data spanning decades)")

    d = sub.add_parser("decompress", parents=[common], help="reconstruct the array(s) of a container")
    d.add_argument("input", metavar="FILE.aez")
    d.add_argument("-o", "--output", help="output path; its extension picks the kind (default: FILE without .aez)")
    d.add_argument("--original", metavar="REF", help="measure MSE, PSNR and max error against this original")
    d.add_argument("--key", help="the array of REF to compare with (npz name or /group/dataset)")
    d.add_argument("--region", type=_region, metavar="START:STOP,...",
                   help="decode only this part: one half-open START:STOP per axis, like a Python slice")
    d.add_argument("--memory", type=_bytes, metavar="SIZE", help=DECODE_MEMORY_HELP)
    d.add_argument("--zarr-serializer", metavar="SPEC",
                   help="with -o NAME.zarr: bytes (uncompressed chunks, the default) or aezip:MODE:BOUND "
                        "(chunks coded by aezip's Zarr codec, e.g. aezip:abs:1e-3)")

    i = sub.add_parser("info", parents=[common], help="describe a container without decoding it")
    i.add_argument("input", metavar="FILE.aez")

    v = sub.add_parser("verify", parents=[common], help="check every checksum and decode without writing")
    v.add_argument("input", metavar="FILE.aez")
    v.add_argument("--memory", type=_bytes, metavar="SIZE", help=DECODE_MEMORY_HELP)

    la = sub.add_parser("latents", parents=[common], help="export the latent codes of the plain learned mode")
    la.add_argument("input", metavar="FILE.aez")
    la.add_argument("-o", "--output", metavar="Z.npz", help="default: FILE.latents.npz")

    t = sub.add_parser("train", parents=[common], help="train a model on your own arrays",
                       description="Train a model on your arrays. Under torchrun it trains on every process "
                                   "(DistributedDataParallel); only rank 0 writes files and prints.")
    t.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="training arrays: files or glob patterns, any kind compress reads (every float array of each)")
    t.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (.h5)")
    t.add_argument("--key", help="the array of each .npz (its name) or HDF5 file (/group/dataset) to train on")
    t.add_argument("--shape", type=_shape, help=RAW_HELP)
    t.add_argument("--dtype", help="raw binary inputs: float32 or float64 (default from .f32/.f64)")
    ta = t.add_argument_group("model")
    ta.add_argument("--ndim", type=int, choices=[1, 2, 3], help="spatial axes (default: all, up to 3)")
    ta.add_argument("--tile", type=int, help="tile edge (default: 1024 / 64 / 32 for 1-/2-/3-D)")
    ta.add_argument("--channels", type=int, help="channels of the hidden layers (default 32)")
    ta.add_argument("--latent-channels", type=int, help="latent channels (default 4 / 8 / 16)")
    rate = ta.add_mutually_exclusive_group()
    rate.add_argument("--lambda", dest="lmbda", type=float, help="rate weight: higher gives smaller files (default 2e-4)")
    rate.add_argument("--target-bpv", type=float, metavar="B",
                      help="adapt lambda during training until the latents cost about B bits/value")
    ta.add_argument("--density", choices=["factorized", "laplace"],
                    help="rate model: the learned non-parametric density (default), or a per-channel Laplace")
    ts = t.add_argument_group("training and stopping (the first limit reached ends the run)")
    ts.add_argument("--max-steps", type=int, help="training steps at most (default 2000)")
    ts.add_argument("--epochs", type=int, help="passes over the training data at most (an epoch: as many tiles as it holds)")
    ts.add_argument("--batch-size", type=int, help="tiles per step and process (default 16)")
    ts.add_argument("--lr", type=float, help="Adam learning rate, cosine-annealed to 0 (default 2e-3)")
    ts.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    ts.add_argument("--val-fraction", type=float, metavar="F",
                    help="hold out the last F of every array along axis 0 for validation (default 0.1)")
    ts.add_argument("--val-every", type=int, metavar="N", help="validate every N steps (default 100)")
    ts.add_argument("--until-psnr", type=float, metavar="P", help="stop when the validation PSNR reaches P dB")
    ts.add_argument("--patience", type=int, metavar="N", help="stop after N validations without improvement")
    ts.add_argument("--checkpoint-every", type=int, metavar="N",
                    help="write a checkpoint every N steps and at the end (to --checkpoint)")
    ts.add_argument("--checkpoint", metavar="CKPT", help="checkpoint path (default: MODEL with .ckpt.h5)")
    ts.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint, exactly")

    sub.add_parser("models", parents=[common], help="list the built-in models and those in $AEZIP_MODELS")

    m = sub.add_parser("demo", parents=[common], help="compress and decompress a sample field in the plain learned mode and in a bounded mode")
    m.add_argument("-o", "--output-dir", help="folder for the demo files, kept (default: a temporary folder, removed afterwards)")

    bn = sub.add_parser("bench", parents=[common], help="compare aezip with SZ3, ZFP and zstd at the same bounds")
    bn.add_argument("inputs", nargs="+", metavar="INPUT", help="arrays to bench (any kind compress reads; every array of each)")
    bn.add_argument("--rel", default="1e-2,1e-3,1e-4", metavar="R,R,...",
                    help="range-relative bounds: E = R x value range (default 1e-2,1e-3,1e-4)")
    bn.add_argument("--against", default="sz3,zfp,zstd", metavar="NAMES",
                    help="compressors besides aezip: sz3, zfp, zstd (default all; pip install 'aezip[bench]')")
    bn.add_argument("--quality", default="40,45,50,55", metavar="P,P,...",
                    help="PSNR targets of aezip's plain learned mode (default 40,45,50,55; '' for none)")
    bn.add_argument("--csv", metavar="OUT", help="also write the rows as CSV")
    bn.add_argument("--plot", metavar="OUT.png", help="also draw the rate-distortion figure (needs matplotlib)")
    return p


def _fmt(v, spec=".4g") -> str:
    return "exact" if v is None else format(v, spec)


def _db(psnr: float | None) -> str:
    """A PSNR figure: "exact" (no error, so no PSNR) or in dB."""
    return "exact" if psnr is None else f"{psnr:.2f} dB"


def _error_kind(r: Report) -> str:
    """What the max error is: exact (no error at all), measured against a guarantee, or
    measured only (the plain learned mode)."""
    if r.max_abs_error == 0:
        return "exact"
    return "measured, not guaranteed" if r.bound is None and r.max_error_ratio is None else "measured"


def _bound_text(r: Report) -> str:
    """The promise on every value: r|x| (pw_rel), an absolute bound, or each array's own
    (a file's report over arrays with bounds of their own)."""
    if r.bound is None:
        return "each array's own bound (below)"
    return f"|x - x_hat| <= {r.bound:.4g} |x|" if r.bound_kind == "pw_rel" else f"bound {r.bound:.4g}"


def print_report(r: Report, verb: str, out=None) -> None:
    out = out or sys.stdout
    shape = "x".join(map(str, r.shape)) if r.shape else f"{len(r.arrays)} arrays"
    if r.region is not None:
        shape += f"  region {'x'.join(map(str, r.region))}"
    print(f"{verb}: {r.input} -> {r.output}" if r.output else f"{verb}: {r.input}", file=out)
    print(f"  shape {shape}  dtype {r.dtype}  storage {r.storage}" + (f"  model {r.model}" if r.model else "")
          + _spatial_text(r.ndim, r.ndim_given, len(r.shape)), file=out)
    print(f"  original {r.original_bytes:,} B  container {r.compressed_bytes:,} B  "
          f"ratio {r.compression_ratio:.2f}  bits/value {r.bits_per_value:.3f}", file=out)
    print(f"  MSE {_fmt(r.mse)}  PSNR {_db(r.psnr)}  max abs error {_fmt(r.max_abs_error)} ({_error_kind(r)})", file=out)
    if r.max_error_ratio is not None:
        mode = f"mode {r.mode}: " if r.mode else ""
        print(f"  {mode}{_bound_text(r)} guaranteed; max error / bound {r.max_error_ratio:.4f}", file=out)
    if r.stream_bytes:
        total = r.compressed_bytes
        parts = {"latents": 0, "transform codes": 0, "residual codes": 0, "exact values": 0}
        # the tile flags say where the latents apply; every other stream holds exact values
        names = {"latents": "latents", "tiles": "latents", "codes": "transform codes", "residuals": "residual codes"}
        for k, v in r.stream_bytes.items():
            parts[names.get(k, "exact values")] += v
        meta = total - sum(parts.values())
        shares = "  ".join(f"{k} {100 * v / total:.1f}%" for k, v in parts.items() if v) + f"  metadata {100 * meta / total:.1f}%"
        print(f"  bytes: {shares}", file=out)
    if r.embedded_model_bytes:
        print(f"  embedded model {r.embedded_model_bytes:,} B ({100 * r.embedded_model_bytes / r.compressed_bytes:.1f}% "
              "of the container, counted in the ratio)", file=out)
    if r.measured is not None:
        m = r.measured
        print(f"  against original: MSE {_fmt(m.mse)}  PSNR {_db(m.psnr)}  max abs error {_fmt(m.max_abs_error)}"
              + (f"  max error / bound {r.measured_ratio:.4f}" if r.measured_ratio is not None else ""), file=out)
    print(f"  {r.seconds:.2f} s  {r.mb_per_s:.1f} MB/s", file=out)
    for a in r.arrays:
        print(f"    {a.name}: {'x'.join(map(str, a.shape))} {a.dtype} {a.storage}  ratio {a.compression_ratio:.2f}  "
              f"PSNR {_db(a.psnr)}  max err {_fmt(a.max_abs_error)}"
              + (f"  {_bound_text(a)}" if a.max_error_ratio is not None and a.bound is not None else ""), file=out)


def _spatial_text(ndim: int | None, given: bool | None, axes: int) -> str:
    """The spatial axes of a report or an entry: how many of the array's, and how chosen."""
    if not ndim:
        return ""
    return f"  spatial axes {ndim} of {axes} ({'--ndim' if given else 'chosen from the data'})"


def _cmd_compress(a) -> dict:
    from . import api

    r = api.compress(a.input, a.output, model=a.model, ndim=a.ndim, device=a.device, key=a.key,
                     shape=a.shape, dtype=a.dtype, force=a.force, abs=a.abs, rel=a.rel, psnr=a.psnr,
                     pw_rel=a.pw_rel, memory=_memory(a),
                     threads=a.threads, fit=a.fit, fit_steps=a.fit_steps, quality=a.quality)
    return _emit(a, r, "compressed")


def _cmd_decompress(a) -> dict:
    from . import api

    _, r = api.decompress(a.input, a.output, model=a.model, device=a.device, original=a.original,
                          key=a.key, force=a.force, region=a.region, threads=a.threads, memory=_memory(a),
                          zarr_serializer=a.zarr_serializer)
    return _emit(a, r, "decompressed")


def _memory(a) -> int:
    from .slabs import DEFAULT_MEMORY

    return DEFAULT_MEMORY if a.memory is None else a.memory


def _emit(a, r: Report, verb: str) -> dict:
    if not a.quiet and not a.json:
        print_report(r, verb)
    return r.to_json()


def _cmd_verify(a) -> dict:
    from . import api
    from .container.layout import CHECKSUMMED_SINCE

    r = api.verify(a.input, model=a.model, device=a.device, threads=a.threads, memory=_memory(a))
    if not a.quiet and not a.json:
        version = api.info(a.input).format_version
        what = "every checksum verified" if version >= CHECKSUMMED_SINCE else \
            f"every stream checksum verified, records not checksummed (format {version})"
        print(f"{a.input}: OK ({len(r.arrays) or 1} array(s), {what}, decoded without writing)")
    checked = api.info(a.input).format_version >= CHECKSUMMED_SINCE
    return {"input": a.input, "ok": True, "arrays": len(r.arrays) or 1, "records_checksummed": checked}


def _cmd_latents(a) -> dict:
    from .fileutil import atomic_output
    from .io.npy import write_npz
    from .latents import latents

    z = latents(a.input, model=a.model, device=a.device)
    out = a.output or os.path.splitext(a.input)[0] + ".latents.npz"
    with atomic_output(out, a.force) as tmp:
        write_npz(tmp, [(k, v, "C", "<") for k, v in z.items()])
    codes = {k: v for k, v in z.items() if not k.endswith("/step")}
    d = {"input": a.input, "output": out, "arrays": len(codes), "values": int(sum(v.size for v in codes.values()))}
    if not a.quiet and not a.json:
        print(f"latents: {a.input} -> {out}  {len(codes)} arrays of codes ({d['values']:,} values), each with its step")
    return d


def _cmd_info(a) -> dict:
    from . import api
    from .container import model_of

    c = api.info(a.input)
    size = os.path.getsize(a.input)
    d = {
        "input": a.input, "format_version": c.format_version, "writer": c.writer, "file_bytes": size,
        "source": {"kind": c.source.kind, "name": c.source.name},
        "models": [{"name": m.name, "id": m.id, "config": m.config} for m in c.models],
        "arrays": [{"name": e.name, "shape": list(e.shape), "dtype": e.dtype, "storage": e.codec.storage,
                    "slab": list(e.slab) if e.slab is not None else None, "mode": e.codec.mode or None,
                    "interpolation": e.codec.interpolation if e.codec.storage == "bounded" else None,
                    "coarse": e.codec.coarse or None, "filter": _filter(e),
                    "transform": ({"wavelet": e.codec.transform, "levels": e.codec.levels, "step": e.codec.step,
                                   "spatial_axes": e.codec.ndim, "rounded": e.codec.integer}
                                  if e.codec.storage == "transform" else None),
                    "coded_within": e.codec.bound if e.codec.storage == "bounded" else None,
                    **_info_spatial(e, c.format_version),
                    "model_tiles": ([int(e.codec.latent_shape[0]), e.tiles]
                                    if e.codec.storage == "bounded" and e.codec.uses_model else None),
                    "model": getattr(model_of(e, c.models), "name", None),
                    **{k: getattr(e.figures, k) for k in ("original_bytes", "coded_bytes", "mse", "psnr",
                                                           "max_abs_error", "bound", "bound_kind")}}
                   for e in c.arrays],
    }
    if not a.quiet and not a.json:
        print(f"{a.input}: aezip container format {c.format_version}, written by {c.writer}, {size:,} bytes")
        print(f"  source: {c.source.kind} {c.source.name}")
        for m in c.models:
            print(f"  model {m.name} (id {m.id[:12]}…)")
        for e in d["arrays"]:
            rows = f" rows {e['slab'][0]}:{e['slab'][1]}" if e["slab"] else ""
            bound = ("bound " + format(e["bound"], ".4g") + (" x |x|" if e["bound_kind"] == "pw_rel" else "")
                     if e["bound"] is not None else "exact" if e["max_abs_error"] == 0 else "measured")
            print(f"  array {e['name'] or '(unnamed)'}{rows}: {'x'.join(map(str, e['shape']))} {e['dtype']} "
                  f"{e['storage']}{' ' + e['mode'] if e['mode'] else ''}"
                  f"{' (' + e['interpolation'] + ' order)' if e['interpolation'] else ''}"
                  f"{' from the model on {} of {} tiles'.format(*e['model_tiles']) if e['model_tiles'] else ''}"
                  f"{_coarse_text(e)}{_filter_text(e)}{_transform_text(e)}"
                  f"{_spatial_text(e['ndim'], e['ndim_chosen'] == 'given', len(e['shape']))}"
                  f"  ratio {e['original_bytes'] / max(1, e['coded_bytes']):.2f} (streams only)"
                  f"  PSNR {_fmt(e['psnr'], '.2f')}  max abs error {_fmt(e['max_abs_error'])} ({bound})")
    return d


def _info_spatial(e, version: int) -> dict:
    """``aezip info``'s spatial axes of an entry: how many and how chosen ("given" by
    --ndim, "auto" from the data), where its coding has them; before format 5 ndim was
    always given or the default (all axes up to 3), and bounded coding ran over all axes."""
    from .coding import SPATIAL_STORAGES

    if e.codec.storage not in SPATIAL_STORAGES or not e.codec.ndim:
        return {"ndim": None, "ndim_chosen": None}
    chosen = "given" if e.codec.ndim_given else "auto" if version >= 5 else None
    return {"ndim": e.codec.ndim, "ndim_chosen": chosen}


def _transform_text(e: dict) -> str:
    t = e["transform"]
    if not t:
        return ""
    return (f" ({t['wavelet']} wavelet, {t['levels']} levels over {t['spatial_axes']} axes, step {t['step']:.4g}"
            f"{', decoded to integers' if t['rounded'] else ''})")


def _coarse_text(e: dict) -> str:
    if not e["coarse"]:
        return ""
    q, stride = e["coarse"]
    return f", coarse steps (stride {stride:g} and up) within {e['coded_within'] / q:.4g}"


def _filter(e) -> dict | None:
    """The post-filter of an entry (``aezip info --json``): its weights and largest correction."""
    if not e.codec.filter:
        return None
    from .codec import postfilter

    return {"weights": e.codec.filter, "clip": postfilter.clip(e.codec.bound, e.integer_coded)}


def _filter_text(e: dict) -> str:
    f = e["filter"]
    if not f:
        return ""
    return (f", coded within {e['coded_within']:.4g} then filtered ({len(f['weights'])} weights, corrections "
            f"within {f['clip']:.4g})")


def _cmd_train(a) -> dict:
    import glob

    from . import fileutil
    from . import io as aeio
    from .model import resolve_device
    from .model import train as tr
    from .model.checkpoint import read_checkpoint

    specs = []
    for spec in a.inputs:
        path = aeio.split_spec(spec)[0]
        if glob.has_magic(path) and not os.path.exists(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise UsageError(f"{spec} matches no file")
            specs += [m + spec[len(path):] for m in matches]
        else:
            specs.append(spec)
    given = {k: v for k, v in {
        "tile": a.tile, "channels": a.channels, "latent_channels": a.latent_channels, "lmbda": a.lmbda, "target_bpv": a.target_bpv,
        "steps": a.max_steps, "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
        "val_fraction": a.val_fraction, "val_every": a.val_every, "until_psnr": a.until_psnr,
        "patience": a.patience, "checkpoint_every": a.checkpoint_every, "density": a.density}.items() if v is not None}
    for k in ("tile", "channels", "latent_channels", "steps", "epochs", "batch_size", "val_every", "patience", "checkpoint_every"):
        if k in given and given[k] < 1:
            flag = "--max-steps" if k == "steps" else "--" + k.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1, got {given[k]}")
    if "target_bpv" in given and not given["target_bpv"] > 0:
        raise UsageError(f"--target-bpv must be positive, got {a.target_bpv}")
    if "until_psnr" in given and not given["until_psnr"] > 0:
        raise UsageError(f"--until-psnr must be positive, got {a.until_psnr}")
    resume = read_checkpoint(a.resume) if a.resume else None
    device = resolve_device(a.device)
    ckpt_path = a.checkpoint or os.path.splitext(a.output)[0] + ".ckpt.h5"

    fields = []
    for spec in specs:
        inp = aeio.read_input(spec, key=a.key, shape=a.shape, dtype=a.dtype)
        try:
            fields += [aeio.load(f.x) for f in inp.fields]
        finally:
            inp.close()
    if not fields:
        raise UsageError("the inputs hold no array to train on")
    if resume is not None:
        if a.ndim is not None:
            given["ndim"] = a.ndim
        opts = tr.resume_options(resume["options"], given)
    else:
        ndim = a.ndim or min(min(x.ndim for x in fields), 3)
        opts = tr.TrainOptions(ndim=ndim, **given)
    tr.check_options(opts)

    if not tr.under_torchrun() or os.environ["RANK"] == "0":  # before minutes of work, not after
        fileutil.check_writable(a.output, a.force, inputs=[aeio.split_spec(s)[0] for s in specs])
        if opts.checkpoint_every:
            from .errors import OutputExistsError

            if not os.path.isdir(os.path.dirname(os.path.abspath(ckpt_path))):
                raise UsageError(f"the folder of checkpoint {ckpt_path} does not exist; create it or give --checkpoint")
            if os.path.exists(ckpt_path) and not a.force and not (a.resume and os.path.samefile(a.resume, ckpt_path)):
                raise OutputExistsError(f"checkpoint {ckpt_path} exists; resume from it with --resume, "
                                        "choose another with --checkpoint, or overwrite it with --force")
    with tr.distributed(device) as dist:
        if not dist.main:  # rank 0 alone writes and prints
            progress.set_enabled(False)
            a.json = False
        with progress.training_bar(max(0, opts.steps - (resume["step"] if resume else 0))) as report:
            cfg, tensors, tables, summary = tr.train(fields, opts, report, resume=resume, dist=dist,
                                                     checkpoint=ckpt_path if opts.checkpoint_every else None,
                                                     version=__version__)
        if not dist.main:
            return {}
        with fileutil.atomic_output(a.output, a.force) as tmp:
            name, mid = tr.save(tmp, cfg, tensors, tables, summary, __version__)
    d = {"output": a.output, "name": name, "id": mid, **summary}
    if opts.checkpoint_every:
        d["checkpoint"] = ckpt_path
    if not a.quiet and not a.json:
        s = summary
        print(f"trained {name} -> {a.output}: {s['steps']} steps ({s['epochs']:.2f} epochs) in {s['seconds']:.0f} s, "
              f"stopped by {s['stop_reason']}")
        print(f"  training   PSNR {s['train_psnr_normalized']:.2f} dB (on [-1, 1])  {s['train_bits_per_value']:.3f} bits/value")
        print(f"  validation PSNR {s['val_psnr_normalized']:.2f} dB (on [-1, 1])  {s['val_bits_per_value']:.3f} bits/value"
              f"  ({s['validation']}: {s['held_out_arrays']} of {s['arrays']} arrays held out)")
        if opts.checkpoint_every:
            print(f"  checkpoint {ckpt_path}")
    return d


def _cmd_models(a) -> dict:
    from .model import list_models, user_model_dir

    models = list_models()
    if not a.quiet and not a.json:
        for m in models:
            s = m["summary"]
            print(f"{m['name']:24s} {m['config']['ndim']}-D  {m['where']:7s}{' default' if m['default'] else '        '}"
                  f"  val PSNR {s.get('val_psnr_normalized', float('nan')):.2f} dB  "
                  f"{s.get('val_bits_per_value', float('nan')):.3f} bits/value  "
                  f"({'held-out tiles' if s.get('validation') == 'held-out' else 'tiles of the training data'}, "
                  f"{s.get('steps', '?')} steps)")
        print(f"(user models folder: {user_model_dir()})")
    return {"models": [{k: m[k] for k in ("name", "id", "where", "default", "path", "summary")} for m in models]}


def _cmd_demo(a) -> dict:
    import tempfile

    if a.output_dir:
        os.makedirs(a.output_dir, exist_ok=True)
        return _demo(a, a.output_dir)
    with tempfile.TemporaryDirectory(prefix="aezip-demo-") as folder:  # removed afterwards: nothing left behind
        return _demo(a, folder)


def _demo(a, folder: str) -> dict:
    import numpy as np

    from . import api
    from .codec.sample import sample_field

    src = os.path.join(folder, "sample_field.npy")
    np.save(src, sample_field((512, 512), seed=1))
    result = {}
    if not a.quiet and not a.json:
        print("aezip demo: a 512x512 float32 turbulence-like field (Gaussian random field, E(k) ~ k^-3)")
    for label, mode in (("plain learned mode (the transform coder, 45 dB)", {}), ("bounded mode --rel 1e-3", {"rel": 1e-3})):
        stem = os.path.join(folder, "sample_field" + ("_rel" if mode else ""))
        aez, out = stem + ".aez", stem + ".out.npy"
        r1 = api.compress(src, aez, model=a.model, device=a.device, force=True, **mode)
        _, r2 = api.decompress(aez, out, model=a.model, device=a.device, original=src, force=True)
        if not a.quiet and not a.json:
            print(f"\n== {label}")
            print_report(r1, "compressed")
            print_report(r2, "decompressed")
        key = "bounded" if mode else "learned"
        result[key] = {"compress": r1.to_json(), "decompress": r2.to_json()}
    return result


def _cmd_bench(a) -> dict:
    from . import bench, fileutil

    rels, against = bench.parse_rels(a.rel), bench.parse_against(a.against)
    for out in (a.csv, a.plot):
        if out:
            fileutil.check_writable(out, a.force)  # before minutes of work, not after
    qualities = [float(q) for q in a.quality.split(",") if q.strip()] if a.quality else []
    if any(not 0 < q < 400 for q in qualities):
        raise UsageError(f"--quality takes PSNR targets in dB between 0 and 400, got {a.quality}")
    rows = bench.run(a.inputs, rels, against, model=a.model, device=a.device, threads=a.threads, qualities=qualities)
    if a.csv:
        bench.write_csv(rows, a.csv, a.force)
    if a.plot:
        bench.plot(rows, a.plot, a.force)
    if not a.quiet and not a.json:
        print(bench.format_table(rows))
    return bench.to_json(rows)


COMMANDS = {"compress": _cmd_compress, "decompress": _cmd_decompress, "info": _cmd_info, "verify": _cmd_verify,
            "latents": _cmd_latents,
            "train": _cmd_train, "models": _cmd_models, "demo": _cmd_demo,
            "bench": _cmd_bench}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: raised in the main thread, it unwinds as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _terminate(signum, frame):
    for sig in TERMINATING:  # the cleanup is not itself interrupted by a second signal
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_unwind():
    """SIGTERM and SIGHUP raise :class:`Terminated` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _terminate) for sig in TERMINATING}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    with _signals_unwind():
        return _main(argv)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"aezip: warning: {message}", file=sys.stderr)


def _negative_values(argv: list[str]) -> list[str]:
    """``--abs -1e-3`` as ``--abs=-1e-3``: argparse takes a token that starts with '-' for an
    option unless it looks like a plain negative number, which -1e-3 does not; joined to
    its option, the value reaches that option's own check and message."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and token.startswith("-") and _is_number(token):
            out[-1] += "=" + token
        else:
            out.append(token)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _main(argv: list[str] | None) -> int:
    warnings.showwarning = _warning_line  # one line each, as errors are
    try:
        a = build_parser().parse_args(_negative_values(sys.argv[1:] if argv is None else list(argv)))
        progress.set_enabled(not a.quiet)
        if a.threads is not None:
            from .model import configure_threads

            configure_threads(a.threads)
        result = COMMANDS[a.command](a)
        if a.json:
            print(json.dumps(result, allow_nan=False))
        return 0
    except BoundExceededError as e:
        print(f"aezip: {e}", file=sys.stderr)
        return 3
    except AezipError as e:
        print(f"aezip: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"aezip: ended by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("aezip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: one line unless AEZIP_DEBUG=1
        if os.environ.get("AEZIP_DEBUG") == "1":
            traceback.print_exc()
        print(f"aezip: internal error: {type(e).__name__}: {e} (this is a bug; rerun with AEZIP_DEBUG=1 "
              "for the traceback and report it)", file=sys.stderr)
        return 1
