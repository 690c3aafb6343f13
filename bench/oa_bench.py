"""Benchmark of the Official Account callback (not a test).

Drives encrypted safe-mode ``签到`` messages from rotating members for a fixed time at a fixed
number of connections against, side by side in one run:

  (a) memberbot: one ``memberbot serve`` process on SQLite in a temporary data folder;
  (b) a WeRoBot safe-mode echo server with no storage: gunicorn with 2 sync workers when
      gunicorn is installed, else WeRoBot's own server (the output says which).

Load comes from wrk (``/usr/bin/wrk``, with a Lua script rotating through pre-signed requests)
or, without wrk, from an aiohttp load generator. Only 127.0.0.1; every loop stops by itself.

    .venv/bin/python bench/oa_bench.py [--seconds 8] [--connections 32] [--members 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot.handlers.wxproto import SafeMode, callback_xml, signature, signed_query  # noqa: E402

TOKEN = "benchtoken"
APPID = "wxbench0000000001"
AES_KEY = base64.b64encode(b"memberbot-benchmark-aes-key-32by").decode().rstrip("=")
GH = "gh_bench"
BIN = Path(sys.executable).parent
WRK = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)

WEROBOT_APP = f'''
from werobot import WeRoBot
robot = WeRoBot(token={TOKEN!r}, encoding_aes_key={AES_KEY!r}, app_id={APPID!r})
robot.config["SESSION_STORAGE"] = False  # no storage (its default is a SQLite session file)
@robot.text
def echo(message):
    return message.content
app = robot.wsgi
'''

WRK_LUA = '''
local reqs = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^(%S+) (.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
end
request = function()
  n = n + 1
  if n > #reqs then n = 1 end
  return reqs[n]
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise SystemExit(f"{what} did not start:\n{out}") from None
            time.sleep(0.1)


def verify_url(port: int) -> str:
    ts, nonce = str(int(time.time())), "benchverify"
    q = urllib.parse.urlencode({"signature": signature(TOKEN, ts, nonce), "timestamp": ts,
                                "nonce": nonce, "echostr": "up"})
    return f"http://127.0.0.1:{port}/wechat?{q}"


def make_requests(safe: SafeMode, members: int, count: int,
                  group: int = 0) -> list[tuple[str, str]]:
    """``count`` distinct check-in messages (unique MsgId) from ``members`` rotating members
    of member group ``group``."""
    base_id = int(time.time()) * 10**7 + group * 10**6
    out = []
    for i in range(count):
        openid = f"o_bench_{group}_{i % members:06d}"
        xml = callback_xml(GH, openid, "text", content="签到", msg_id=str(base_id + i))
        query, body = signed_query(TOKEN, openid, safe, xml)
        out.append(("/wechat?" + urllib.parse.urlencode(query), body))
    return out


async def warm_up(port: int, safe: SafeMode, members: int, groups: int) -> None:
    """Every member follows first (untimed), as they would have before checking in."""
    ids = iter([(g, i) for g in range(groups) for i in range(members)])
    t0 = int(time.time())
    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            for g, i in ids:
                openid = f"o_bench_{g}_{i:06d}"
                xml = callback_xml(GH, openid, "event", event="subscribe", create_time=t0)
                query, body = signed_query(TOKEN, openid, safe, xml)
                async with http.post(f"http://127.0.0.1:{port}/wechat", params=query,
                                     data=body) as r:
                    if r.status != 200:
                        raise SystemExit(f"warm-up failed: HTTP {r.status}")
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(32)))


async def check_reply(port: int, safe: SafeMode, path: str, body: str, expect: str) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(f"http://127.0.0.1:{port}{path}", data=body) as r:
        raw = await r.text()
    content = re.search(r"<Content><!\[CDATA\[(.*?)\]\]>", safe.open_envelope(raw), re.S)
    if r.status != 200 or not content or expect not in content.group(1):
        raise SystemExit(f"unexpected reply on port {port}: {r.status} {content}")


def parse_ms(s: str) -> float:
    num, unit = re.match(r"([\d.]+)(\w+)", s).groups()
    return float(num) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, reqfile: Path, script: Path, seconds: int, conns: int) -> dict:
    out = subprocess.run([WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                          str(script), f"http://127.0.0.1:{port}", "--", str(reqfile)],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": parse_ms(lat["50"]), "p99": parse_ms(lat["99"]),
            "requests": total, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else ""}


async def run_aiohttp(port: int, reqs: list[tuple[str, str]], seconds: int,
                      conns: int) -> dict:
    lat: list[float] = []
    bad = 0
    it = itertools.cycle(reqs)
    conn = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=conn) as http:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal bad
            while time.perf_counter() < end:
                path, body = next(it)
                t = time.perf_counter()
                async with http.post(f"http://127.0.0.1:{port}{path}", data=body) as r:
                    await r.read()
                    bad += r.status != 200
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[int(len(lat) * 0.99)] * 1000, "requests": len(lat), "non2xx": bad,
            "socket_errors": ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=80_000,
                    help="distinct messages prepared per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tool", choices=["wrk", "aiohttp"], default="wrk" if WRK else "aiohttp")
    args = ap.parse_args()
    safe = SafeMode(TOKEN, AES_KEY, APPID)
    tmp = Path(tempfile.mkdtemp(prefix="memberbot-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
        env.update(MEMBERBOT_DATA_DIR=str(tmp / "data"), WECHAT_TOKEN=TOKEN,
                   WECHAT_AES_KEY=AES_KEY, WECHAT_APPID=APPID, MEMBERBOT_LOG="WARNING")
        pa, pb = free_port(), free_port()
        procs.append(subprocess.Popen(
            [str(BIN / "memberbot"), "serve", "--port", str(pa), "--no-scheduler"], cwd=tmp,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        (tmp / "werobot_echo.py").write_text(WEROBOT_APP)
        if (BIN / "gunicorn").exists():
            baseline = "WeRoBot safe mode, gunicorn 2 sync workers, no storage"
            cmd = [str(BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{pb}",
                   "--log-level", "warning", "--chdir", str(tmp), "werobot_echo:app"]
        else:
            baseline = "WeRoBot safe mode, WeRoBot's own server (no gunicorn), no storage"
            cmd = [sys.executable, "-c", f"import werobot_echo as m; m.robot.run("
                   f"host='127.0.0.1', port={pb}, enable_pretty_logging=False)"]
        procs.append(subprocess.Popen(cmd, cwd=tmp, env={**env, "PYTHONPATH": str(tmp)},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        wait_up(f"http://127.0.0.1:{pa}/healthz", procs[0], "memberbot serve")
        wait_up(verify_url(pb), procs[1], "WeRoBot")
        t = time.perf_counter()
        asyncio.run(warm_up(pa, safe, args.members, args.rounds))
        print(f"warm-up: {args.rounds} x {args.members} members followed in "
              f"{time.perf_counter() - t:.1f}s", file=sys.stderr)
        script = tmp / "rotate.lua"
        script.write_text(WRK_LUA)
        rounds = []
        for r in range(args.rounds):
            # fresh members each round: a round never meets the rate-limit window of the last
            reqs = make_requests(safe, args.members, args.requests, group=r)
            asyncio.run(check_reply(pa, safe, *reqs[-1], "签到成功"))
            asyncio.run(check_reply(pb, safe, *reqs[-1], "签到"))
            reqfile = tmp / f"requests{r}.txt"
            reqfile.write_text("".join(f"{p} {b}\n" for p, b in reqs[:-1]))
            order = (("memberbot", pa), ("werobot", pb))
            results = {}
            for name, port in order if r % 2 == 0 else order[::-1]:  # alternate: no drift
                if args.tool == "wrk":
                    results[name] = run_wrk(port, reqfile, script, args.seconds,
                                            args.connections)
                else:
                    results[name] = asyncio.run(run_aiohttp(port, reqs[:-1], args.seconds,
                                                            args.connections))
            rounds.append(results)
        report(rounds, args, baseline)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
            if p.stdout:
                p.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(rounds: list[dict], args: argparse.Namespace, baseline: str) -> None:
    tool = f"wrk -t1 -c{args.connections} -d{args.seconds}s" if args.tool == "wrk" else \
        f"aiohttp load generator, {args.connections} connections, {args.seconds}s"
    print(f"load: {tool}; encrypted 签到 from {args.members} rotating members (fresh ones "
          f"each round); {len(rounds)} rounds, order alternating; {os.cpu_count()} CPUs")
    print("(a) memberbot serve, 1 process, SQLite: verify, decrypt, dedup, rate limit, "
          f"check-in use case, reply, encrypt\n(b) {baseline}")
    print(f"{'round':<6} {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'requests':>9} {'non-2xx':>8}")
    for i, results in enumerate(rounds, 1):
        for name in ("memberbot", "werobot"):
            r = results[name]
            print(f"{i:<6} {name:<10} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['requests']:>9} {r['non2xx']:>8}"
                  + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""))
    med = {name: {k: statistics.median(r[name][k] for r in rounds)
                  for k in ("rps", "p50", "p99", "requests")}
           for name in ("memberbot", "werobot")}
    for name, r in med.items():
        print(f"{'median':<6} {name:<10} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    a, b = med["memberbot"], med["werobot"]
    ratio = a["rps"] / b["rps"] if b["rps"] else float("inf")
    print(f"ratio a/b (medians): {ratio:.2f} (target >= 1.0: "
          f"{'met' if ratio >= 1.0 else 'NOT met'}); memberbot p99 {a['p99']:.1f} ms "
          f"(target <= 20 ms: {'met' if a['p99'] <= 20 else 'NOT met'})")
    # the limit's window is a minute: what one member sent within it
    per_member = a["requests"] / args.members / max(args.seconds / 60, 1.0)
    if per_member > 20:
        print(f"note: {per_member:.0f} messages per member per minute exceed the default rate "
              "limit (20/min): later ones got the polite 'too frequent' reply; raise --members")


if __name__ == "__main__":
    main()
