"""Configuration from the environment (and a ``.env`` file), with local secrets generated once.

``make run`` needs no configuration: a missing data key, WeChat token or API secret is
generated into ``./data/secrets.env`` with a warning. With ``MEMBERBOT_ENV=production`` a
missing secret stops the start instead.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .rules.config import Rules, RulesError, load_rules

GENERATED = {
    "MEMBERBOT_DATA_KEY": lambda: base64.b64encode(os.urandom(32)).decode(),
    "WECHAT_TOKEN": lambda: secrets.token_urlsafe(16),
    "MEMBERBOT_API_SECRET": lambda: secrets.token_urlsafe(32),
}
SECRETS_FILE = "secrets.env"


class SettingsError(Exception):
    """A configuration problem, reported to the operator in one line."""


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, blank lines and optional quotes are allowed."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:]
        k, sep, v = line.partition("=")
        if not sep or not k.strip():
            raise SettingsError(f"{path}:{n}: expected KEY=VALUE")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


@dataclass
class Settings:
    env: str = "development"
    data_dir: Path = Path("data")
    store_url: str = "sqlite:///./data/memberbot.db"
    rules_path: str | None = None
    tz: str = "Asia/Shanghai"
    api_secret: str | None = None
    data_key: str = ""
    wechat_appid: str = ""
    wechat_appsecret: str = ""
    wechat_token: str = ""
    wechat_aes_key: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_template_id: str = ""
    wecom_corp_id: str = ""
    wecom_secret: str = ""
    wecom_agent_id: str = ""
    wecom_token: str = ""
    wecom_aes_key: str = ""
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    admin_password: str = ""
    wecom_agent_secret: str = ""
    public_url: str = ""
    join_url: str = ""
    sidebar_admins: tuple[str, ...] = ()
    sidebar_preview: bool = False
    templates: str | None = None  # a folder of template overrides, searched first
    log_level: str = "INFO"
    outbox_lease: float = 60.0  # seconds a batch in flight is presumed alive
    webhooks: str = ""  # MEMBERBOT_WEBHOOKS: JSON list of {url, secret, events}
    # hardening (PRODUCT.md 9): deadlines, replay window, who may see what
    read_timeout: float = 10.0
    max_pending_bodies: int = 100
    callback_window: int = 300
    trusted_proxies: str = ""
    metrics_token: str = ""
    metrics_networks: str = ""
    generated: list[str] = field(default_factory=list)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None,
             generate: bool = True) -> Settings:
        """Environment over ``.env`` over ``data/secrets.env``; generate what is missing."""
        cwd = cwd or Path.cwd()
        env = dict(os.environ if environ is None else environ)
        dotenv = read_env_file(cwd / ".env")
        merged = {**dotenv, **env}
        data_dir = Path(merged.get("MEMBERBOT_DATA_DIR", str(cwd / "data")))
        production = merged.get("MEMBERBOT_ENV", "development") == "production"
        secrets_path = data_dir / SECRETS_FILE
        if not production:
            merged = {**read_env_file(secrets_path), **merged}
        missing = [k for k in GENERATED if not merged.get(k)]
        if missing and production:
            raise SettingsError(f"{missing[0]} is not set: MEMBERBOT_ENV=production needs every "
                                f"secret configured ({', '.join(missing)} missing)")
        if production and merged.get("MEMBERBOT_SIDEBAR_PREVIEW", "") == "1":
            raise SettingsError("MEMBERBOT_SIDEBAR_PREVIEW=1 is refused with "
                                "MEMBERBOT_ENV=production: preview mode skips the WeCom login")
        generated: list[str] = []
        if missing and generate:
            new = {k: GENERATED[k]() for k in missing}
            _append_secrets(secrets_path, new)
            merged.update(new)
            generated = missing
        g = merged.get
        return cls(
            env="production" if production else "development",
            data_dir=data_dir,
            store_url=g("MEMBERBOT_STORE") or f"sqlite:///{_rel(data_dir / 'memberbot.db', cwd)}",
            rules_path=g("MEMBERBOT_RULES") or None,
            tz=g("MEMBERBOT_TZ") or "Asia/Shanghai",
            api_secret=g("MEMBERBOT_API_SECRET") or None,
            data_key=g("MEMBERBOT_DATA_KEY", ""),
            wechat_appid=g("WECHAT_APPID", ""),
            wechat_appsecret=g("WECHAT_APPSECRET", ""),
            wechat_token=g("WECHAT_TOKEN", ""),
            wechat_aes_key=g("WECHAT_AES_KEY", ""),
            wechat_api_base=(g("WECHAT_API_BASE") or "https://api.weixin.qq.com").rstrip("/"),
            wechat_template_id=g("WECHAT_TEMPLATE_ID", ""),
            wecom_corp_id=g("WECOM_CORP_ID", ""),
            wecom_secret=g("WECOM_SECRET", ""),
            wecom_agent_id=g("WECOM_AGENT_ID", ""),
            wecom_token=g("WECOM_TOKEN", ""),
            wecom_aes_key=g("WECOM_AES_KEY", ""),
            wecom_api_base=(g("WECOM_API_BASE") or "https://qyapi.weixin.qq.com").rstrip("/"),
            admin_password=g("MEMBERBOT_ADMIN_PASSWORD", ""),
            wecom_agent_secret=g("WECOM_AGENT_SECRET", ""),
            public_url=(g("MEMBERBOT_PUBLIC_URL") or "").rstrip("/"),
            join_url=g("MEMBERBOT_JOIN_URL", ""),
            sidebar_admins=tuple(u.strip() for u in g("MEMBERBOT_SIDEBAR_ADMINS", "")
                                 .replace("，", ",").split(",") if u.strip()),
            sidebar_preview=(g("MEMBERBOT_SIDEBAR_PREVIEW", "") == "1" and not production),
            templates=_folder(g("MEMBERBOT_TEMPLATES") or None, cwd),
            log_level=(g("MEMBERBOT_LOG") or "INFO").upper(),
            outbox_lease=_number("MEMBERBOT_OUTBOX_LEASE", g("MEMBERBOT_OUTBOX_LEASE") or "60"),
            webhooks=g("MEMBERBOT_WEBHOOKS", ""),
            read_timeout=_number("MEMBERBOT_READ_TIMEOUT", g("MEMBERBOT_READ_TIMEOUT") or "10"),
            max_pending_bodies=int(_number("MEMBERBOT_MAX_PENDING_BODIES",
                                           g("MEMBERBOT_MAX_PENDING_BODIES") or "100")),
            callback_window=int(_number("MEMBERBOT_CALLBACK_WINDOW",
                                        g("MEMBERBOT_CALLBACK_WINDOW") or "300")),
            trusted_proxies=g("MEMBERBOT_TRUSTED_PROXIES", ""),
            metrics_token=g("MEMBERBOT_METRICS_TOKEN", ""),
            metrics_networks=g("MEMBERBOT_METRICS_NETWORKS", ""),
            generated=generated,
        )

    def loaded(self, accounts: int = 0) -> str:
        """What this process runs with, for the start-up line: rules file, templates, store
        (without credentials) and how /admin is entered (``accounts``: how many exist)."""
        rules = self.rules_path or "built-in defaults"
        templates = f"{self.templates} over built-in" if self.templates else "built-in"
        n = f"{accounts} account{'s' if accounts != 1 else ''}"
        if self.admin_password:
            admin = "admin: password login (MEMBERBOT_ADMIN_PASSWORD)" + (
                f" and {n}" if accounts else "")
        elif accounts:
            admin = f"admin: {n} (no bootstrap password)"
        else:
            admin = "admin: off (set MEMBERBOT_ADMIN_PASSWORD or memberbot admin add-user)"
        return (f"rules: {rules}; templates: {templates}; store: {public_url(self.store_url)}; "
                f"{admin}")

    def warn_generated(self) -> None:
        if self.generated:
            print(f"warning: generated {', '.join(self.generated)} into "
                  f"{self.data_dir / SECRETS_FILE} for local use only; set them in the "
                  "environment for production (MEMBERBOT_ENV=production refuses to start "
                  "without them)", file=sys.stderr)


def public_url(url: str) -> str:
    """A store URL without its user name and password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _folder(value: str | None, cwd: Path) -> str | None:
    """``MEMBERBOT_TEMPLATES``: a folder that exists (relative to the working directory)."""
    if value is None:
        return None
    path = Path(value) if Path(value).is_absolute() else cwd / value
    if not path.is_dir():
        raise SettingsError(f"MEMBERBOT_TEMPLATES: {value} is not a folder")
    return str(path)


def _number(name: str, value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        n = -1.0
    if n <= 0:
        raise SettingsError(f"{name}: {value!r} is not a positive number")
    return n


def _rel(p: Path, cwd: Path) -> str:
    try:
        return "./" + str(p.relative_to(cwd))
    except ValueError:
        return "/" + str(p).lstrip("/")


def _append_secrets(path: Path, values: dict[str, str]) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write("# generated by memberbot for local use; do not use in production\n")
            for k, v in values.items():
                f.write(f"{k}={v}\n")
    except OSError as e:
        raise SettingsError(f"cannot write {path} ({e.strerror}): make the data folder "
                            "writable or set the secrets in the environment") from e


def rules_for(settings: Settings) -> Rules:
    """The rules file of ``settings``, with ``MEMBERBOT_TZ`` as the calendar zone when set."""
    rules = load_rules(settings.rules_path)
    env_tz = settings.tz
    if env_tz and env_tz != getattr(rules.tz, "key", None):
        try:
            rules = dataclasses.replace(rules, tz=ZoneInfo(env_tz))
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise RulesError(f"MEMBERBOT_TZ: unknown time zone {env_tz!r}") from e
    return rules
