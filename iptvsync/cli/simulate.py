"""``iptvsync simulate``: post a realistic postback to the running receiver (go-live checks)."""

from __future__ import annotations

import typer

from .app import app, load, writes

sim_app = typer.Typer(no_args_is_help=True, help="Post realistic postbacks to the running receiver.")
app.add_typer(sim_app, name="simulate")


def _confirm_real(cfg, product: str, kind: str, email: str, yes: bool) -> None:
    """Plain simulate on a real panel changes a real line: say so, and ask (or need --yes)."""
    import sys

    panel = cfg.panels.get(cfg.products[product].panel)
    if panel is None or not panel.caps.real or yes:
        return
    typer.echo(f"warning: panel {panel.name} is a real {panel.kind} panel: this {kind} changes a REAL line "
               f"and emails {email}. For a rehearsal that disables the line afterwards, use "
               "`simulate purchase --live --email YOUR-ADDRESS`.", err=True)
    if not sys.stdin.isatty():
        typer.echo("error: not confirmed (pass --yes to go ahead)", err=True)
        raise typer.Exit(1)
    if not typer.confirm("go ahead?", err=True):
        raise typer.Exit(1)


def _post(ctx: typer.Context, kind: str, email: str, product: str | None, sale: str | None,
          subscription: str | None, parcela: int | None, url: str | None, insecure: bool, yes: bool = False,
          live: bool = False, wait: float = 300) -> None:
    import warnings

    import requests
    import urllib3

    from ..monetizze.simulate import build_postback
    from ..ops.rehearsal import REHEARSAL_NAME
    from ..ops.simulation import target

    cfg = load(ctx)
    existing = target(cfg, kind, subscription=subscription, sale=sale, parcela=parcela)
    if existing:  # act on the subscription's real charge, product and buyer
        subscription, sale, parcela = existing.subscription, existing.sale, existing.parcela
        product = product or existing.product
        email = existing.email if email == DEFAULT_EMAIL and existing.email else email
    parcela = parcela or 1
    product = product or next(iter(cfg.products), None)
    if product is None:
        typer.echo(f"error: no [products.<code>] in {cfg.path}", err=True)
        raise typer.Exit(2)
    if product not in cfg.products:  # the receiver would store it, and `process` leave it unmapped for good
        typer.echo(f"error: product {product} is not configured: add a [products.{product}] section to {cfg.path}"
                   f" (configured: {', '.join(cfg.products)})", err=True)
        raise typer.Exit(2)
    if live and email == DEFAULT_EMAIL:
        typer.echo("error: --live sends a real email: pass --email with your own address", err=True)
        raise typer.Exit(2)
    if live:
        writes(ctx, cfg)  # the rehearsal puts its line on hold
    else:
        _confirm_real(cfg, product, kind, email, yes)
    payload, body = build_postback(kind, chave_unica=cfg.require("MONETIZZE_CHAVE_UNICA"), product=product,
                                   email=email, sale=sale, subscription=subscription, parcela=parcela,
                                   **({"name": REHEARSAL_NAME} if live else {}))
    if url is None:
        r = cfg.receiver
        scheme = "https" if r.certfile else "http"
        host = "127.0.0.1" if r.host in ("0.0.0.0", "::", "") else r.host
        url = f"{scheme}://{host}:{r.port}{r.path}"
    try:
        with warnings.catch_warnings():
            if insecure:  # asked for: urllib3's InsecureRequestWarning would only repeat the option back
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            resp = requests.post(url, data=body, timeout=15, verify=not insecure,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    except requests.exceptions.SSLError:
        typer.echo(f"error: the receiver's TLS certificate at {url} is not trusted (self-signed?); for a test,"
                   " pass --insecure", err=True)
        raise typer.Exit(1) from None
    except requests.RequestException as exc:
        typer.echo(f"error: could not reach the receiver ({type(exc).__name__}); is `iptvsync serve` running?",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{kind}: sale {payload['venda']['codigo']}, subscription {payload['assinatura']['codigo']}, "
               f"parcela {parcela} -> HTTP {resp.status_code} {resp.text.strip()}")
    if resp.status_code != 200:
        raise typer.Exit(1)
    if live:
        from ..ops.rehearsal import follow

        typer.echo(f"rehearsal: waiting up to {wait:.0f}s for the line and the email (running `process`)")
        for line in follow(cfg, payload["venda"]["codigo"], timeout_s=wait):
            typer.echo(f"rehearsal: {line}")


DEFAULT_EMAIL = "comprador@example.com"


# the options every simulated event takes (one definition for purchase and the others)
PRODUCT = typer.Option(None, help="Product code (default: the first in [products]).")
SALE = typer.Option(None, help="Sale code (default: a fresh SIM… code; cancel, refund, dispute: the last charge's).")
SUBSCRIPTION = typer.Option(None, help="Subscription (its code, id or buyer email): its product, buyer and charges.")
PARCELA = typer.Option(None, help="Charge number (default 1; renewal: the next one; cancel, refund, dispute: "
                                   "the last charge's).")
URL = typer.Option(None, help="Receiver URL (default: from [receiver]).")
INSECURE = typer.Option(False, "--insecure", help="Do not verify the TLS certificate (a self-signed one).")
YES = typer.Option(False, "--yes", help="Do not ask before changing a line on a real panel.")


def _command(kind: str, doc: str):
    def command(ctx: typer.Context, email: str = typer.Option(DEFAULT_EMAIL, help="Buyer email."),
                product: str = PRODUCT, sale: str = SALE, subscription: str = SUBSCRIPTION,
                parcela: int = PARCELA, url: str = URL, insecure: bool = INSECURE, yes: bool = YES):
        _post(ctx, kind, email, product, sale, subscription, parcela, url, insecure, yes)

    command.__doc__ = doc
    sim_app.command(kind)(command)


@sim_app.command("purchase")
def purchase(ctx: typer.Context, email: str = typer.Option(DEFAULT_EMAIL, help="Buyer email (--live: yours)."),
             product: str = PRODUCT, sale: str = SALE, subscription: str = SUBSCRIPTION,
             parcela: int = PARCELA, url: str = URL, insecure: bool = INSECURE, yes: bool = YES,
             live: bool = typer.Option(False, "--live", help="Rehearsal: follow it through panel and email, "
                                                            "then disable the test line."),
             wait: float = typer.Option(300, metavar="SECONDS", help="--live: how long to wait for each step.")):
    """A paid first charge of a new subscription (--live: a marked rehearsal on the live system)."""
    _post(ctx, "purchase", email, product, sale, subscription, parcela, url, insecure, yes, live, wait)


_command("renewal", "A paid renewal charge of --subscription (the next parcela).")
_command("cancel", "Cancel --subscription (as Monetizze: with its last charge).")
_command("refund", "Refund --subscription's last charge (or --sale).")
_command("dispute", "Dispute --subscription's last charge (or --sale).")
