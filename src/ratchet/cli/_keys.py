"""`ratchet keys create`, `ls` and `revoke`: the HTTP API's keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ._common import err, out

if TYPE_CHECKING:
    from ..http import KeyStore

keys_app = typer.Typer(
    help="API keys of the HTTP API (`ratchet serve`): made once, stored hashed.",
    no_args_is_help=True,
)

KeysFile = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        envvar="RATCHET_API_KEYS",
        help="The key store (default: api-keys.sqlite in ratchet's data directory).",
    ),
]


def _store(path: Path | None) -> KeyStore:
    # Imported here: the HTTP stack (FastAPI) loads only for the commands that use it.
    from ..http import KeyStore

    return KeyStore(path)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who holds it; approvals record this name.")],
    role: Annotated[str, typer.Option(help="viewer, operator, approver or admin.")],
    tenant: Annotated[
        str | None, typer.Option(help="Bind it to a tenant: it sees and starts only its runs.")
    ] = None,
    keys: KeysFile = None,
) -> None:
    """Create a key. The key goes to stdout, once: store it now."""
    from ..errors import ConfigError

    store = _store(keys)
    try:
        key, secret = store.create(name, role, tenant)
    except ConfigError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    finally:
        store.close()
    scope = f", tenant {key.tenant}" if key.tenant else ""
    err.print(
        f"created key {key.id} ({key.name}, {key.role}{scope}); it is shown only now",
        markup=False,
    )
    print(secret)


@keys_app.command("ls")
def keys_ls(keys: KeysFile = None) -> None:
    """List the keys (never their secrets)."""
    store = _store(keys)
    try:
        listed = store.list()
    finally:
        store.close()
    if not listed:
        out.print("no keys; create one with `ratchet keys create --name NAME --role admin`")
        return
    rows = [
        (
            k.id,
            k.name,
            k.role,
            k.tenant or "-",
            f"{k.created:%Y-%m-%d %H:%M}",
            f"{k.revoked:%Y-%m-%d %H:%M}" if k.revoked else "-",
        )
        for k in listed
    ]
    header = ("ID", "NAME", "ROLE", "TENANT", "CREATED (UTC)", "REVOKED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.print(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), markup=False
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `ratchet keys ls`).")],
    keys: KeysFile = None,
) -> None:
    """Revoke a key: it stops working at once, sessions opened with it included."""
    store = _store(keys)
    try:
        key = store.revoke(key_id)
    finally:
        store.close()
    if key is None:
        err.print(f"[red]error:[/] no key with id {key_id!r}; `ratchet keys ls` lists them")
        raise typer.Exit(1)
    out.print(f"revoked key {key.id} ({key.name})", markup=False)
