"""Serverless workers: ratchet agents hosted by AWS Lambda invocations.

:func:`lambda_handler` builds a Lambda handler on Temporal's
``temporalio.contrib.aws.lambda_worker``, from the same :class:`~ratchet.WorkerSettings`
a ``ratchet worker`` process runs. See the README's "Serverless workers" section for
when to choose it and how to deploy it.
"""

from ._lambda import LambdaHandler, lambda_handler
from ._local import LocalContext
from ._versions import MakeCurrent, current_build_id, make_current

__all__ = [
    "LambdaHandler",
    "LocalContext",
    "MakeCurrent",
    "current_build_id",
    "lambda_handler",
    "make_current",
]
