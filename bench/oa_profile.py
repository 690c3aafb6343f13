"""Profile ``memberbot serve`` under the check-in load of ``oa_bench.py`` (a) (not a test).

Seeds members, starts one ``memberbot serve`` on SQLite, records it with py-spy (``--idle``
off: only samples where a thread runs) while wrk sends first check-ins, and prints the
functions with the most samples (all threads, or ``--loop-only``), inclusive and own.

    .venv/bin/python bench/oa_profile.py [--members 40000] [--seconds 10] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import oa_load as L  # noqa: E402

from bot.handlers.wxproto import SafeMode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=40_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--loop-only", action="store_true",
                    help="only the event loop's thread (not the SQLite writer thread)")
    ap.add_argument("--first-contact", action="store_true",
                    help="first messages of never-seen followers instead")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="memberbot-prof-"))
    srv = L.Servers(tmp)
    try:
        asyncio.run(L.seed(srv.settings(), args.members))
        mb, port, _ = srv.memberbot()
        ids = ([L.openid("new", i) for i in range(args.members)] if args.first_contact
               else [L.openid("m", i) for i in range(args.members)])
        reqs = L.requests(SafeMode(L.TOKEN, L.AES_KEY, L.APPID), ids, "签到")
        raw = tmp / "profile.txt"
        spy = subprocess.Popen([str(L.BIN / "py-spy"), "record", "-p", str(mb.pid), "-r", "200",
                                "-d", str(args.seconds + 1), "-f", "raw", "-o", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res = L.run_wrk(mb.pid, port, reqs, tmp, args.seconds, 32)
        spy.wait(timeout=60)
        print(f"{res['rps']:.0f} req/s, p99 {res['p99']:.1f} ms, {res['cpu_us']:.0f} µs CPU "
              f"and {res['disk_kb']:.1f} KB to disk per request")
        report(raw, args.top, args.loop_only)
    finally:
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(raw: Path, top: int, loop_only: bool) -> None:
    total: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        n = int(n)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                  for f in stack.split(";")]
        if loop_only and not any("run_app" in f for f in frames):
            continue  # the event loop's thread only
        samples += n
        for f in set(frames):
            total[f] += n
        if frames:
            own[frames[-1]] += n
    print(f"{samples} samples; inclusive % | own % | function (file:line)")
    for f, n in total.most_common(top):
        print(f"{100 * n / samples:6.1f} {100 * own[f] / samples:6.1f}  {f}")
    print("by own samples:")
    for f, n in own.most_common(top):
        print(f"{100 * total[f] / samples:6.1f} {100 * n / samples:6.1f}  {f}")


if __name__ == "__main__":
    main()
