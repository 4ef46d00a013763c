"""A few hundred structured and byte-level mutations of containers of every storage, slabs,
skeletons and embedded models (tests/fuzzing.py; benchmarks/fuzz.py runs >= 10,000):
every outcome is a clean error or a decode, never an internal error, a hang or a write
outside the output; on format 5, every mutation that leaves the checksums as they are is
refused or decodes to the same values."""

import os

import pytest

import fuzzing

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "formats", "golden")
CASES = 240


@pytest.fixture(scope="module")
def forker():
    f = fuzzing.Forker()
    yield f
    f.close()


@pytest.fixture(scope="module")
def bases(tmp_path_factory, forker):
    folder = str(tmp_path_factory.mktemp("bases"))
    made = fuzzing.make_bases(folder)
    for name in ("v2/fit-embedded.aez", "v1/conv2d-32d00acc90bb.aez", "v4/psnr-filter-2d.aez"):
        made.append(os.path.join(GOLDEN, name))
    return made, fuzzing.reference_digests(made, forker)


def test_mutations_end_cleanly(bases, forker, tmp_path):
    made, reference = bases
    victims = str(tmp_path / "victims")
    os.makedirs(victims)
    victim = os.path.join(victims, "victim.h5")
    with open(victim, "wb") as fp:
        fp.write(b"keep me" * 100)
    bad = []
    results = []
    for case in fuzzing.cases(made, CASES, seed=16, victim=victim):
        d = fuzzing.classify(case, str(tmp_path), reference, timeout=20, victims=victims, forker=forker)
        results.append(d)
        checked = case.kind in ("bytes", "stale") and fuzzing.format_version(case.base) >= 5
        allowed = {"clean", "identical"} if checked else {"clean", "identical", "different"}
        if d["outcome"] not in allowed or d["outside_writes"]:
            bad.append((case.kind, case.what, os.path.basename(case.base), d["outcome"], d["detail"][:300]))
    counts = fuzzing.tally(results)
    assert not bad, f"{counts}: {bad[:5]}"
    assert counts["clean"] > CASES // 3 and counts["hang"] == 0
