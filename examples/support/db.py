"""The demo shop's SQLite database: orders, and refunds applied at most once."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

SEED_ORDERS = [
    # id, customer, item, total, status, carrier
    (1042, "Ada", "mechanical keyboard", 129.00, "shipped", "UPS, arriving Friday"),
    (1043, "Grace", "USB-C hub", 45.50, "delivered", "DHL, delivered Monday"),
    (1044, "Linus", "27-inch monitor", 310.00, "processing", "not shipped yet"),
]


def db_path() -> Path:
    """``$SUPPORT_DB`` or ``support.sqlite`` in ratchet's data directory."""
    if env := os.environ.get("SUPPORT_DB"):
        return Path(env)
    from ratchet.local import data_dir

    return data_dir() / "support.sqlite"


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open (creating and seeding if needed) the shop database."""
    path = path or db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.executescript(
        """
        PRAGMA journal_mode = wal;
        CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY, customer TEXT, item TEXT, total REAL,
            status TEXT, carrier TEXT
        );
        CREATE TABLE IF NOT EXISTS refunds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            idempotency_key TEXT NOT NULL UNIQUE,
            order_id INTEGER NOT NULL REFERENCES orders(id),
            amount REAL NOT NULL,
            created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
        );
        """
    )
    conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?)", SEED_ORDERS)
    conn.commit()
    return conn


def refunds_by_run(run_id: str, path: Path | None = None) -> int:
    """Refund rows written by one run (idempotency keys start with the run's id)."""
    with contextlib.closing(connect(path)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM refunds WHERE idempotency_key LIKE ?", (f"{run_id}/%",)
        ).fetchone()
    return int(row[0])


def refunds_for(order_id: int, path: Path | None = None) -> int:
    """How many refund rows exist for an order (exactly-once checks use it)."""
    with contextlib.closing(connect(path)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchone()
    return int(row[0])
