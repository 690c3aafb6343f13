"""What the OA benchmarks share (not a test): the servers, the members seeded before a run,
signed requests, wrk and a fixed-rate load generator, and what the server's process spent
(CPU from /proc/<pid>/stat, bytes from /proc/<pid>/io) while it answered.

Only 127.0.0.1; every process started here is stopped by :class:`Servers`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
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
TICK = os.sysconf("SC_CLK_TCK")

WEROBOT_APP = f'''
from werobot import WeRoBot
robot = WeRoBot(token={TOKEN!r}, encoding_aes_key={AES_KEY!r}, app_id={APPID!r})
robot.config["SESSION_STORAGE"] = False  # no storage (its default is a SQLite session file)
@robot.text
def echo(message):
    return message.content
app = robot.wsgi
'''

# Each request of the file once, in order; when the list is spent the thread stops (the spare
# requests at its end cover the connections that asked for one more before it stopped), so no
# member is sent the same check-in twice.
WRK_LUA = '''
local reqs = {}
local n = 0
local last = 0
init = function(args)
  last = tonumber(args[2])
  for line in io.lines(args[1]) do
    local path, body = line:match("^(%S+) (.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
end
request = function()
  n = n + 1
  if last == 0 then  -- a server that keeps nothing: the same requests again, for the whole run
    if n > #reqs then n = 1 end
    return reqs[n]
  end
  if n >= last then wrk.thread:stop() end
  if n > #reqs then n = #reqs end
  return reqs[n]
end
'''


FLOOR_PATCH = """
import bot.handlers.oa as oa


async def answer(self, msg):
    return "签到成功！+10 积分，已连续签到 1 天"


oa.OfficialAccount.answer = answer
"""


def openid(group: str, i: int) -> str:
    return f"o_bench_{group}_{i:07d}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verify_url(port: int) -> str:
    ts, nonce = str(int(time.time())), "benchverify"
    q = urllib.parse.urlencode({"signature": signature(TOKEN, ts, nonce), "timestamp": ts,
                                "nonce": nonce, "echostr": "up"})
    return f"http://127.0.0.1:{port}/wechat?{q}"


def wait_up(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> float:
    """Seconds until ``url`` answers 200."""
    t0 = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{what} did not start (exit {proc.poll()})")
        time.sleep(0.005)


# -- what a process spent -------------------------------------------------------------------
def pids(root: int) -> list[int]:
    """``root`` and its children (gunicorn's workers)."""
    out = [root]
    try:
        for t in os.listdir(f"/proc/{root}/task"):
            kids = Path(f"/proc/{root}/task/{t}/children").read_text().split()
            out += [int(k) for k in kids]
    except OSError:
        pass
    return out


def usage(root: int) -> dict[str, float]:
    """CPU seconds and bytes written (to disk, and by write calls) of ``root`` and children."""
    cpu = disk = wchar = 0.0
    for p in pids(root):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / TICK
            io = dict(line.split(": ") for line in Path(f"/proc/{p}/io").read_text().splitlines())
            disk += int(io["write_bytes"])
            wchar += int(io["wchar"])
        except (OSError, IndexError, KeyError):
            pass
    return {"cpu": cpu, "disk": disk, "wchar": wchar}


def rss_mb(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1)) / 1024  # noqa: E731
    return get("VmRSS"), get("VmHWM")


# -- servers --------------------------------------------------------------------------------
class Servers:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
        self.env.update(MEMBERBOT_DATA_DIR=str(tmp / "data"), WECHAT_TOKEN=TOKEN,
                        WECHAT_AES_KEY=AES_KEY, WECHAT_APPID=APPID, MEMBERBOT_LOG="WARNING",
                        MEMBERBOT_STORE=f"sqlite:///{tmp / 'data' / 'memberbot.db'}")

    def settings(self):  # noqa: ANN201 - the bot's Settings, as `serve` will load them
        from bot.settings import Settings
        return Settings.load(self.env, cwd=self.tmp)

    def memberbot(self, *args: str, env: dict[str, str] | None = None
                  ) -> tuple[subprocess.Popen, int, float]:
        """``memberbot serve`` on a free port: (process, port, seconds to a 200 /healthz)."""
        port = free_port()
        p = subprocess.Popen([str(BIN / "memberbot"), "serve", "--port", str(port),
                              "--no-scheduler", *args], cwd=self.tmp,
                             env={**self.env, **(env or {})},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p, port, wait_up(f"http://127.0.0.1:{port}/healthz", p, "memberbot serve")

    def floor(self) -> tuple[subprocess.Popen, int]:
        """``memberbot serve`` with the member's answer replaced by a fixed reply (through a
        ``sitecustomize`` in its own folder, on its own empty store): what the callback costs
        before any member logic (HTTP, signatures, nonce, crypto, XML, reply)."""
        home = self.tmp / "floor"
        home.mkdir(exist_ok=True)
        (home / "sitecustomize.py").write_text(FLOOR_PATCH)
        p, port, _ = self.memberbot(env={
            "PYTHONPATH": str(home), "MEMBERBOT_DATA_DIR": str(home / "data"),
            "MEMBERBOT_STORE": f"sqlite:///{home / 'data' / 'memberbot.db'}"})
        return p, port

    def werobot(self) -> tuple[subprocess.Popen, int, str]:
        port = free_port()
        (self.tmp / "werobot_echo.py").write_text(WEROBOT_APP)
        if (BIN / "gunicorn").exists():
            what = "WeRoBot safe mode, gunicorn 2 sync workers, no storage"
            cmd = [str(BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
                   "--log-level", "warning", "--chdir", str(self.tmp), "werobot_echo:app"]
        else:
            what = "WeRoBot safe mode, WeRoBot's own server (no gunicorn), no storage"
            cmd = [sys.executable, "-c", f"import werobot_echo as m; m.robot.run("
                   f"host='127.0.0.1', port={port}, enable_pretty_logging=False)"]
        p = subprocess.Popen(cmd, cwd=self.tmp, env={**self.env, "PYTHONPATH": str(self.tmp)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_up(verify_url(port), p, "WeRoBot")
        time.sleep(0.5)  # both workers up
        return p, port, what

    def stop(self, p: subprocess.Popen) -> None:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def close(self) -> None:
        for p in list(self.procs):
            self.stop(p)


# -- members and requests -------------------------------------------------------------------
async def seed(settings, n: int) -> float:  # noqa: ANN001
    """``n`` registered members (openids ``openid("m", i)``) through the store, each in one
    update that claims its openid, member code and invite code (as a registration does).
    Returns the seconds it took."""
    from bot import keys
    from bot.jobs.registry import load_rules
    from bot.members import Members
    from bot.rules.models import Entry, Member
    from bot.rules.timeutil import ts
    from storage import open_store

    rules = load_rules(settings)
    now = datetime.now(rules.tz)
    store = open_store(settings.store_url, settings.data_key)
    await store.open()
    members = Members(store, rules)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        mid, oid, code = f"b{i:07d}", openid("m", i), str(300000000000 + i)
        invite = f"B{i:07d}"

        def step(_m: Member | None):  # noqa: ANN202
            m = Member(id=mid, member_code=code, openid=oid, joined_at=ts(now),
                       last_activity=ts(now), invite_code=invite, tier=rules.tiers[0].key)
            change = members._finish(m, now, {}, [Entry("join", ts(now),
                                                         ref=keys.register(oid))], [])
            change.claims = [("openid", oid), ("member_code", code), ("invite_code", invite)]
            return change

        await store.update(mid, step)

    try:
        for start in range(0, n, 2000):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 2000, n))))
    finally:
        await store.close()
    return time.perf_counter() - t0


def ledger_count(db: Path, kind: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
        return c.execute("SELECT COUNT(*) FROM ledger WHERE kind=?", (kind,)).fetchone()[0]


def member_count(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
        return c.execute("SELECT COUNT(*) FROM members").fetchone()[0]


def requests(safe: SafeMode, ids: list[str], content: str) -> list[tuple[str, str]]:
    """One encrypted text message from each of ``ids``, in order."""
    base = time.time_ns() // 1000
    out = []
    for i, oid in enumerate(ids):
        xml = callback_xml(GH, oid, "text", content=content, msg_id=str(base + i))
        query, body = signed_query(TOKEN, oid, safe, xml)
        out.append(("/wechat?" + urllib.parse.urlencode(query), body))
    return out


def reply_text(safe: SafeMode, raw: str) -> str:
    if not raw.startswith("<"):
        return raw  # "success": no reply (or a late one)
    m = re.search(r"<Content><!\[CDATA\[(.*?)\]\]>", safe.open_envelope(raw), re.S)
    return m.group(1) if m else ""


async def ask(safe: SafeMode, port: int, path: str, body: str) -> str:
    async with aiohttp.ClientSession() as http, \
            http.post(f"http://127.0.0.1:{port}{path}", data=body) as r:
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status} from port {port}")
        return reply_text(safe, await r.text())


# -- load -------------------------------------------------------------------------------------
def parse_ms(s: str) -> float:
    num, unit = re.match(r"([\d.]+)(\w+)", s).groups()
    return float(num) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(pid: int, port: int, reqs: list[tuple[str, str]], tmp: Path, seconds: int,
            conns: int, *, repeat: bool = False) -> dict:
    """wrk sends each of ``reqs`` at most once (``conns`` of them are spares), for at most
    ``seconds``; with the server's CPU and bytes written over the run. ``repeat``: over and
    over for the whole run (a server that keeps nothing). ``spent``: the run stopped because
    the requests ran out; wrk still divides by the whole duration, so its req/s is then only
    a lower bound."""
    script, reqfile = tmp / "once.lua", tmp / "requests.txt"
    script.write_text(WRK_LUA)
    reqfile.write_text("".join(f"{p} {b}\n" for p, b in reqs))
    before = usage(pid)
    out = subprocess.run([WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                          str(script), f"http://127.0.0.1:{port}", "--", str(reqfile),
                          "0" if repeat else str(len(reqs) - conns)],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    after = usage(pid)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": parse_ms(lat["50"]), "p99": parse_ms(lat["99"]), "requests": total,
            "spent": not repeat and total >= len(reqs) - conns - 1,
            "errors": (int(errors.group(1)) if errors else 0), "socket_errors":
            sock.group(1) if sock else "", **spent(before, after, total)}


def spent(before: dict, after: dict, n: int) -> dict:
    n = max(n, 1)
    return {"cpu_us": (after["cpu"] - before["cpu"]) * 1e6 / n,
            "disk_kb": (after["disk"] - before["disk"]) / 1024 / n,
            "wchar_kb": (after["wchar"] - before["wchar"]) / 1024 / n}


async def fixed_rate(safe: SafeMode, pid: int, port: int, reqs: list[tuple[str, str]],
                     rate: float, expect: str) -> dict:
    """Send ``reqs`` at ``rate`` per second on schedule (open loop: latency counts from the
    moment a request was due, so a stalled server is not hidden); each reply is decrypted and
    an error unless it contains ``expect``."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    conn = aiohttp.TCPConnector(limit=0)
    bodies: list[str] = []

    async def one(due: float, path: str, body: str) -> None:
        try:
            async with http.post(f"http://127.0.0.1:{port}{path}", data=body) as r:
                raw = await r.text()
                lat.append(time.perf_counter() - due)
                if r.status != 200:
                    errors[f"HTTP {r.status}"] = errors.get(f"HTTP {r.status}", 0) + 1
                else:
                    bodies.append(raw)
        except (aiohttp.ClientError, OSError) as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    before = usage(pid)
    async with aiohttp.ClientSession(connector=conn) as http:
        t0 = time.perf_counter()
        tasks = []
        for i, (path, body) in enumerate(reqs):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, path, body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    after = usage(pid)
    wrong = sum(expect not in reply_text(safe, b) for b in bodies)
    if wrong:
        errors[f"reply without {expect}"] = wrong
    lat.sort()
    return {"rps": len(lat) / elapsed, "seconds": elapsed, "requests": len(lat),
            "p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99)] * 1000,
            "max": lat[-1] * 1000, "errors": errors, **spent(before, after, len(reqs))}
