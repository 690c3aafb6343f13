"""Benchmark of the Official Account callback (not a test): what the server answered, side by
side with WeRoBot in one run.

  (a) check-ins: encrypted ``签到`` where every request is a registered member's FIRST check-in
      of the day (members seeded through the store before the run; each is sent one message;
      the ledger's check-in count after the run shows every answer was a credit), wrk with
      ``--connections``, against one ``memberbot serve`` on SQLite, and against WeRoBot safe
      mode (gunicorn, 2 sync workers, no storage) with such messages of 2,000 followers over
      and over for the whole run (it keeps nothing; given one message per member it would run
      out of them before the run ends and wrk would under-count it); rounds alternate.
  (b) first contact: the first ``签到`` of followers memberbot has never seen (each registers
      a member and checks in); the member count after the run shows every one registered.
  (c) peak: ``--peak-rate`` (150 % of the README's brand peak) first check-ins per second for
      ``--peak-seconds`` at a fixed rate (open loop), every reply decrypted and checked.
  (e) floor: the same load on a ``memberbot serve`` whose answer is a fixed text (no member
      logic, no member write; each callback's nonce is still checked and kept): what the
      callback path costs before the use case, beside WeRoBot in the same rounds.
  (d) start and size: ``memberbot serve`` to a 200 ``/healthz`` on the seeded store, and its
      RSS after start and at its peak over the run.

Server CPU (µs/request) and bytes written per request come from /proc/<pid> of the server
(gunicorn: master and workers). Only 127.0.0.1; every process stops with the run.

    .venv/bin/python bench/oa_bench.py [--members 100000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import oa_load as L  # noqa: E402

from bot.handlers.wxproto import SafeMode  # noqa: E402

CREDIT = "签到成功"


def take(pool: list[str], n: int) -> list[str]:
    if len(pool) < n:
        raise SystemExit(f"not enough seeded members left ({len(pool)} < {n}): raise --members")
    out, pool[:] = pool[:n], pool[n:]
    return out


def row(name: str, r: dict) -> str:
    return (f"  {name:<22} {r['rps']:>8.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
            f"{r['cpu_us']:>8.0f} {r['disk_kb']:>8.1f} {r['wchar_kb']:>8.1f} {r['requests']:>8}"
            f" {r['errors']:>6}" + (f"  socket errors: {r['socket_errors']}"
                                     if r.get("socket_errors") else "")
            + ("  (ran out of requests: req/s is a lower bound)" if r.get("spent") else ""))


HEAD = (f"  {'server':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>8} "
        f"{'disk KB':>8} {'write KB':>8} {'requests':>8} {'errors':>6}   (per request)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=100_000, help="seeded before the run")
    ap.add_argument("--seconds", type=int, default=5, help="per timed wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=20_000,
                    help="most first check-ins (members) one wrk run may use")
    ap.add_argument("--peak-rate", type=float, default=500.0)
    ap.add_argument("--peak-seconds", type=int, default=60)
    ap.add_argument("--only", default="a,b,c,d,e", help="scenarios to run, e.g. a,d")
    args = ap.parse_args()
    if not L.WRK:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    only = set(args.only.split(","))
    safe = SafeMode(L.TOKEN, L.AES_KEY, L.APPID)
    tmp = Path(tempfile.mkdtemp(prefix="memberbot-bench-"))
    srv = L.Servers(tmp)
    try:
        run(args, only, safe, tmp, srv)
    finally:
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, only: set[str], safe: SafeMode, tmp: Path,
        srv: L.Servers) -> None:
    settings = srv.settings()
    db = tmp / "data" / "memberbot.db"
    secs = asyncio.run(L.seed(settings, args.members))
    print(f"setup: {args.members:,} members seeded through the store in {secs:.1f} s "
          f"({os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f})")
    pool = [L.openid("m", i) for i in range(args.members)]
    mb, port, start_s = srv.memberbot()
    rss0 = L.rss_mb(mb.pid)[0]
    results: dict[str, list[dict]] = {"memberbot": [], "werobot": [], "first": [],
                                      "floor": []}
    what = ""
    conns = args.connections
    if "a" in only or "b" in only or "e" in only:
        wr, wport, what = srv.werobot()
        fl, fport = srv.floor() if "e" in only else (None, 0)
        sample = L.requests(safe, take(pool, 1), "签到")[0]
        got = asyncio.run(L.ask(safe, port, *sample))
        if CREDIT not in got:
            raise SystemExit(f"memberbot did not credit a first check-in: {got!r}")
        if "签到" not in asyncio.run(L.ask(safe, wport, *sample)):
            raise SystemExit("WeRoBot did not echo")
        fresh = 0
        for r in range(args.rounds):
            order = ["memberbot", "werobot", "first", "floor"]
            for name in order if r % 2 == 0 else order[::-1]:
                wanted = {"memberbot": "a", "first": "b", "floor": "e"}.get(name)
                if wanted and wanted not in only or name == "werobot" and not only & {"a", "e"}:
                    continue
                if name == "first":
                    ids = [L.openid(f"new{r}", i) for i in range(args.per_round)]
                    fresh += len(ids)
                elif name == "werobot":  # it keeps nothing: these, over and over
                    ids = [L.openid(f"w{r}", i) for i in range(2_000)]
                elif name == "floor":  # no member, but each callback's nonce is new
                    ids = [L.openid(f"f{r}", i) for i in range(2 * args.per_round)]
                else:
                    ids = take(pool, args.per_round)
                reqs = L.requests(safe, ids, "签到")
                pid, p = {"werobot": (wr.pid, wport),
                          "floor": (fl.pid if fl else 0, fport)}.get(name, (mb.pid, port))
                before = (L.ledger_count(db, "checkin"), L.member_count(db))
                res = L.run_wrk(pid, p, reqs, tmp, args.seconds, conns,
                                repeat=name == "werobot")
                time.sleep(0.3)  # what was in flight when wrk stopped is committed
                after = (L.ledger_count(db, "checkin"), L.member_count(db))
                res["credits"], res["registered"] = (after[0] - before[0],
                                                     after[1] - before[1])
                results[name].append(res)
        srv.stop(wr)
        if fl is not None:
            srv.stop(fl)
        report_ab(args, results, what, fresh)
    rss_peak = L.rss_mb(mb.pid)[1]
    if "c" in only:
        n = int(args.peak_rate * args.peak_seconds)
        reqs = L.requests(safe, take(pool, n), "签到")
        before = L.ledger_count(db, "checkin")
        res = asyncio.run(L.fixed_rate(safe, mb.pid, port, reqs, args.peak_rate, CREDIT))
        res["credits"] = L.ledger_count(db, "checkin") - before
        report_c(args, res)
        rss_peak = L.rss_mb(mb.pid)[1]
    srv.stop(mb)
    if "d" in only:
        mb2, _, start2 = srv.memberbot()
        rss2 = L.rss_mb(mb2.pid)[0]
        srv.stop(mb2)
        members = L.member_count(db)
        print(f"(d) start: memberbot serve to a 200 /healthz in {start_s:.2f} s on "
              f"{args.members:,} members, {start2:.2f} s again on {members:,} "
              f"(target < 1.5 s: {'met' if max(start_s, start2) < 1.5 else 'NOT met'})")
        print(f"    RSS: {rss0:.0f} MB after start, {rss2:.0f} MB after a restart on "
              f"{members:,} members, {rss_peak:.0f} MB peak under the runs above "
              f"(target < 150 MB: {'met' if max(rss0, rss2, rss_peak) < 150 else 'NOT met'})")
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report_ab(args: argparse.Namespace, results: dict, what: str, fresh: int) -> None:
    conns = args.connections
    print(f"load: wrk -t1 -c{conns} -d{args.seconds}s per run (or until its members are "
          f"spent: each member is sent one message), {args.rounds} rounds, order alternating")
    print(f"  memberbot = one `memberbot serve`, SQLite;  werobot = {what}")
    print(HEAD)
    for r in range(args.rounds):
        print(f" round {r + 1}")
        for name in ("memberbot", "werobot", "first", "floor"):
            if len(results[name]) > r:
                print(row({"memberbot": "memberbot check-in", "werobot": "werobot echo",
                           "first": "memberbot first contact",
                           "floor": "memberbot floor"}[name], results[name][r]))
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("rps", "p99", "cpu_us")}
           for k, v in results.items() if v}
    for k, v in results.items():
        if not v:
            continue
        answered = sum(x["requests"] for x in v)
        field = "registered" if k == "first" else "credits"
        if k not in ("werobot", "floor"):
            made = sum(x[field] for x in v)
            ok = answered <= made <= answered + 2 * conns * len(v) and \
                sum(x["errors"] for x in v) == 0
            one = "registration" if k == "first" else "credit"
            verdict = f"every answer was a {one}" if ok else f"NOT every answer was a {one}"
            print(f"  {k}: {answered} replies counted by wrk, {made} "
                  f"{'new members' if k == 'first' else 'check-in credits'} in the store "
                  f"({verdict}; "
                  f"the store may count up to {conns} more per run: requests in flight "
                  "when wrk stopped)")
    if "memberbot" in med and "werobot" in med:
        a, b = med["memberbot"], med["werobot"]
        ratio = a["rps"] / b["rps"]
        print(f"(a) check-ins: memberbot {a['rps']:.0f} req/s, p99 {a['p99']:.1f} ms, "
              f"{a['cpu_us']:.0f} µs CPU/req; werobot {b['rps']:.0f} req/s, p99 "
              f"{b['p99']:.1f} ms, {b['cpu_us']:.0f} µs CPU/req (medians)")
        print(f"    ratio {ratio:.2f}x WeRoBot (target >= 1.5: "
              f"{'met' if ratio >= 1.5 else 'NOT met'}); p99 {a['p99']:.1f} ms (target <= 15: "
              f"{'met' if a['p99'] <= 15 else 'NOT met'})")
    if "first" in med and "memberbot" in med:
        f, a = med["first"], med["memberbot"]
        ratio = f["rps"] / a["rps"]
        extra = f"; {f['rps'] / med['werobot']['rps']:.2f}x WeRoBot" if "werobot" in med else ""
        print(f"(b) first contact: {f['rps']:.0f} req/s, p99 {f['p99']:.1f} ms, "
              f"{f['cpu_us']:.0f} µs CPU/req; {ratio:.2f}x the check-in figure{extra} "
              f"(target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    report_e(med)


def report_e(med: dict) -> None:
    if "floor" in med and "werobot" in med:
        f, w = med["floor"], med["werobot"]
        print(f"(e) floor (fixed answer, no member logic): {f['rps']:.0f} req/s, p99 "
              f"{f['p99']:.1f} ms, {f['cpu_us']:.0f} µs CPU/req; {f['rps'] / w['rps']:.2f}x "
              f"WeRoBot (what (a) could reach if the use case cost nothing)")


def report_c(args: argparse.Namespace, r: dict) -> None:
    errors = sum(r["errors"].values())
    print(f"(c) peak: {args.peak_rate:.0f} first check-ins/s due for {args.peak_seconds} s "
          f"(150 % of the README's peak), open loop: {r['requests']} answered in "
          f"{r['seconds']:.1f} s ({r['rps']:.0f}/s), {r['credits']} credits in the store, "
          f"errors {errors} {r['errors'] or ''}")
    print(f"    latency from when each was due: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
          f"max {r['max']:.0f} ms; {r['cpu_us']:.0f} µs CPU and {r['disk_kb']:.1f} KB "
          f"to disk per request (target 0 errors, p99 <= 50 ms: "
          f"{'met' if errors == 0 and r['p99'] <= 50 else 'NOT met'})")


if __name__ == "__main__":
    try:
        main()
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"timed out: {e}") from None
