"""Making a serverless worker's deployment version the one new tasks go to.

Temporal's Lambda integration always runs workers with Worker Deployment Versioning: a
versioned worker is only handed the tasks of its deployment's *current* version. A first
deployment has no current version, so without a promotion its runs would wait on the
queue forever while the function polls it in vain.
"""

from __future__ import annotations

import logging
from typing import Literal

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

__all__ = ["MakeCurrent", "current_build_id", "make_current"]

MakeCurrent = Literal["if-none", "always", "never"]
"""When a serverless worker makes its own version current: when the deployment has no
current version yet (a first deployment), at every cold start, or never (an operator
promotes with ``temporal worker deployment set-current-version``)."""

_log = logging.getLogger("ratchet.serverless")


async def current_build_id(client: Client, deployment_name: str) -> str | None:
    """The build id of the deployment's current version (None: none, or no deployment yet)."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    current = described.worker_deployment_info.routing_config.current_deployment_version
    return current.build_id or None


async def make_current(client: Client, version: WorkerDeploymentVersion, when: MakeCurrent) -> bool:
    """Make ``version`` its deployment's current version if ``when`` says so.

    Returns:
        Whether this call changed the current version.
    """
    if when == "never":
        return False
    current = await current_build_id(client, version.deployment_name)
    if current == version.build_id or (when == "if-none" and current is not None):
        return False
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity=client.identity,
            # The version registers with the server at its first poll, which comes
            # after this: promoting first lets this very invocation get the tasks.
            allow_no_pollers=True,
        )
    )
    _log.warning(
        "made %s the current version of worker deployment %r (it was %s)",
        version.build_id,
        version.deployment_name,
        current or "none",
    )
    return True
