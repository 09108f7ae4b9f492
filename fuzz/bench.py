#!/usr/bin/env python3
"""Seeded-bug benchmark of the fuzz targets (``make fuzz-bench``).

Each ``fuzz/mutants/*.patch`` plants one small bug of a kind the driver or the firmware
has had (its ``# what:`` line says which). For each, in a scratch copy of the working tree,
the patch is applied (and the C shim rebuilt when it touches ``csrc/``; every tree runs
the shim's debug build, with the lock checker of csrc/lockdep.c), then the shim target, the
device target and the threads target each run for the same budget with the same seed, side
by side (a worker that dies, e.g. in the lock checker's abort, has found something), and the time to their first finding is printed, or "missed". A first row runs the
unpatched tree (and one more per chip a patch's ``# chip:`` line names: that mutant's bug is
in code only that chip runs, so the targets run there with ``--chip``, a target the registry
marks ``aie4: False`` left out on an AIE4 chip); a finding there is a false alarm and makes
the run fail.

usage: fuzz/bench.py [--seconds 30] [--seed 1] [--only SUBSTR] [--controls] [--json FILE] [--keep]
Exit status: 0 when the control rows are clean, 1 otherwise (missed mutants do not fail it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "fuzz" / "mutants"
sys.path.insert(0, str(ROOT))
from xdna_emu.fuzz.targets import registry  # noqa: E402 - the registry reads files, imports nothing

#: the targets the registry marks for the benchmark (docs/spec/fuzzing.md §11)
TARGETS = tuple(t.name for t in registry().values() if t.bench)
#: every tree runs the shim's debug build: the lock checker on (csrc/lockdep.c)
DEBUG_CFLAGS = "-DXDNA_LOCKDEP -O2 -g"


def header(patch: Path) -> dict[str, str]:
    """The ``# key: value`` lines a patch starts with."""
    out = {}
    for line in patch.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(":")
        out[key.strip()] = value.strip()
    return out


def copy_tree(dest: Path) -> None:
    """The working tree's tracked files (as they are now) plus the built shim."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for so in (ROOT / "xdna_emu").glob("_shim*.so"):
        shutil.copy2(so, dest / "xdna_emu" / so.name)


def build_shim(tree: Path, py: str) -> None:
    """Rebuild the cffi extension inside ``tree`` with the package's own ffibuilder."""
    build = tree / "build-shim"
    build.mkdir()
    (build / "csrc").symlink_to(tree / "csrc")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from xdna_emu._shim_build import ffibuilder; ffibuilder.compile(tmpdir='.')")
    env = {**os.environ, "CFLAGS": DEBUG_CFLAGS}
    r = subprocess.run([py, "-c", code, str(tree)], cwd=build, capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        raise RuntimeError(f"shim build failed:\n{r.stderr[-3000:]}")
    for old in (tree / "xdna_emu").glob("_shim*.so"):
        old.unlink()
    for so in (build / "xdna_emu").glob("_shim*.so"):
        shutil.move(str(so), tree / "xdna_emu" / so.name)
    shutil.rmtree(build)


def runs_on(target: str, chip: str | None) -> bool:
    """Does the target run on ``chip`` (None: the targets' default)?"""
    from xdna_emu.chips import load_chip

    return chip is None or registry()[target].aie4 or load_chip(chip).aie4 is None


def run_targets(tree: Path, work: Path, seconds: float, seed: int, py: str,
                chip: str | None = None, targets: tuple[str, ...] = TARGETS) -> dict[str, dict]:
    """The targets side by side on ``tree`` for ``seconds`` (on ``chip``, a patch's ``# chip:``
    line, for a bug only one generation reaches; a target that does not run there is left
    out); each one's final stats."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(work)}
    env.pop("CI", None)
    procs = {}
    for t in (t for t in targets if runs_on(t, chip)):
        stats = work / f"{t}.json"
        art = work / f"art-{t}"
        spec = registry()[t]
        cmd = [py, "-m", spec.worker, *spec.argv, *spec.builtin_argv, "--seconds", str(seconds),
               "--seed", str(seed), "--stats", str(stats), "--artifacts", str(art),
               *(["--chip", chip] if chip else [])]
        procs[t] = (subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True), stats)
    t0 = time.monotonic()
    ended: dict[str, float] = {}
    while len(ended) < len(procs) and time.monotonic() - t0 < seconds + 600:
        for t, (p, _) in procs.items():
            if t not in ended and p.poll() is not None:
                ended[t] = time.monotonic() - t0
        time.sleep(0.2)
    out = {}
    for t, (p, stats) in procs.items():
        _, err = p.communicate(timeout=60)
        try:
            info = json.loads(stats.read_text())
        except (OSError, ValueError):
            info = {}
        if p.returncode != 0 and not info.get("final"):
            # the worker died (an abort of the lock checker or a sanitizer, a signal): a
            # finding at the time it died, named by its last line
            last = (err.strip().splitlines() or ["?"])[-1][:60]
            info = {**info, "first_finding_s": info.get("first_finding_s") or ended.get(t, seconds),
                    "unique": [*info.get("unique", []), f"crash:worker died ({last})"]}
        elif not info:
            info = {"error": f"worker exited {p.returncode}: {err.strip().splitlines()[-1:]}"}
        out[t] = info
    return out


def cell(info: dict | None) -> str:
    if info is None:
        return "n/a"
    if "error" in info:
        return "error"
    first = info.get("first_finding_s")
    if first is None:
        return "missed"
    return f"{first:.1f} s ({', '.join(u.split(':', 1)[1] for u in info.get('unique', []))})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fuzz/bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="budget per target and mutant")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="run the mutants whose name contains this (comma-separated: any of them)")
    ap.add_argument("--controls", action="store_true",
                    help="run only the control rows (the unpatched tree, once more per chip the "
                         "selected mutants name)")
    ap.add_argument("--targets", help="comma-separated subset of the targets (default: every bench target)")
    ap.add_argument("--json", help="write every row here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the scratch trees")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args(argv)
    patches = sorted(MUTANTS.glob("*.patch"))
    if args.only:
        patches = [p for p in patches if any(w in p.stem for w in args.only.split(","))]
    targets = tuple(args.targets.split(",")) if args.targets else TARGETS
    if set(targets) - set(TARGETS):
        ap.error(f"--targets: choose from {', '.join(TARGETS)}")
    scratch = Path(tempfile.mkdtemp(prefix="xdna-bench-"))
    base = scratch / "base"
    copy_tree(base)
    build_shim(base, args.python)  # the debug build, which every tree starts from
    rows = []
    t_all = time.monotonic()
    print(f"fuzz-bench: {len(patches)} mutants, {args.seconds:.0f} s per target, seed {args.seed}",
          file=sys.stderr)
    try:
        chips = sorted({header(p)["chip"] for p in patches if "chip" in header(p)})
        # a control row per chip a mutant names: a false alarm there is one too
        for patch, chip in [(None, None), *((None, c) for c in chips),
                            *((p, header(p).get("chip")) for p in patches if not args.controls)]:
            name = ("(none: control" + (f", {chip})" if chip else ")")) if patch is None else patch.stem
            meta = ({"what": "the unpatched tree", "target": "-"} if patch is None else header(patch))
            tree = scratch / (patch.stem if patch else f"control{chip or ''}")
            work = scratch / f"work-{tree.name}"
            work.mkdir()
            shutil.copytree(base, tree, symlinks=True)
            if patch is not None:
                r = subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=tree,
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"{patch.name} does not apply: {r.stdout}{r.stderr}")
                if "csrc/" in patch.read_text():
                    build_shim(tree, args.python)
            res = run_targets(tree, work, args.seconds, args.seed, args.python, chip, targets)
            firsts = [i.get("first_finding_s") for i in res.values() if i.get("first_finding_s") is not None]
            row = {"mutant": name, "what": meta.get("what", ""), "planted_in": meta.get("target", ""),
                   "chip": chip, **{t: cell(res.get(t)) for t in targets},
                   "first_s": min(firsts) if firsts else None,
                   "found_by": [t for t in res if res[t].get("first_finding_s") is not None],
                   "execs": {t: res[t].get("execs") for t in res}}
            rows.append(row)
            print(f"{name:36s} " + "  ".join(f"{t}: {row[t]:40s}" for t in targets),
                  file=sys.stderr)
            if not args.keep:
                shutil.rmtree(tree, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    controls = [r for r in rows if r["mutant"].startswith("(none")]
    found = sum(1 for r in rows if r not in controls and r["first_s"] is not None)
    print("\n| mutant | what it breaks | " + " | ".join(f"{t} target" for t in targets) + " |\n"
          + "|---" * (2 + len(targets)) + "|")
    for r in rows:
        print(f"| {r['mutant']} | {r['what']} | " + " | ".join(r[t] for t in targets) + " |")
    print(f"\n{found}/{len(rows) - len(controls)} mutants found within {args.seconds:.0f} s per target "
          f"(wall {time.monotonic() - t_all:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "seed": args.seed,
                                               "rows": rows}, indent=2))
    return 0 if controls and all(r["first_s"] is None for r in controls) else 1


if __name__ == "__main__":
    sys.exit(main())
