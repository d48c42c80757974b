"""The activity that checks an approval's proof against the worker's secret.

It runs before a run records a person's answer (``ratchet.workflows._approvals``).
The secret stays in the worker's environment: the workflow sees only the verdict,
so the history holds the proof (an HMAC) and never the key.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ._protocol import VERIFY_APPROVAL_ACTIVITY, ApprovalCheck, ApprovalVerdict
from .approval_proof import secret_from_env, verify_approval
from .errors import ApprovalError, ConfigError

__all__ = ["UNAUTHENTICATED_ANSWER", "verify_approval_answer"]

UNAUTHENTICATED_ANSWER = (
    "this deployment requires authenticated approvals: answer through ratchet's HTTP "
    "API/console (an answer sent straight through Temporal carries no proof of who gave it)"
)


@activity.defn(name=VERIFY_APPROVAL_ACTIVITY)
async def verify_approval_answer(check: ApprovalCheck) -> ApprovalVerdict:
    """Accept the answer, or fail with a non-retryable ``ApprovalError`` saying why.

    Read at each call, so a worker takes a new secret without rebuilding its workers.
    """
    secret = secret_from_env()
    if secret is None:
        return ApprovalVerdict(authenticated=False)
    answer = check.answer
    if answer.proof is None:
        raise ApplicationError(UNAUTHENTICATED_ANSWER, type="ApprovalError", non_retryable=True)
    try:
        verify_approval(
            secret,
            answer.proof,
            run_id=check.run_id,
            call_id=answer.call_id,
            approve=answer.approve,
            approver=answer.approver,
            raise_to=answer.raise_to,
        )
    except (ApprovalError, ConfigError) as e:
        raise ApplicationError(str(e), type="ApprovalError", non_retryable=True) from None
    return ApprovalVerdict(authenticated=True)
