#!/usr/bin/env python3
"""Mutate containers of every storage, slabs, skeletons and embedded models, and count how
each mutation ends (tests/fuzzing.py: byte damage anywhere, structured edits of the header,
records and stream tables with checksums left stale or recomputed, forged skeletons,
damaged embedded models and their configurations).

    python benchmarks/fuzz.py --cases 10000 [--seed 1] [--timeout 20] [--show 10]

Prints, per kind of mutation and in all: clean errors (exit 2), decodes identical to the
unmutated file, different decodes, other exceptions (exit 1: bugs), hangs (over --timeout
seconds), writes outside the output, peak RSS of one case and its longest time. On format
5 files, a different decode of a mutation that left the checksums as they are ("bytes",
"stale") is a failure; for "forged" records (checksums recomputed) it is what the forger
asked for.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fuzzing  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--show", type=int, default=10, help="print this many failing cases")
    a = p.parse_args()
    forker = fuzzing.Forker()
    with tempfile.TemporaryDirectory(prefix="aezip-fuzz-") as work:
        bases = fuzzing.make_bases(os.path.join(work, "bases"))
        golden = sorted(glob.glob(os.path.join(ROOT, "formats", "golden", "v5", "*.aez")))
        older = [os.path.join(ROOT, "formats", "golden", n) for n in
                 ("v1/conv2d-32d00acc90bb.aez", "v2/fit-embedded.aez", "v4/psnr-filter-2d.aez")]
        for src in golden + older:  # copies: golden files rewritten meanwhile must not change the references
            bases.append(os.path.join(work, "bases", os.path.basename(os.path.dirname(src)) + "-" + os.path.basename(src)))
            shutil.copy(src, bases[-1])
        reference = fuzzing.reference_digests(bases, forker)
        victims = os.path.join(work, "victims")
        os.makedirs(victims)
        victim = os.path.join(victims, "victim.h5")
        with open(victim, "wb") as fp:
            fp.write(b"keep me" * 100)
        by_kind: dict[str, list[dict]] = {}
        failures = []
        t0 = time.perf_counter()
        for i, case in enumerate(fuzzing.cases(bases, a.cases, a.seed, victim)):
            d = fuzzing.classify(case, work, reference, a.timeout, victims, forker)
            v5 = fuzzing.format_version(case.base) >= 5
            kind = case.kind if case.kind not in ("bytes", "stale") or v5 else case.kind + "-v<5"
            by_kind.setdefault(kind, []).append(d)
            checked = kind in ("bytes", "stale")
            if d["outcome"] in ("other", "hang") or d["outside_writes"] or (checked and d["outcome"] == "different"):
                failures.append((kind, case.what, os.path.basename(case.base), d["outcome"], d["detail"]))
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    forker.close()
    print(f"{a.cases} mutations over {len(bases)} containers (seed {a.seed}), {time.perf_counter() - t0:.0f} s")
    header = ["kind", "cases", *fuzzing.OUTCOMES, "outside_writes", "peak_rss_mb", "max_seconds"]
    print(" ".join(f"{h:>14}" for h in header))
    everything = []
    for kind in sorted(by_kind):
        everything += by_kind[kind]
        t = fuzzing.tally(by_kind[kind])
        print(" ".join(f"{v:>14}" for v in [kind, len(by_kind[kind]), *(t[h] for h in header[2:])]))
    t = fuzzing.tally(everything)
    print(" ".join(f"{v:>14}" for v in ["all", len(everything), *(t[h] for h in header[2:])]))
    print(f"failures (other, hang, outside writes, or a different decode with checksums left as they were on "
          f"format 5): {len(failures)}")
    for f in failures[: a.show]:
        print(json.dumps(f)[:1500])


if __name__ == "__main__":
    main()
