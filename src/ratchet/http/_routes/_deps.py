"""Dependencies the routes share: the context, and the caller by the role it needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from .._auth import require
from .._context import ApiContext, context
from .._roles import Principal

__all__ = ["Admin", "Approver", "Ctx", "Operator", "Viewer"]

Ctx = Annotated[ApiContext, Depends(context)]
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Approver = Annotated[Principal, Depends(require("approver"))]
Admin = Annotated[Principal, Depends(require("admin"))]
