"""Fit an autoencoder to arrays: distortion + lambda * rate, then freeze it into a model file.

The rate during training is the bit cost of the noisy latents ``y_tilde`` under a
learned per-channel density: by default the non-parametric factorized prior
(:mod:`.density`), whose values on the integers become the coder's integer tables when
the model is frozen; or (``density="laplace"``, the first built-in models) a Laplace
proxy, the tables then coming from histograms of the rounded training latents.

Validation uses held-out regions: the last ``val_fraction`` of every training array
along axis 0 (see :func:`prepare`). Training can stop at a step or epoch limit, at a
validation PSNR, or when validation stops improving; it can be checkpointed to HDF5
(:mod:`.checkpoint`) and resumed exactly, and it runs under ``torchrun`` with
DistributedDataParallel (see :func:`distributed`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dc_fields

import numpy as np
import torch
from torch import nn

from ..codec.entropy import Tables, ideal_bits
from ..codec.normalize import Normalization
from ..errors import InputError, UsageError
from .arch import ArchConfig, ConvAutoencoder
from .density import FactorizedDensity
from .store import model_id, write_model

MAX_TABLE = 256  # table entries per channel before the escape


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    ndim: int
    tile: int = 0  # 0: the default for ndim
    channels: int = 32
    latent_channels: int = 0  # 0: the default for ndim
    levels: int = 0  # 0: the default for ndim
    lmbda: float = 2e-4
    steps: int = 2000  # the most steps (--max-steps)
    batch_size: int = 16  # tiles per step and process
    lr: float = 2e-3
    seed: int = 0
    val_tiles: int = 64
    epochs: int = 0  # 0: no epoch limit; an epoch is as many tiles as the training data holds
    target_bpv: float = 0.0  # > 0: adapt lambda towards this many bits/value
    adapt_every: int = 50  # steps between lambda updates with target_bpv
    val_fraction: float = 0.1  # of every array along axis 0, held out for validation
    val_every: int = 100  # steps between validations (0: only at the end)
    until_psnr: float = 0.0  # > 0: stop when the validation PSNR (on [-1, 1]) reaches it
    patience: int = 0  # > 0: stop after this many validations without improvement
    checkpoint_every: int = 0  # > 0: write a checkpoint every this many steps (and at the end)
    density: str = "factorized"  # the rate model: "factorized" (learned, non-parametric) or "laplace"


# Options that may differ between a run and its resumption: when to stop, how often to look.
RESUMABLE = ("steps", "epochs", "val_every", "until_psnr", "patience", "checkpoint_every")

DEFAULTS = {1: dict(tile=1024, latent_channels=4, levels=3), 2: dict(tile=64, latent_channels=8, levels=2),
            3: dict(tile=32, latent_channels=16, levels=2)}


def arch_config(o: TrainOptions) -> ArchConfig:
    d = DEFAULTS[o.ndim]
    return ArchConfig(ndim=o.ndim, tile=o.tile or d["tile"], channels=o.channels,
                      latent_channels=o.latent_channels or d["latent_channels"], levels=o.levels or d["levels"])


def check_options(o: TrainOptions) -> None:
    """Refuse options out of range with one line naming the command-line option."""
    if o.ndim not in (1, 2, 3):
        raise UsageError(f"--ndim must be 1, 2 or 3, got {o.ndim}")
    if o.density not in ("factorized", "laplace"):
        raise UsageError(f"unknown density {o.density!r}; use factorized or laplace")
    levels = o.levels or DEFAULTS[o.ndim]["levels"]
    tile = o.tile or DEFAULTS[o.ndim]["tile"]
    if tile < (1 << levels) or tile % (1 << levels):
        raise UsageError(f"--tile must be a positive multiple of {1 << levels}, got {o.tile}")
    checks = [
        (o.channels >= 1, f"channels must be at least 1, got {o.channels}"),
        (o.latent_channels >= 0, f"--latent-channels must be positive, got {o.latent_channels}"),
        (o.levels >= 0, f"levels must be positive, got {o.levels}"),
        (math.isfinite(o.lmbda) and o.lmbda >= 0, f"--lambda must be 0 or more, got {o.lmbda}"),
        (o.steps >= 1, f"--max-steps must be at least 1, got {o.steps}"),
        (o.batch_size >= 1, f"--batch-size must be at least 1, got {o.batch_size}"),
        (math.isfinite(o.lr) and o.lr > 0, f"--lr must be positive, got {o.lr}"),
        (o.seed >= 0, f"--seed must be 0 or more, got {o.seed}"),
        (o.val_tiles >= 1, f"val_tiles must be at least 1, got {o.val_tiles}"),
        (o.epochs >= 0, f"--epochs must be at least 1, got {o.epochs}"),
        (math.isfinite(o.target_bpv) and o.target_bpv >= 0, f"--target-bpv must be positive, got {o.target_bpv}"),
        (o.adapt_every >= 1, f"adapt_every must be at least 1, got {o.adapt_every}"),
        (0 <= o.val_fraction < 1, f"--val-fraction must be in [0, 1), got {o.val_fraction}"),
        (o.val_every >= 0, f"--val-every must be at least 1, got {o.val_every}"),
        (math.isfinite(o.until_psnr) and o.until_psnr >= 0, f"--until-psnr must be a positive PSNR in dB, got {o.until_psnr}"),
        (o.patience >= 0, f"--patience must be at least 1, got {o.patience}"),
        (o.checkpoint_every >= 0, f"--checkpoint-every must be at least 1, got {o.checkpoint_every}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if (o.until_psnr or o.patience) and not o.val_every:
        raise UsageError("--until-psnr and --patience need validations: give --val-every N")


def options_to_dict(o: TrainOptions) -> dict:
    return asdict(o)


def options_from_dict(d: dict) -> TrainOptions:
    known = {f.name for f in dc_fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in d.items() if k in known})


def resume_options(saved: dict, given: dict) -> TrainOptions:
    """The options of a resumed run: the checkpoint's, with the stopping options in ``given``.

    ``given`` holds only the options the user gave explicitly; one that is not a stopping
    option and differs from the checkpoint's is refused (the run would not continue).
    """
    o = options_from_dict(saved)
    changes = {}
    for k, v in given.items():
        if k in RESUMABLE:
            changes[k] = v
        elif getattr(o, k) != v:
            flag = {"lmbda": "--lambda", "steps": "--max-steps"}.get(k, "--" + k.replace("_", "-"))
            raise UsageError(f"{flag} {v} differs from the checkpoint's {getattr(o, k)}; "
                             "a resumed run keeps the checkpoint's options (drop it)")
    return replace(o, **changes)


# ---------------------------------------------------------------------------------------------
# Data: normalized arrays split into training and held-out validation regions


@dataclass(frozen=True)
class Part:
    """A normalized region of one training array: ``data`` is (B, *spatial), padded to a tile."""

    array: int  # index of the source array
    data: np.ndarray
    row0: int  # first row of the source's axis 0 in this region
    rows: int  # rows of the source's axis 0 in this region
    inner: int  # entries of the flattened batch axis per row of axis 0 (0: axis 0 is spatial)
    tiles: int  # tiles the region holds (before padding, partial tiles counted)


def _held_out_rows(n: int, spatial_axis0: bool, tile: int, fraction: float) -> int:
    """Rows of axis 0 to hold out (0: the array is too small to split)."""
    if fraction <= 0:
        return 0
    h = max(1, math.ceil(fraction * n))
    if not spatial_axis0:
        return h if n - h >= 1 else 0
    if n - max(h, tile) >= tile:
        return max(h, tile)  # at least one tile high, where possible
    return h if n - h >= tile else 0


def _region(i: int, x: np.ndarray, norm: Normalization, ndim: int, tile: int, r0: int, r1: int) -> Part:
    part = norm.forward(np.asarray(x[r0:r1]))
    inner = math.prod(part.shape[1:part.ndim - ndim]) if part.ndim > ndim else 0
    part = part.reshape((-1,) + part.shape[part.ndim - ndim:])
    spatial = part.shape[1:]
    tiles = part.shape[0] * math.prod(-(-n // tile) for n in spatial)
    pad = [(0, 0)] + [(0, max(0, tile - n)) for n in spatial]
    return Part(array=i, data=np.pad(part, pad, mode="symmetric"), row0=r0, rows=r1 - r0, inner=inner, tiles=tiles)


def prepare(fields: Sequence[np.ndarray], ndim: int, tile: int, fraction: float
            ) -> tuple[list[Part], list[Part], dict]:
    """Normalize every array and split off the last ``fraction`` of it along axis 0.

    Axis 0 is a batch axis when the array has more than ``ndim`` axes (whole entries are
    held out), else the first spatial axis (at least one tile high where the rest still
    holds a tile). Arrays too small to split are used for training only. Returns the
    training parts, the held-out parts and counts for the summary.
    """
    train_parts: list[Part] = []
    val_parts: list[Part] = []
    constant = 0
    for i, x in enumerate(fields):
        if x.ndim < ndim:
            raise UsageError(f"an array of shape {x.shape} has fewer than {ndim} axes")
        if x.size == 0:
            raise InputError(f"training array {i} (shape {x.shape}) is empty")
        if x.dtype.kind not in "fiub" or (x.dtype.kind == "f" and not np.isfinite(x).all()):
            raise InputError(f"training array {i} (shape {x.shape}, {x.dtype}) must hold finite numbers")
        norm = Normalization.fit(x)
        if norm.scale == 0:
            constant += 1
            continue
        n = x.shape[0]
        h = _held_out_rows(n, x.ndim == ndim, tile, fraction)
        train_parts.append(_region(i, x, norm, ndim, tile, 0, n - h))
        if h:
            val_parts.append(_region(i, x, norm, ndim, tile, n - h, n))
    if not train_parts:
        raise UsageError("no training array has more than one distinct value")
    info = {"arrays": len(fields), "constant_arrays": constant, "held_out_arrays": len(val_parts),
            "training_tiles": sum(p.tiles for p in train_parts),
            "held_out_tiles": sum(p.tiles for p in val_parts)}
    return train_parts, val_parts, info


class TileSampler:
    """Random crops of tile size from normalized fields, with random flips.

    Built from raw arrays (normalized here, all of each array) or from :class:`Part`
    regions (``parts=``). ``sample(n, origins=list)`` appends, for every tile, the source
    array and the half-open range of its axis 0 the tile was cut from.
    """

    def __init__(self, fields: Sequence[np.ndarray], ndim: int, tile: int, rng: np.random.Generator,
                 *, parts: Sequence[Part] | None = None):
        self.rng, self.ndim, self.tile = rng, ndim, tile
        if parts is None:
            parts = prepare(fields, ndim, tile, 0.0)[0]
        self.parts = list(parts)
        self.fields = [p.data for p in self.parts]
        sizes = np.array([f.size for f in self.fields], dtype=np.float64)
        self.p = sizes / sizes.sum()

    def sample(self, n: int, rng: np.random.Generator | None = None, origins: list | None = None) -> np.ndarray:
        rng = rng or self.rng
        out = np.empty((n, 1) + (self.tile,) * self.ndim, dtype=np.float32)
        for i in range(n):
            k = rng.choice(len(self.fields), p=self.p)
            f = self.fields[k]
            b = rng.integers(f.shape[0])
            starts = [int(rng.integers(m - self.tile + 1)) for m in f.shape[1:]]
            t = f[b][tuple(slice(s, s + self.tile) for s in starts)]
            for ax in range(self.ndim):
                if rng.random() < 0.5:
                    t = np.flip(t, ax)
            out[i, 0] = t
            if origins is not None:
                p = self.parts[k]
                if p.inner:
                    r = p.row0 + int(b) // p.inner
                    origins.append((p.array, r, r + 1))
                else:
                    lo = min(starts[0], p.rows - 1)
                    origins.append((p.array, p.row0 + lo, p.row0 + min(starts[0] + self.tile, p.rows)))
        return out


# ---------------------------------------------------------------------------------------------
# The objective


class LaplaceRate(nn.Module):
    """Bits of y_tilde under a per-channel Laplace density integrated over unit bins."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_b = nn.Parameter(torch.zeros(channels))

    def forward(self, y_tilde: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (y_tilde.dim() - 2)
        b = self.log_b.exp().view(shape)
        z = y_tilde - self.loc.view(shape)

        def cdf(v):
            return 0.5 + 0.5 * torch.sign(v) * (1 - torch.exp(-v.abs() / b))

        p = (cdf(z + 0.5) - cdf(z - 0.5)).clamp_min(1e-9)
        return -torch.log2(p).sum()


class Objective(nn.Module):
    """The network and its rate model in one module (what DistributedDataParallel wraps)."""

    def __init__(self, net: ConvAutoencoder, rate: nn.Module):
        super().__init__()
        self.net, self.rate = net, rate

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, x_hat = self.net(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        return torch.mean((x_hat - x) ** 2), self.rate(y_tilde)


def psnr_normalized(mse: float) -> float:
    """PSNR of fields normalized to [-1, 1] (value range 2)."""
    return 20 * math.log10(2.0) - 10 * math.log10(max(mse, 1e-30))


def _evaluate(obj: Objective, tiles: torch.Tensor, device, batch: int = 64) -> tuple[float, float, torch.Tensor]:
    """MSE and Laplace bits/value with rounded latents; also the rounded latents (on CPU)."""
    se, bits, ys = 0.0, 0.0, []
    with torch.inference_mode():
        for i in range(0, tiles.shape[0], batch):
            x = tiles[i:i + batch].to(device)
            y_hat = torch.round(obj.net.g_a(x))
            se += float(torch.sum((obj.net.g_s(y_hat) - x) ** 2))
            bits += float(obj.rate(y_hat))
            ys.append(y_hat.cpu())
    return se / tiles.numel(), bits / tiles.numel(), torch.cat(ys)


# ---------------------------------------------------------------------------------------------
# Distributed runs


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")) and int(os.environ["WORLD_SIZE"]) > 1


@contextlib.contextmanager
def distributed(device: str) -> Iterator[Dist]:
    """The process group of a ``torchrun`` launch (gloo on CPU, nccl on CUDA), else one process.

    ``device`` is ``cpu`` or ``cuda`` (already resolved); under torchrun a CUDA rank uses
    GPU ``LOCAL_RANK``. The group is destroyed on the way out, whatever happens.
    """
    if not under_torchrun():
        yield Dist(device=device)
        return
    import torch.distributed as tdist

    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    tdist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield Dist(rank=rank, world=world, local_rank=local, device=device)
    finally:
        tdist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Training


def _rng_state(rng: np.random.Generator, device: str) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state().numpy().copy(),
            "cuda": torch.cuda.get_rng_state().numpy().copy() if device.startswith("cuda") else None}


def _set_rng_state(rng: np.random.Generator, st: dict, device: str) -> None:
    rng.bit_generator.state = st["numpy"]
    torch.set_rng_state(torch.from_numpy(np.asarray(st["torch"], dtype=np.uint8)))
    if device.startswith("cuda") and st.get("cuda") is not None:
        torch.cuda.set_rng_state(torch.from_numpy(np.asarray(st["cuda"], dtype=np.uint8)))


def _tensors(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def train(fields: Sequence[np.ndarray], options: TrainOptions,
          report: Callable[[int, dict], None] | None = None, *, resume: dict | None = None,
          checkpoint: str | None = None, dist: Dist | None = None,
          version: str = "", init: dict | None = None) -> tuple[ArchConfig, dict, Tables, dict]:
    """Train on ``fields`` (arrays whose trailing ``ndim`` axes are spatial).

    ``init``: the tensors of a model of the same architecture to start from (fine-tuning).
    ``resume`` is a checkpoint read with :func:`.checkpoint.read_checkpoint` (its options
    must equal ``options`` except the stopping ones, see :func:`resume_options`);
    ``checkpoint`` the path written every ``options.checkpoint_every`` steps and at the
    end (by rank 0 only); ``dist`` the process group from :func:`distributed`.
    Returns the architecture, the tensors, the frozen tables and a training summary.
    """
    from .checkpoint import write_checkpoint

    check_options(options)
    dist = dist or Dist()
    device = dist.device
    cfg = arch_config(options)
    train_parts, val_parts, info = prepare(fields, cfg.ndim, cfg.tile, options.val_fraction)
    data_shapes = [list(f.shape) for f in fields]
    if resume is not None:
        saved = options_from_dict(resume["options"])
        if replace(saved, **{k: getattr(options, k) for k in RESUMABLE}) != options:
            raise UsageError("the options differ from the checkpoint's beyond when to stop; "
                             "a resumed run keeps the checkpoint's options")
        if resume["state"]["data_shapes"] != data_shapes:
            raise UsageError(f"the checkpoint was trained on arrays of shapes {resume['state']['data_shapes']}, "
                             f"not {data_shapes}; resume with the same inputs")
        if resume["state"]["world_size"] != dist.world:
            raise UsageError(f"the checkpoint was written by {resume['state']['world_size']} process(es), "
                             f"this run has {dist.world}; resume with the same --nproc_per_node and --nnodes")

    torch.manual_seed(options.seed)
    net = ConvAutoencoder(cfg)
    if init is not None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in init.items()})
    rate = FactorizedDensity(cfg.latent_channels) if options.density == "factorized" else LaplaceRate(cfg.latent_channels)
    obj = Objective(net, rate).to(device)
    names = [k for k, _ in obj.named_parameters()]
    if dist.world > 1:
        torch.manual_seed(options.seed + dist.rank)  # each rank its own noise
        from torch.nn.parallel import DistributedDataParallel

        model: nn.Module = DistributedDataParallel(obj, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
    else:
        model = obj
    rng = np.random.default_rng(options.seed + dist.rank)
    sampler = TileSampler((), cfg.ndim, cfg.tile, rng, parts=train_parts)
    val_sampler = TileSampler((), cfg.ndim, cfg.tile, np.random.default_rng([options.seed, 1]),
                              parts=val_parts or train_parts)
    val = torch.from_numpy(val_sampler.sample(options.val_tiles))

    per_step = options.batch_size * dist.world
    steps_per_epoch = max(1, math.ceil(info["training_tiles"] / per_step))
    planned, limit_reason = options.steps, "max-steps"
    if options.epochs and options.epochs * steps_per_epoch < planned:
        planned, limit_reason = options.epochs * steps_per_epoch, "epochs"

    opt = torch.optim.Adam(obj.parameters(), lr=options.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, planned))
    lmbda = options.lmbda
    state = {"best_objective": None, "best_val_psnr": None, "best_val_bpv": None, "best_step": 0,
             "bad_validations": 0, "seconds": 0.0, "lambda": lmbda, "bpv_window": 0.0}
    best: dict | None = None
    step = 0
    if resume is not None:
        step = resume["step"]
        try:  # the checkpoint's tensors must be the ones its options describe
            obj.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in resume["weights"].items()})
            groups = [dict(g, betas=tuple(g["betas"]), params=list(range(len(names)))) for g in resume["param_groups"]]
            opt.load_state_dict({"param_groups": groups, "state": {
                i: {k: torch.from_numpy(np.asarray(v)) for k, v in resume["adam"][n].items()}
                for i, n in enumerate(names) if n in resume["adam"]}})
            sched.load_state_dict(resume["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--resume: the checkpoint's tensors do not fit its options "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); it is damaged") from None
        if sched.T_max != max(1, planned):  # a longer (or shorter) run: the cosine of the new length from here
            sched.T_max = max(1, planned)
            for g, base in zip(opt.param_groups, sched.base_lrs):
                g["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * min(step, planned) / sched.T_max)) / 2
            sched._last_lr = [g["lr"] for g in opt.param_groups]
        _set_rng_state(rng, resume["rng"][dist.rank], device)
        state.update({k: resume["state"][k] for k in state})
        lmbda = state["lambda"]
        best = resume["best"]

    def snapshot() -> dict:
        rngs = [_rng_state(rng, device)]
        if dist.world > 1:
            import torch.distributed as tdist

            rngs = [None] * dist.world
            tdist.all_gather_object(rngs, _rng_state(rng, device))
        sd = opt.state_dict()
        return {"step": step, "options": options_to_dict(options),
                "state": dict(state, data_shapes=data_shapes, world_size=dist.world),
                "scheduler": sched.state_dict(),
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]],
                "weights": _tensors(obj), "best": best,
                "adam": {names[i]: {k: v.detach().cpu().numpy().copy() for k, v in s.items()}
                         for i, s in sd["state"].items()},
                "rng": rngs}

    def save_checkpoint() -> None:
        ck = snapshot()  # every rank: the RNG states are gathered
        if checkpoint and dist.main:
            write_checkpoint(checkpoint, ck, version)

    def agree(values: list[float]) -> list[float]:
        """Rank 0's values on every rank (one decision for all)."""
        if dist.world == 1:
            return values
        import torch.distributed as tdist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        tdist.broadcast(t, 0)
        return t.tolist()

    def validate() -> tuple[float, float]:
        mse, bpv, _ = _evaluate(obj, val, device)
        return mse, bpv

    t0 = time.time() - state["seconds"]
    reason = None
    while reason is None:
        if step >= planned:
            reason = limit_reason
            break
        step += 1
        x = torch.from_numpy(sampler.sample(options.batch_size)).to(device)
        mse, bits = model(x)
        bpv = bits / x.numel()
        loss = mse + lmbda * bpv
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        figures = {"loss": loss.item(), "bpv": bpv.item(), "psnr": psnr_normalized(mse.item())}
        if report:
            report(step, figures)
        if options.target_bpv:
            state["bpv_window"] += figures["bpv"]
            if step % options.adapt_every == 0:
                measured = state["bpv_window"] / options.adapt_every
                if dist.world > 1:
                    import torch.distributed as tdist

                    t = torch.tensor([measured], dtype=torch.float64, device=device)
                    tdist.all_reduce(t)
                    measured = float(t) / dist.world
                exponent = min(1.0, max(-1.0, (measured - options.target_bpv) / options.target_bpv))
                lmbda = min(1e3, max(1e-9, lmbda * 2.0 ** exponent))
                state["bpv_window"] = 0.0
        if options.val_every and step % options.val_every == 0:
            v_mse, v_bpv = validate()
            objective = v_mse + lmbda * v_bpv
            code = 0
            if state["best_objective"] is None or objective < state["best_objective"]:
                state.update(best_objective=objective, best_val_psnr=psnr_normalized(v_mse), best_val_bpv=v_bpv,
                             best_step=step, bad_validations=0)
                if options.patience:
                    best = _tensors(obj)
            else:
                state["bad_validations"] += 1
            if options.until_psnr and psnr_normalized(v_mse) >= options.until_psnr:
                code = 1
            elif options.patience and state["bad_validations"] >= options.patience:
                code = 2
            code = int(agree([code])[0])
            reason = {0: None, 1: "until-psnr", 2: "patience"}[code]
        state["seconds"] = time.time() - t0
        state["lambda"] = lmbda
        if options.checkpoint_every and step % options.checkpoint_every == 0 and reason is None and step < planned:
            save_checkpoint()
    state["seconds"] = time.time() - t0
    state["lambda"] = lmbda
    if options.checkpoint_every:
        save_checkpoint()  # the end, so that a finished run can be continued with more steps
    if reason == "patience" and best is not None:
        obj.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in best.items()})

    net.eval()
    freeze_rng = np.random.default_rng([options.seed, 2])
    train_tiles = torch.cat([torch.from_numpy(sampler.sample(32, rng=freeze_rng)) for _ in range(16)])
    tr_mse, _, y_hat = _evaluate(obj, train_tiles, device)
    # the learned density becomes the integer tables; the Laplace proxy is only a proxy:
    # its tables come from the histograms of the rounded latents of training tiles
    tables = rate.tables() if isinstance(rate, FactorizedDensity) else freeze_tables(y_hat.numpy().astype(np.int64))
    val_mse, _, y_hat_val = _evaluate(obj, val, device)
    tensors = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    summary = {
        "steps": step, "batch_size": options.batch_size, "lambda": options.lmbda, "seed": options.seed,
        "seconds": round(time.time() - t0, 1), "data_shapes": data_shapes,
        "val_psnr_normalized": round(psnr_normalized(val_mse), 2),
        "val_bits_per_value": round(ideal_bits(y_hat_val.numpy().astype(np.int64), tables) / val.numel(), 4),
        "train_psnr_normalized": round(psnr_normalized(tr_mse), 2),
        "train_bits_per_value": round(ideal_bits(y_hat.numpy().astype(np.int64), tables) / train_tiles.numel(), 4),
        "epochs": round(step * per_step / max(1, info["training_tiles"]), 3),
        "stop_reason": reason, "density": options.density, "validation": "held-out" if val_parts else "training data (nothing held out)",
        "val_fraction": options.val_fraction, **info, "world_size": dist.world,
    }
    if options.target_bpv:
        summary.update(target_bpv=options.target_bpv, final_lambda=lmbda)
    if state["best_step"]:
        summary.update(best_step=state["best_step"], best_val_psnr_normalized=round(state["best_val_psnr"], 2))
    return cfg, tensors, tables, summary


def freeze_tables(y_hat: np.ndarray) -> Tables:
    """Per-channel histograms of rounded latents -> integer tables with an escape entry."""
    c = y_hat.shape[1]
    per_channel = y_hat.swapaxes(0, 1).reshape(c, -1)
    lo = np.percentile(per_channel, 0.01, axis=1).astype(np.int64) - 1
    hi = np.percentile(per_channel, 99.99, axis=1).astype(np.int64) + 1
    width = int(min(MAX_TABLE, (hi - lo).max() + 1))
    counts = np.zeros((c, width))
    for ch in range(c):
        v = per_channel[ch] - lo[ch]
        v = v[(v >= 0) & (v < width)]
        counts[ch] = np.bincount(v, minlength=width)[:width]
    return Tables.from_counts(counts + 0.5, lo)


def save(path, cfg: ArchConfig, tensors: dict, tables: Tables, summary: dict, version: str) -> tuple[str, str]:
    """Write the model file; returns (name, id). The name carries the id's first 12 digits."""
    mid = model_id(cfg.to_dict(), tensors, tables)
    name = f"conv{cfg.ndim}d-{mid[:12]}"
    write_model(path, name=name, config=cfg.to_dict(), tensors=tensors, tables=tables, summary=summary, version=version)
    return name, mid
