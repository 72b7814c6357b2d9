"""Configuration: ``config.toml`` + environment + ``.env``, resolved once into a frozen ``Config``.

Precedence, highest first: CLI overrides > environment > ``.env`` > file > defaults. The file
holds no secrets; secrets come only from the environment or ``.env``. Every problem is one
``ConfigError`` line naming the key and the file.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import string
import tomllib
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin, get_type_hints

from dotenv import dotenv_values

from .errors import ConfigError
from .notify.registry import NAMES as GATEWAY_NAMES
from .notify.registry import capabilities as gateway_caps
from .panels.registry import KINDS, capabilities

if TYPE_CHECKING:
    from .panels.base import Capabilities

DEFAULT_CONFIG = "config.toml"


class _Record:
    """What ``@dataclass(frozen=True)`` gives a config class (keyword ``__init__`` with the
    defaults, ``repr``, value equality and hash, no assignment after it), written once here.
    ``dataclass`` generates those methods for each class by compiling source, ~1 ms a class,
    and every command reads the config: the classes are declared ``@dataclass(init=False,
    repr=False, eq=False)``, so ``fields()`` still describes them and nothing is compiled."""

    __slots__ = ()

    def __init__(self, **values: Any) -> None:
        for f in fields(self):
            if f.name in values:
                value = values.pop(f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {f.name!r}")
            object.__setattr__(self, f.name, value)
        if values:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {', '.join(values)}")

    def _values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __eq__(self, other: object) -> bool:
        return self._values() == other._values() if type(other) is type(self) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in fields(self))})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def setting(default: Any, *, key: str | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A config field: its default, its TOML key when that is not a Python name, its choices."""
    return field(default=default, metadata={"key": key, "choices": choices})


@dataclass(init=False, repr=False, eq=False)
class LedgerSection(_Record):
    path: str = "iptvsync.db"


@dataclass(init=False, repr=False, eq=False)
class ReceiverSection(_Record):
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/monetizze/postback"
    certfile: str = ""
    keyfile: str = ""
    max_body_bytes: int = 262144
    allowed_ips: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    request_timeout_s: int = 10
    threads: int = 64
    max_threads: int = 512
    header_timeout_s: int = 10
    max_connections_per_ip: int = 64
    ledger_timeout_s: int = 10


@dataclass(init=False, repr=False, eq=False)
class MonetizzeSection(_Record):
    api_url: str = "https://api.monetizze.com.br/2.1"
    check_product_key: bool = False


@dataclass(init=False, repr=False, eq=False)
class PolicySection(_Record):
    on_subscription_cancelled: str = setting("end_of_period", choices=("end_of_period", "immediately"))
    on_dispute: str = setting("suspend", choices=("suspend", "ignore"))
    grace_days: int = 3
    reminder_days: tuple[int, ...] = (3,)
    max_attempts: int = 8


@dataclass(init=False, repr=False, eq=False)
class EmailSection(_Record):
    backend: str = setting("maildir", choices=("maildir", "smtp"))
    maildir: str = "mail/"
    from_addr: str = setting("IPTV <no-reply@example.com>", key="from")
    reply_to: str = ""
    support: str = ""
    language: str = setting("pt-BR", choices=("pt-BR", "en"))  # the shipped templates' languages
    templates_dir: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = setting("starttls", choices=("starttls", "tls", "none"))
    smtp_cafile: str = ""
    timeout_s: int = 20


#: the channels a buyer message may go out on (``channels``, globally and per product)
CHANNELS = ("email", "whatsapp")
#: the message kinds (``mail/render.KINDS``; config sits below mail, so spelled here too, a test checks)
MESSAGE_KINDS = ("activation", "renewal", "cancellation", "access_ended", "refund", "payment_failed", "reminder",
                 "expired", "resumed")


@dataclass(init=False, repr=False, eq=False)
class WhatsAppSection(_Record):
    gateway: str = setting("", choices=("", *GATEWAY_NAMES))  # "": WhatsApp is off
    url: str = ""
    instance: str = ""
    phone_number_id: str = ""
    channels: tuple[str, ...] = ("email",)
    language: str = setting("pt-BR", choices=("pt-BR", "en"))
    templates_dir: str = ""
    template_language: str = "pt_BR"  # the Cloud API templates' language code
    default_region: str = "BR"  # numbers typed without a country code
    timeout_s: int = 15
    per_minute: int = 20  # sends per minute at most, per gateway (bursts get numbers banned)
    jitter_ms: int = 1500  # a random pause up to this much between two sends
    unknown_resends: int = 0  # sends again of a message whose outcome is unknown (docs/whatsapp.md)


@dataclass(init=False, repr=False, eq=False)
class StatusSection(_Record):
    max_wait: str = "10m"  # a paid buyer waiting longer than this for line or email makes `status` fail
    receiver_url: str = ""  # where `status` probes /healthz (default: [receiver] host, port, TLS)


@dataclass(init=False, repr=False, eq=False)
class AdminSection(_Record):
    """The admin console (``iptvsync admin serve``), a process of its own."""
    host: str = "127.0.0.1"
    port: int = 8081
    public_origin: str = ""          # e.g. "https://admin.loja.com.br" behind a TLS proxy
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For names the client
    require_totp: bool = False       # owners must log in with a TOTP code
    threads: int = 32


#: the plain sections, by TOML name
SECTIONS: dict[str, type] = {"ledger": LedgerSection, "receiver": ReceiverSection, "monetizze": MonetizzeSection,
                             "policy": PolicySection, "email": EmailSection, "whatsapp": WhatsAppSection,
                             "status": StatusSection, "admin": AdminSection}


def _schema_of(cls: type) -> dict[str, tuple[Any, Any]]:
    """TOML key -> (type, default) of one section class; tuple fields read as lists."""
    hints = get_type_hints(cls)
    out = {}
    for f in fields(cls):
        hint = hints[f.name]
        typ = (list, get_args(hint)[0]) if get_origin(hint) is tuple else hint
        out[f.metadata.get("key") or f.name] = (typ, list(f.default) if isinstance(f.default, tuple) else f.default)
    return out


def _build(cls: type, values: dict[str, Any]):
    kwargs = {}
    for f in fields(cls):
        value = values[f.metadata.get("key") or f.name]
        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


# section -> key -> (type, default). ``list`` entries hold their item type as a tuple.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {name: _schema_of(cls) for name, cls in SECTIONS.items()}
CHOICES = {(name, f.metadata.get("key") or f.name): f.metadata["choices"]
           for name, cls in SECTIONS.items() for f in fields(cls) if f.metadata.get("choices")}
PANEL_SCHEMA: dict[str, tuple[Any, Any]] = {
    "kind": (str, None),
    "url": (str, ""),
    "max_concurrency": (int, 4),
    "timeout_s": (int, 15),
    "outputs": ((list, str), []),
    "low_credits": (int, 0),
}
#: stream formats a line may be given (``outputs``): the panels' access_output keys
OUTPUT_NAMES = ("m3u8", "ts", "rtmp")
_PERIOD = re.compile(r"\s*(\d+)\s*(days?|months?)\s*", re.IGNORECASE)
LINKS_SCHEMA: dict[str, tuple[Any, Any]] = {
    "server": (str, "http://tv.example.com:8080"),
    "m3u": (str, "{server}/get.php?username={username}&password={password}&type=m3u_plus&output=ts"),
    "epg": (str, "{server}/xmltv.php?username={username}&password={password}"),
}
PRODUCT_SCHEMA: dict[str, tuple[Any, Any]] = {
    "name": (str, ""),
    "panel": (str, None),
    "days": (int, 0),
    "max_connections": (int, 1),
    "bouquets": ((list, int), []),
    "package": (int, 0),
    "key": (str, ""),
    "period": (str, ""),
    "outputs": ((list, str), []),
    "channels": ((list, str), []),
}
PLAN_SCHEMA = {k: PRODUCT_SCHEMA[k] for k in ("days", "period", "max_connections", "bouquets", "package")}


@dataclass(init=False, repr=False, eq=False)
class Links(_Record):
    server: str
    m3u: str
    epg: str


@dataclass(init=False, repr=False, eq=False)
class PanelConfig(_Record):
    name: str
    kind: str
    url: str
    max_concurrency: int
    timeout_s: int
    links: Links
    caps: Capabilities  # what the family can do, from the panel registry
    outputs: tuple[str, ...] = ()  # stream formats new lines get; () = all the panel offers
    low_credits: int = 0  # reseller credits at or below this: the Painel and doctor warn


@dataclass(init=False, repr=False, eq=False)
class PlanOverride(_Record):
    days: int | None = None
    months: int | None = None
    max_connections: int | None = None
    bouquets: tuple[int, ...] | None = None
    package: int | None = None


@dataclass(init=False, repr=False, eq=False)
class ProductConfig(_Record):
    code: str
    name: str
    panel: str
    days: int | None
    max_connections: int
    bouquets: tuple[int, ...]
    package: int | None
    key: str
    plans: dict[str, PlanOverride] = field(default_factory=dict)
    months: int | None = None  # period = "N months": paid_until moves in calendar months
    outputs: tuple[str, ...] = ()  # overrides the panel's outputs
    channels: tuple[str, ...] = ()  # overrides [whatsapp] channels


@dataclass(init=False, repr=False, eq=False)
class Secrets(_Record):
    chave_unica: str = ""
    consumer_key: str = ""
    secret_key: str = ""
    #: IPTVSYNC_NEW_SECRET_KEY (a rekey under way) and IPTVSYNC_RETIRED_KEYS (comma-separated, newest
    #: first): tried after secret_key when decrypting, never used to encrypt
    pending_key: str = ""
    retired_keys: tuple[str, ...] = ()
    smtp_username: str = ""
    smtp_password: str = ""
    panel_api_keys: dict[str, str] = field(default_factory=dict)
    whatsapp_token: str = ""
    whatsapp_client_token: str = ""

    def __repr__(self) -> str:  # never print secret values, even by accident
        return "Secrets(<redacted>)"


@dataclass(init=False, repr=False, eq=False)
class Config(_Record):
    path: Path
    env_path: Path
    ledger: LedgerSection
    receiver: ReceiverSection
    monetizze: MonetizzeSection
    policy: PolicySection
    email: EmailSection
    admin: AdminSection
    panels: dict[str, PanelConfig]
    products: dict[str, ProductConfig]
    secrets: Secrets
    whatsapp: WhatsAppSection = field(default_factory=WhatsAppSection)
    #: kind -> the approved Cloud API template's name ([whatsapp.cloud_templates])
    cloud_templates: dict[str, str] = field(default_factory=dict)

    def channels(self, product_code: str | None) -> tuple[str, ...]:
        """The channels a buyer of this product hears on: the product's, else [whatsapp] channels."""
        product = self.products.get(product_code or "")
        return (product.channels if product and product.channels else None) or self.whatsapp.channels
    status: StatusSection = field(default_factory=StatusSection)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        """A path from the config: relative paths are relative to the config file."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def ledger_path(self) -> Path:
        return self.resolve(self.ledger.path)

    def tls_files(self, certfile: str | None = None, keyfile: str | None = None) -> tuple[Path, Path | None] | None:
        """The receiver's certificate and key (``--certfile``/``--keyfile`` over ``[receiver]``),
        checked to exist and to load; None for plain HTTP. One ``ConfigError`` line naming the
        setting otherwise, so `serve`, `status` and `doctor` say the same thing."""
        cert, key = certfile or self.receiver.certfile, keyfile or self.receiver.keyfile
        if not cert and not key:
            return None
        import ssl  # only here: plain HTTP installs (and every `status` of them) never pay its import

        def where(name: str, option: str | None) -> str:
            return f"--{name}" if option else f"{self.path}: [receiver] {name}"

        if not cert:
            raise ConfigError(f"{where('keyfile', keyfile)} is set but [receiver] certfile is empty")
        paths = {"certfile": self.resolve(cert), "keyfile": self.resolve(key) if key else None}
        for name, path in paths.items():
            if path is not None and not path.is_file():
                raise ConfigError(f"{where(name, certfile if name == 'certfile' else keyfile)}: {path} does not exist")
        if paths["keyfile"] is None and b"PRIVATE KEY" not in paths["certfile"].read_bytes():
            key_setting = "--keyfile" if certfile else "[receiver] keyfile"
            raise ConfigError(f"{where('certfile', certfile)}: {paths['certfile']} holds no private key and"
                              f" {key_setting} is not set: give the key file too")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(paths["certfile"]), str(paths["keyfile"]) if paths["keyfile"] else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{where('certfile', certfile)}: {paths['certfile']} and its key do not load as a PEM"
                              f" certificate and private key ({getattr(exc, 'reason', None) or exc})") from None
        return paths["certfile"], paths["keyfile"]

    @property
    def keyring(self) -> tuple[str, ...]:
        """The keys that may open a stored password, in the order they are tried."""
        s = self.secrets
        return tuple(dict.fromkeys(k for k in (s.secret_key, s.pending_key, *s.retired_keys) if k))

    def require(self, env_name: str) -> str:
        """A secret that this command cannot run without."""
        value = {
            "MONETIZZE_CHAVE_UNICA": self.secrets.chave_unica,
            "MONETIZZE_CONSUMER_KEY": self.secrets.consumer_key,
            "IPTVSYNC_SECRET_KEY": self.secrets.secret_key,
            "SMTP_USERNAME": self.secrets.smtp_username,
            "SMTP_PASSWORD": self.secrets.smtp_password,
            "WHATSAPP_TOKEN": self.secrets.whatsapp_token,
            "WHATSAPP_CLIENT_TOKEN": self.secrets.whatsapp_client_token,
            **{_panel_env_name(n): v for n, v in self.secrets.panel_api_keys.items()},
        }.get(env_name, "")
        if not value:
            raise ConfigError(f"{self.env_path}: {env_name} is not set (environment or .env)")
        return value


def _panel_env_name(panel: str) -> str:
    return f"PANEL_{panel.upper().replace('-', '_')}_API_KEY"


def _check(value: Any, typ: Any, where: str, file: Path) -> Any:
    if isinstance(typ, tuple):
        item_type = typ[1]
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {where} must be a list of {item_type.__name__}")
        return [_check(v, item_type, where + "[]", file) for v in value]
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{file}: {where} must be an integer, got {value!r}")
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{file}: {where} must be true or false, got {value!r}")
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{file}: {where} must be a string, got {value!r}")
    return value


def _from_text(text: str, typ: Any, where: str, source: str) -> Any:
    """An environment or CLI value, typed like the file key it overrides."""
    try:
        if typ is int:
            return int(text)
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(typ, tuple):
            return [_from_text(t.strip(), typ[1], where, source) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{source}: {where} has an invalid value {text!r}") from None
    return text


def _section(raw: dict, schema: dict, where: str, file: Path, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: [{where}] must be a table")
    for key in raw:
        if key not in schema:
            raise ConfigError(f"{file}: unknown key '{key}' in [{where}]")
    out = {}
    for key, (typ, default) in schema.items():
        if key in raw:
            out[key] = _check(raw[key], typ, f"[{where}] {key}", file)
        elif key in required or default is None:
            raise ConfigError(f"{file}: missing required key '{key}' in [{where}]")
        else:
            out[key] = list(default) if isinstance(default, list) else default
    return out


#: "addr@host" or "Name <addr@host>" with a plain name: forms whose address ``parseaddr``
#: reads as written; ``has_address`` answers those without importing email.utils (~6 ms of
#: every command, with the socket module it pulls in). Anything else goes to parseaddr.
_PLAIN_FROM = re.compile(r"(?:[^\W_]+(?: [^\W_]+)* )?<?[A-Za-z0-9.+_-]+@[A-Za-z0-9.-]+>?")


def has_address(value: str) -> bool:
    """``"@" in email.utils.parseaddr(value)[1]``: [email] from names an address."""
    match = _PLAIN_FROM.fullmatch(value)
    if match and (value.endswith(">") == ("<" in value)):
        return True
    from email.utils import parseaddr

    return "@" in parseaddr(value)[1]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None, *, lenient: bool = False) -> Config:
    """Read, validate and resolve the whole configuration.

    ``overrides`` maps "section.key" to a value from the command line. ``lenient`` (``serve``):
    settings the receiver does not need to store postbacks ([email] from, the panels' API keys)
    are not checked here; ``process``, ``status`` and ``doctor`` report them.
    """
    try:
        return _load_config(path, overrides, environ, lenient)
    except ConfigError as exc:
        text = str(exc)
        if "\n" in text or "\r" in text:  # a quoted TOML key may hold a newline: still one line
            raise ConfigError(text.replace("\r", "\\r").replace("\n", "\\n")) from None
        raise


def _load_config(path: str | Path | None, overrides: dict[str, Any] | None,
                 environ: dict[str, str] | None, lenient: bool = False) -> Config:
    environ = dict(os.environ if environ is None else environ)
    file = Path(path or environ.get("IPTVSYNC_CONFIG") or DEFAULT_CONFIG).expanduser().absolute()
    if not file.exists():
        raise ConfigError(_not_found(file))
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror or exc}") from None
    if not raw:
        raise ConfigError(f"{file}: the config file is empty (run 'iptvsync init' in an empty folder for a"
                          " complete one)")
    env_path = file.parent / ".env"
    try:
        dotenv = {k: v for k, v in dotenv_values(env_path).items() if v is not None} if env_path.exists() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{env_path}: cannot read .env: {getattr(exc, 'strerror', None) or exc}") from None
    merged_env = {**dotenv, **environ}  # environment beats .env

    known = set(SCHEMA) | {"panels", "products"}
    for name in raw:
        if name not in known:
            raise ConfigError(f"{file}: unknown section [{name}]")
    raw, cloud_templates = _cloud_templates(raw, file)

    sections: dict[str, dict] = {}
    origin: dict[tuple[str, str], str] = {}  # values that came from the environment or .env
    for name, schema in SCHEMA.items():
        values = _section(raw.get(name, {}), schema, name, file)
        for key, (typ, _default) in schema.items():
            env_name = f"IPTVSYNC_{name}_{key}".upper()
            where = f"[{name}] {key}"
            if env_name in merged_env:
                source = "environment" if env_name in environ else str(env_path)
                values[key] = _from_text(merged_env[env_name], typ, f"{env_name} ({where})", source)
                origin[(name, key)] = f" (set by {env_name} in {source})"
            if overrides and f"{name}.{key}" in overrides and overrides[f"{name}.{key}"] is not None:
                values[key] = overrides[f"{name}.{key}"]
        for (sec, key), allowed in CHOICES.items():
            if sec == name and values[key] not in allowed:
                raise ConfigError(f"{file}: [{name}] {key} must be one of {', '.join(allowed)}, "
                                  f"got {values[key]!r}{origin.get((sec, key), '')}")
        sections[name] = values
    if any(d < 0 for d in sections["policy"]["reminder_days"]) or sections["policy"]["grace_days"] < 0:
        raise ConfigError(f"{file}: [policy] grace_days and reminder_days must not be negative"
                          f"{origin.get(('policy', 'grace_days'), '')}{origin.get(('policy', 'reminder_days'), '')}")
    if sections["policy"]["max_attempts"] < 1:
        raise ConfigError(f"{file}: [policy] max_attempts must be at least 1, got {sections['policy']['max_attempts']}"
                          f"{origin.get(('policy', 'max_attempts'), '')}")
    if not re.fullmatch(r"\s*\d+\s*[smhdw]\s*", sections["status"]["max_wait"]):
        raise ConfigError(f"{file}: [status] max_wait must be a duration such as \"10m\" or \"1h\", got"
                          f" {sections['status']['max_wait']!r}{origin.get(('status', 'max_wait'), '')}")
    if sections["status"]["receiver_url"] and not _has_scheme(sections["status"]["receiver_url"]):
        raise ConfigError(f"{file}: [status] receiver_url must start with http:// or https://, got"
                          f" {sections['status']['receiver_url']!r}{origin.get(('status', 'receiver_url'), '')}")
    if not has_address(sections["email"]["from"]) and not lenient:
        raise ConfigError(f"{file}: [email] from must be an address such as \"Loja <no-reply@loja.com.br>\", "
                          f"got {sections['email']['from']!r}{origin.get(('email', 'from'), '')}")
    if not sections["receiver"]["path"].startswith("/"):
        raise ConfigError(f"{file}: [receiver] path must start with '/'{origin.get(('receiver', 'path'), '')}")
    _check_receiver(sections["receiver"], file, origin)

    panels = _panels(raw.get("panels", {}), file)
    products = _products(raw.get("products", {}), panels, file)
    if not products:
        raise ConfigError(f"{file}: no [products.<code>]: add one per Monetizze product you sell"
                          " (see config.example.toml)")
    secrets = Secrets(
        chave_unica=merged_env.get("MONETIZZE_CHAVE_UNICA", ""),
        consumer_key=merged_env.get("MONETIZZE_CONSUMER_KEY", ""),
        secret_key=merged_env.get("IPTVSYNC_SECRET_KEY", ""),
        pending_key=merged_env.get("IPTVSYNC_NEW_SECRET_KEY", ""),
        retired_keys=tuple(k.strip() for k in merged_env.get("IPTVSYNC_RETIRED_KEYS", "").split(",") if k.strip()),
        smtp_username=merged_env.get("SMTP_USERNAME", ""),
        smtp_password=merged_env.get("SMTP_PASSWORD", ""),
        panel_api_keys={n: merged_env.get(_panel_env_name(n), "") for n in panels},
        whatsapp_token=merged_env.get("WHATSAPP_TOKEN", ""),
        whatsapp_client_token=merged_env.get("WHATSAPP_CLIENT_TOKEN", ""),
    )
    _check_secrets(secrets, {} if lenient else panels, env_path, environ)
    if not lenient:  # the receiver stores postbacks whatever the gateway's settings say
        _check_whatsapp(sections["whatsapp"], products, secrets, file, env_path)
    return Config(path=file, env_path=env_path, panels=panels, products=products, secrets=secrets,
                  cloud_templates=cloud_templates,
                  **{name: _build(SECTIONS[name], values) for name, values in sections.items()})


def _cloud_templates(raw: dict, file: Path) -> tuple[dict, dict[str, str]]:
    """``[whatsapp.cloud_templates]`` (kind = "template name") taken out of ``[whatsapp]``; every
    kind has a name (``iptvsync_<kind>`` unless set)."""
    section = raw.get("whatsapp")
    names = {kind: f"iptvsync_{kind}" for kind in MESSAGE_KINDS}
    if not isinstance(section, dict) or "cloud_templates" not in section:
        return raw, names
    table = section["cloud_templates"]
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [whatsapp.cloud_templates] must be a table of kind = \"template name\"")
    for kind, name in table.items():
        if kind not in MESSAGE_KINDS:
            raise ConfigError(f"{file}: unknown key '{kind}' in [whatsapp.cloud_templates] (one of"
                              f" {', '.join(MESSAGE_KINDS)})")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            raise ConfigError(f"{file}: [whatsapp.cloud_templates] {kind} must be a template name of lowercase"
                              f" letters, digits and _, got {name!r}")
        names[kind] = name
    return {**raw, "whatsapp": {k: v for k, v in section.items() if k != "cloud_templates"}}, names


def _check_whatsapp(values: dict, products: dict[str, ProductConfig], secrets: Secrets, file: Path,
                    env_path: Path) -> None:
    """Channels known; when any product hears on WhatsApp, a gateway with what it needs."""
    lists = [("[whatsapp] channels", values["channels"])] + [
        (f"[products.{code}] channels", p.channels) for code, p in products.items()]
    for where, channels in lists:
        for channel in channels:
            if channel not in CHANNELS:
                raise ConfigError(f"{file}: {where} must be among {', '.join(CHANNELS)}, got {channel!r}")
    if not any("whatsapp" in (p.channels or values["channels"]) for p in products.values()):
        return
    if not values["gateway"]:
        raise ConfigError(f"{file}: [whatsapp] gateway is empty but a channels list names whatsapp (one of"
                          f" {', '.join(GATEWAY_NAMES)})")
    caps = gateway_caps(values["gateway"])
    for key in caps.needs:
        if not values[key]:
            raise ConfigError(f"{file}: missing required key '{key}' in [whatsapp] (gateway = {values['gateway']})")
    if values["url"] and not _has_scheme(values["url"]):
        raise ConfigError(f"{file}: [whatsapp] url must start with http:// or https://, got {values['url']!r}")
    if values["per_minute"] < 1 or values["timeout_s"] < 1 or values["jitter_ms"] < 0 or values["unknown_resends"] < 0:
        raise ConfigError(f"{file}: [whatsapp] per_minute and timeout_s must be at least 1, jitter_ms and"
                          " unknown_resends not negative")
    for name in caps.secrets:
        if not getattr(secrets, name.lower()):
            raise ConfigError(f"{env_path}: {name} is not set (environment or .env): the [whatsapp]"
                              f" {values['gateway']} gateway's credential")
#: where an install's config.toml usually is (the guide's folder), besides the venv's project folder
LIKELY_CONFIGS = (Path("/var/lib/iptvsync/config.toml"), Path("/etc/iptvsync/config.toml"))


def _not_found(file: Path) -> str:
    """Run from another folder, the install is elsewhere: say how to point at it before ``init``."""
    import sys

    beside_venv = Path(sys.prefix).parent / DEFAULT_CONFIG  # <project>/.venv -> <project>/config.toml
    found = next((p for p in (beside_venv, *LIKELY_CONFIGS) if p != file and p.is_file()), None)
    where = f"there is one at {found}: " if found else ""
    return (f"{file}: config file not found; {where}pass --config {found or 'PATH'} or set IPTVSYNC_CONFIG"
            f" (run 'iptvsync init' only for a new install)")


def _check_receiver(values: dict, file: Path, origin: dict) -> None:
    """What `serve` would otherwise only find out with a traceback."""
    if not 0 <= values["port"] <= 65535:
        raise ConfigError(f"{file}: [receiver] port must be between 1 and 65535, got {values['port']}"
                          f"{origin.get(('receiver', 'port'), '')}")
    for key in ("allowed_ips", "trusted_proxies"):
        for cidr in values[key]:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"{file}: [receiver] {key} has {cidr!r}, which is not an IP address or CIDR"
                                  f" such as \"203.0.113.0/24\"{origin.get(('receiver', key), '')}") from None


#: what a link template may use; ``server`` is the ``server`` link itself
LINK_PLACEHOLDERS = {"server": (), "m3u": ("server", "username", "password"),
                     "epg": ("server", "username", "password")}


def _check_links(links: dict, where: str, file: Path) -> None:
    """Every placeholder known, every brace balanced: a bad one would fail every buyer's email."""
    for key, allowed in LINK_PLACEHOLDERS.items():
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(links[key]) if name is not None]
        except ValueError as exc:
            raise ConfigError(f"{file}: [{where}.links] {key} is not a valid template ({exc}); write a literal"
                              " brace as {{ or }}") from None
        for name in names:
            if name not in allowed:
                known = ", ".join("{" + a + "}" for a in allowed) or "no placeholders"
                raise ConfigError(f"{file}: [{where}.links] {key} has an unknown placeholder {{{name}}}"
                                  f" (known: {known})")
    if not _has_scheme(links["server"]):
        raise ConfigError(f"{file}: [{where}.links] server must start with http:// or https://,"
                          f" got {links['server']!r}")


def _has_scheme(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _check_secrets(secrets: Secrets, panels: dict[str, PanelConfig], env_path: Path,
                   environ: dict[str, str]) -> None:
    def source(name: str) -> str:
        return "the environment" if name in environ else str(env_path)

    if secrets.secret_key and not _is_fernet_key(secrets.secret_key):
        raise ConfigError(f"{source('IPTVSYNC_SECRET_KEY')}: IPTVSYNC_SECRET_KEY is not a valid key (44 characters"
                          " of url-safe base64; `iptvsync init` in an empty folder writes a fresh one)")
    for name, panel in panels.items():
        if panel.caps.real and panel.caps.needs_api_key and not secrets.panel_api_keys.get(name):
            raise ConfigError(f"{env_path}: {_panel_env_name(name)} is not set (environment or .env): the"
                              f" API key of [panels.{name}]")


def _is_fernet_key(key: str) -> bool:
    """What ``cryptography.fernet.Fernet`` accepts, without importing it on every command."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def _panels(raw: dict, file: Path) -> dict[str, PanelConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: [panels] must be a table of [panels.<name>]")
    panels = {}
    for name, body in raw.items():
        where = f"panels.{name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{file}: [{where}] must be a table")
        links_raw = body.get("links", {})
        values = _section({k: v for k, v in body.items() if k != "links"}, PANEL_SCHEMA, where, file)
        links = _section(links_raw, LINKS_SCHEMA, where + ".links", file)
        try:
            caps = capabilities(values["kind"])
        except ValueError:
            raise ConfigError(f"{file}: [{where}] kind must be one of {', '.join(KINDS)}, "
                              f"got {values['kind']!r}") from None
        if caps.needs_url and not values["url"]:
            raise ConfigError(f"{file}: missing required key 'url' in [{where}]")
        if values["url"] and not _has_scheme(values["url"]):
            raise ConfigError(f"{file}: [{where}] url must start with http:// or https://, got {values['url']!r}")
        _check_links(links, where, file)
        if values["max_concurrency"] < 1:
            raise ConfigError(f"{file}: [{where}] max_concurrency must be at least 1")
        if values["low_credits"] < 0:
            raise ConfigError(f"{file}: [{where}] low_credits must be 0 or more")
        panels[name] = PanelConfig(name=name, kind=values["kind"], url=values["url"],
                                   max_concurrency=values["max_concurrency"],
                                   timeout_s=values["timeout_s"], links=Links(**links), caps=caps,
                                   outputs=_outputs(values["outputs"], where, file),
                                   low_credits=values["low_credits"])
    return panels


def _check_amounts(values: dict, where: str, file: Path) -> None:
    if values.get("days", 0) < 0:
        raise ConfigError(f"{file}: [{where}] days must be positive (or omitted when period is set),"
                          f" got {values['days']}")
    if values.get("max_connections", 1) < 1:
        raise ConfigError(f"{file}: [{where}] max_connections must be at least 1, got {values['max_connections']}")
    if values.get("package", 0) < 0:
        raise ConfigError(f"{file}: [{where}] package must be a package id, got {values['package']}")


def _products(raw: dict, panels: dict[str, PanelConfig], file: Path) -> dict[str, ProductConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: [products] must be a table of [products.<code>]")
    products = {}
    for code, body in raw.items():
        where = f"products.{code}"
        if not isinstance(body, dict):
            raise ConfigError(f"{file}: [{where}] must be a table")
        plans_raw = body.get("plans", {})
        values = _section({k: v for k, v in body.items() if k != "plans"}, PRODUCT_SCHEMA, where, file)
        if values["panel"] not in panels:
            raise ConfigError(f"{file}: [{where}] panel '{values['panel']}' is not a [panels.<name>]")
        panel = panels[values["panel"]]
        if panel.caps.extends_by_package and not values["package"]:
            raise ConfigError(f"{file}: missing required key 'package' in [{where}] ({panel.kind} panel)")
        if not isinstance(plans_raw, dict):
            raise ConfigError(f"{file}: [{where}] plans must be a table of [{where}.plans.<plan>]")
        _check_amounts(values, where, file)
        plans = {}
        for plan, pbody in plans_raw.items():
            pv = {k: v for k, v in _section(pbody, PLAN_SCHEMA, f"{where}.plans.{plan}", file).items()
                  if k in pbody}
            _check_amounts(pv, f"{where}.plans.{plan}", file)
            days, months = _period(pv.get("days"), pv.get("period"), f"{where}.plans.{plan}", file)
            plans[str(plan)] = PlanOverride(
                days=days, months=months, max_connections=pv.get("max_connections"),
                bouquets=tuple(pv["bouquets"]) if "bouquets" in pv else None, package=pv.get("package"))
        days, months = _period(values["days"], values["period"], where, file)
        if not (days or months):  # refused here, never when a buyer's postback arrives
            raise ConfigError(f'{file}: [{where}] needs days or period (days = 30 or period = "1 month"):'
                              " Monetizze does not always send plano[periodicidade]")
        products[str(code)] = ProductConfig(
            code=str(code), name=values["name"], panel=values["panel"], days=days,
            max_connections=values["max_connections"], bouquets=tuple(values["bouquets"]),
            package=values["package"] or None, key=values["key"], plans=plans, months=months,
            outputs=_outputs(values["outputs"], where, file), channels=tuple(dict.fromkeys(values["channels"])))
    return products


def _period(days: int | None, period: str | None, where: str, file: Path) -> tuple[int | None, int | None]:
    """(days, months) of one paid period from ``days = N`` or ``period = "N days|N months"``."""
    if not period:
        return days or None, None
    match = _PERIOD.fullmatch(period)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f'{file}: [{where}] period must look like "1 month" or "30 days", got {period!r}')
    if days:
        raise ConfigError(f"{file}: [{where}] set either days or period, not both")
    number = int(match.group(1))
    return (None, number) if match.group(2).lower().startswith("month") else (number, None)


def _outputs(values: list[str], where: str, file: Path) -> tuple[str, ...]:
    for value in values:
        if value not in OUTPUT_NAMES:
            raise ConfigError(f"{file}: [{where}] outputs must be among {', '.join(OUTPUT_NAMES)}, "
                              f"got {value!r}")
    return tuple(dict.fromkeys(values))
