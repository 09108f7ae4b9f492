"""``xdna-emu fuzz`` and ``xdna-emu trace``: campaign runner, replay and minimise.

``fuzz`` starts ``--jobs`` worker processes (``python -m xdna_emu.fuzz.atheris_target``),
each libFuzzer via atheris when it is installed, else the built-in mutational loop. It
shows a live progress line on a terminal, or without one a progress record on stderr every
``--progress-every`` seconds (CI logs), and ends with a JSON summary (``--json``) or a
one-line summary.

Where things go: the workers run in a work directory ``xdna-fuzz-*`` in the temp directory,
removed at the end unless ``--keep``; the corpus lives there unless ``--corpus`` names one
to keep; findings are moved at the end to ``--artifacts`` (default
``$XDG_CACHE_HOME/xdna-emu/fuzz-artifacts``, ``~/.cache/...`` without it), which is only
created when there is a finding.

Exit status: 0 clean, 1 when a crash or hang was found, 2 usage, 130 when interrupted
(SIGINT/Ctrl-C or SIGTERM: workers finish their example and stop, the corpus is kept and the
summary says ``interrupted``; an interrupted worker is never a finding).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..cmdline import Failure, Handler, UsageError

#: exit status of an interrupted campaign (128 + SIGINT, what a shell reports for Ctrl-C)
EXIT_INTERRUPTED = 130
#: exit status of a libFuzzer worker that was interrupted (its -interrupted_exitcode default)
LIBFUZZER_INTERRUPTED = 72
_COV_RE = re.compile(r"cov: (\d+).*?corp: (\d+)")
_EXECS_RE = re.compile(r"^#(\d+)")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def _jobs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= v <= 64:
        raise argparse.ArgumentTypeError(f"--jobs must be 1..64, got {v}")
    return v


def add_subcommands(sub: Any) -> dict[str, Handler]:
    """Add ``fuzz`` and ``trace`` to the CLI's subparsers; returns their handlers.

    Registered in the ``xdna_emu.commands`` entry-point group (pyproject.toml), so the
    shipped CLI reaches these subcommands without importing the fuzzing kit."""
    fz = sub.add_parser("fuzz", help="coverage-guided fuzzing of the device model")
    from .targets import registry

    targets = registry()
    fz.add_argument("--target", choices=list(targets), default="device",
                    help="; ".join(f"{t.name}: {t.help}" for t in targets.values()))
    fz.add_argument("--chip", default="npu4")
    fz.add_argument("--seconds", type=_positive, default=60.0)
    fz.add_argument("--corpus", help="corpus directory (kept between runs)")
    fz.add_argument("--artifacts", default=None,
                    help="where findings go (.trace/.bin per distinct bug; default "
                         "$XDG_CACHE_HOME/xdna-emu/fuzz-artifacts, created only for a finding)")
    fz.add_argument("--keep", action="store_true",
                    help="keep the xdna-fuzz-* work directory in the temp directory")
    fz.add_argument("--progress-every", type=_positive, default=10.0, metavar="SECONDS",
                    help="without a terminal, a progress record on stderr this often")
    fz.add_argument("--jobs", type=_jobs, default=1)
    fz.add_argument("--seed", type=int, default=1,
                    help="first worker's seed (worker i uses seed+i); the shim target and the "
                         "built-in engine replay exactly from it")
    fz.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    fz.add_argument("--json", action="store_true")

    tr = sub.add_parser("trace", help="replay or minimise a fuzzing trace")
    tsub = tr.add_subparsers(dest="trace_cmd", required=True, parser_class=type(tr))
    rp = tsub.add_parser("replay", help="replay a trace with every invariant checked")
    rp.add_argument("file")
    rp.add_argument("--json", action="store_true")
    mn = tsub.add_parser("minimize", help="shrink a failing trace, keeping its failure")
    mn.add_argument("file")
    mn.add_argument("-o", "--out")
    mn.add_argument("--max-runs", type=int, default=4000)
    mn.add_argument("--any-failure", action="store_true",
                    help="accept any failure while shrinking (default: the same kind, name "
                         "and message)")
    return {"fuzz": cmd_fuzz, "trace": cmd_trace}


# -- trace -----------------------------------------------------------------------------------
def _load_trace(path: str) -> Any:
    from .ops import TraceError
    from .trace import load

    if not Path(path).is_file():
        raise UsageError(f"trace file {path} does not exist")
    try:
        trace = load(path)
        from ..chips import load_chip

        load_chip(trace.chip)
    except TraceError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return trace


def cmd_trace(args: argparse.Namespace) -> int:
    from .ops import TraceError
    from .trace import minimize, replay

    trace = _load_trace(args.file)
    try:
        if args.trace_cmd == "replay":
            res = replay(trace)
            if args.json:
                print(json.dumps({"ok": res.ok, "steps": res.steps, "line": res.line,
                                  "kind": res.failure.kind if res.failure else None,
                                  "name": res.failure.name if res.failure else None,
                                  "message": res.failure.message if res.failure else None}))
            else:
                print(res.describe())
            return 0 if res.ok else 1
        try:
            small = minimize(trace, args.max_runs,
                             log=lambda m: print(f"minimize: {m}", file=sys.stderr),
                             any_failure=args.any_failure)
        except ValueError as exc:
            raise Failure(str(exc)) from None
    except TraceError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    res = replay(small)
    small.header.append(f"minimised from {Path(args.file).name}: {res.failure}")
    text = small.to_text()
    if args.out:
        Path(args.out).write_text(text)
        print(f"{args.out}: {len(trace.ops)} -> {len(small.ops)} ops; {res.failure}")
    else:
        sys.stdout.write(text)
    return 0


# -- fuzz ------------------------------------------------------------------------------------
def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


class _Worker:
    def __init__(self, cmd: list[str], stats: Path, current: Path | None = None) -> None:
        self.stats = stats
        self.current = current  # where the worker keeps the example it is running
        self.cov = self.corp = self.execs_line = 0
        self.tail: list[str] = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = _COV_RE.search(line)
            if m:
                self.cov = max(self.cov, int(m.group(1)))
                self.corp = int(m.group(2))
            e = _EXECS_RE.match(line)
            if e:
                self.execs_line = int(e.group(1))
            self.tail = (self.tail + [line.rstrip()])[-20:]

    def info(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {}


def cmd_fuzz(args: argparse.Namespace) -> int:
    from ..chips import chip_names, load_chip

    if args.chip not in chip_names() or not load_chip(args.chip).emulated:
        raise UsageError(f"chip {args.chip!r} cannot be fuzzed (it is known by identity only, not emulated)")
    from .targets import registry

    engine = args.engine
    spec = registry()[args.target]
    if "atheris" not in spec.engines:  # its own loop
        if engine == "atheris":
            raise UsageError(f"the {args.target} target runs the built-in engine here"
                             + ("; for libFuzzer guided by the C shim's coverage run make "
                                "fuzz-shim" if args.target == "shim" else ""))
        engine = "builtin"
    elif engine == "auto":
        engine = "atheris" if _have_atheris() else "builtin"
    elif engine == "atheris" and not _have_atheris():
        raise UsageError("atheris is not installed (pip install atheris, or --engine builtin)")
    artifacts = Path(args.artifacts).resolve() if args.artifacts else default_artifacts()
    work = Path(tempfile.mkdtemp(prefix="xdna-fuzz-"))
    try:
        return _campaign(args, engine, work, artifacts)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def default_artifacts() -> Path:
    """Where findings go without ``--artifacts``: the user's cache, never the cwd."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "xdna-emu" / "fuzz-artifacts"


def _campaign(args: argparse.Namespace, engine: str, work: Path, artifacts: Path) -> int:
    corpus = Path(args.corpus).resolve() if args.corpus else work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds_dir = work / "seeds"
    seeds_dir.mkdir()
    found_dir = work / "artifacts"  # workers write here; moved to ``artifacts`` at the end
    found_dir.mkdir()
    from .targets import registry

    spec = registry()[args.target]
    for name, data in spec.load_seeds(args.chip).items():
        (seeds_dir / name).write_bytes(data)
    base = [sys.executable, "-m", spec.worker, *spec.argv, "--chip", args.chip,
            "--artifacts", str(found_dir)]
    workers = []
    t0 = time.monotonic()
    secs = int(max(1, round(args.seconds)))
    for i in range(args.jobs):
        stats = work / f"stats-{i}.json"
        current = work / f"current-{i}.trace" if spec.current else None
        if engine == "atheris":
            from .atheris_target import MAX_INPUT, write_dictionary

            dict_path = write_dictionary(work / "xdna.dict")
            cmd = [*base, "--stats", str(stats), "--seed", str(args.seed + i), "--", str(corpus), str(seeds_dir),
                   f"-max_total_time={secs}", f"-dict={dict_path}", "-use_value_profile=1",
                   "-timeout=30", f"-max_len={MAX_INPUT}", f"-seed={args.seed + i}", "-rss_limit_mb=4096",
                   f"-artifact_prefix={found_dir}/", "-print_final_stats=1"]
        else:
            cmd = [*base, *spec.builtin_argv, "--stats", str(stats), "--seconds",
                   str(args.seconds), "--seed", str(args.seed + i), "--corpus", str(corpus),
                   *(["--current", str(current)] if current is not None else [])]
        workers.append(_Worker(cmd, stats, current))
    tty = sys.stderr.isatty() and not args.json
    deadline = t0 + args.seconds + 60
    killed = 0
    interrupted = False
    last_record = t0
    # SIGINT gets its handler explicitly, like SIGTERM: a campaign started with SIGINT ignored
    # (``&`` in a shell script does that) has no KeyboardInterrupt of Python's own, while the
    # workers always stop on SIGINT, so the campaign would end as if it had run out of time
    # (docs/spec/fuzzing.md §4: SIGINT always means interrupted, 130).
    prev_sigint = signal.signal(signal.SIGINT, _raise_interrupt)
    prev_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while any(w.proc.poll() is None for w in workers):
            time.sleep(0.5)
            now = time.monotonic()
            if tty:
                sys.stderr.write("\r" + _progress(args.target, workers, now - t0) + "\x1b[K")
                sys.stderr.flush()
            elif now - last_record >= args.progress_every:
                last_record = now
                print(_progress(args.target, workers, now - t0), file=sys.stderr, flush=True)
            if now > deadline:
                for w in workers:
                    if w.proc.poll() is None:
                        w.proc.kill()
                        killed += 1
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the wind-down
        for w in workers:  # on a terminal they got the SIGINT too; from kill(1) only we did
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
    finally:
        signal.signal(signal.SIGTERM, prev_sigterm)
        if not interrupted:  # an interrupted one keeps ignoring a second Ctrl-C to the end
            signal.signal(signal.SIGINT, prev_sigint)
    for w in workers:
        w.reader.join(5)
    elapsed = time.monotonic() - t0
    if tty:
        sys.stderr.write("\r\x1b[K")
    summary = _summary(args, engine, workers, elapsed, corpus, found_dir, killed, interrupted)
    summary["artifacts"] = _deliver(summary["artifacts"], found_dir, artifacts)
    summary["artifacts_dir"] = str(artifacts)
    if not args.corpus and not args.keep:
        summary["corpus"] = None  # it lived in the work directory, now removed
    if args.keep:
        summary["work_dir"] = str(work)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"fuzz {args.target} ({engine}, {args.chip}){' INTERRUPTED' if interrupted else ''}: "
              f"{summary['execs']} execs in "
              f"{summary['seconds']:.0f} s ({summary['execs_per_s']:.0f}/s), coverage "
              f"{summary['coverage']}, corpus {summary['corpus_size']}, crashes "
              f"{summary['crashes']}, hangs {summary['hangs']}")
        for path in summary["artifacts"]:
            print(f"  finding: {path}")
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary["crashes"] or summary["hangs"] else 0


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    """SIGINT or SIGTERM to the campaign: a clean, interrupted stop."""
    raise KeyboardInterrupt


def _deliver(found: list[str], src: Path, dest: Path) -> list[str]:
    """Move the findings out of the work directory into ``dest`` (made only when needed)."""
    out = []
    for name in found:
        p = Path(name)
        if p.parent == src and p.exists():
            dest.mkdir(parents=True, exist_ok=True)
            for sib in src.glob(p.stem + ".*"):  # a .bin with its .trace
                shutil.move(str(sib), dest / sib.name)
            p = dest / p.name
        out.append(str(p))
    for rest in src.iterdir() if src.is_dir() else ():  # e.g. libFuzzer's crash-* inputs
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(str(rest), dest / rest.name)
        out.append(str(dest / rest.name))
    return sorted(set(out))


def _progress(target: str, workers: list[_Worker], elapsed: float) -> str:
    infos = [w.info() for w in workers]
    execs = sum(i.get("execs", 0) for i in infos)
    cov = max([w.cov for w in workers] + [i.get("coverage", 0) for i in infos])
    corp = max([w.corp for w in workers] + [i.get("corpus", 0) for i in infos])
    crashes = sum(i.get("crashes", 0) for i in infos)
    hangs = sum(i.get("hangs", 0) for i in infos)
    return (f"[fuzz {target}] {elapsed:6.1f}s  execs {execs} ({execs / max(elapsed, 1e-9):.0f}/s)"
            f"  cov {cov}  corpus {corp}  findings {crashes + hangs} (crashes {crashes}"
            f" hangs {hangs})")


def _summary(args: argparse.Namespace, engine: str, workers: list[_Worker], elapsed: float,
             corpus: Path, artifacts: Path, killed: int, interrupted: bool = False) -> dict[str, Any]:
    infos = [w.info() for w in workers]
    extra_artifacts: list[str] = []
    execs = sum(max(i.get("execs", 0), w.execs_line) for i, w in zip(infos, workers, strict=True))
    crashes = sum(i.get("crashes", 0) for i in infos)
    hangs = sum(i.get("hangs", 0) for i in infos) + killed
    errors = []
    for w in workers:
        rc = w.proc.returncode
        if interrupted:  # stopped by us mid-example: whatever it was doing is no finding
            if rc not in (0, None, -signal.SIGINT, LIBFUZZER_INTERRUPTED):
                errors.append(f"interrupted worker exited {rc}")
        elif rc == 70:  # libFuzzer -timeout: a real (wall-clock) hang
            hangs += 1
        elif rc not in (0, None, -9) and not w.info().get("final"):
            stuck = any(line.startswith("Timeout (") for line in w.tail)
            if stuck:
                hangs += 1
            else:
                crashes += 1
            errors.append(f"worker exited {rc}: {' | '.join(w.tail[-3:])}")
            if w.current is not None and w.current.is_file():  # the example it died in
                text = w.current.read_text()
                digest = hashlib.sha1(text.encode()).hexdigest()[:10]
                dest = artifacts / f"{'hang-wallclock' if stuck else 'crash-worker'}-{digest}.trace"
                dest.write_text(text)
                extra_artifacts.append(str(dest))
    cov = max([w.cov for w in workers] + [i.get("coverage", 0) for i in infos] + [0])
    if engine == "atheris":
        corpus_size = sum(1 for p in corpus.iterdir() if p.is_file())
    else:
        corpus_size = max([i.get("corpus", 0) for i in infos] + [0])
    found = sorted({a for i in infos for a in i.get("artifacts", [])} | set(extra_artifacts))
    wall_rate = round(execs / elapsed, 1) if elapsed > 0 else 0.0
    # each worker's own rate over its fuzzing time (start-up left out), summed; a worker
    # that reported no fuzzing time counts at the campaign's wall-clock rate
    rates = [i.get("execs", 0) / i["fuzz_seconds"] if i.get("fuzz_seconds") else None for i in infos]
    rate = round(sum(r for r in rates if r is not None), 1) if all(r is not None for r in rates) \
        else wall_rate
    # and over each worker's CPU time: the rate a loaded machine's contention leaves out
    cpu = [i.get("execs", 0) / i["cpu_seconds"] if i.get("cpu_seconds") else None for i in infos]
    cpu_rate = round(sum(r for r in cpu if r is not None), 1) if cpu and all(r is not None for r in cpu) \
        else None
    return {"target": args.target, "engine": engine, "chip": args.chip, "jobs": args.jobs,
            "seconds": round(elapsed, 2), "execs": execs,
            "execs_per_s": rate, "wall_execs_per_s": wall_rate, "cpu_execs_per_s": cpu_rate,
            "crashes": crashes, "hangs": hangs, "coverage": cov, "corpus_size": corpus_size,
            # a target's own counters (the shim's steps, forks, restores and bring-ups, the device's restores)
            **{k: sum(i.get(k, 0) for i in infos) for k in ("steps", "restored", "memo_hits", "tracking_misses",
                                                                 "journal_misses", "forks", "bring_ups")
               if any(k in i for i in infos)},
            **{k: i[k] for i in infos[:1] for k in ("page_tracking",) if k in i},
            "unique": sorted({u for i in infos for u in i.get("unique", [])}),
            "artifacts": found, "errors": errors, "corpus": str(corpus),
            "interrupted": interrupted}
