"""The README's flagship workflow runs as the README says, against a real HTTP server."""

from __future__ import annotations

from google.protobuf import json_format
from grpc import aio

from tests.conftest import NewTenant
from tests.effects_stub import Effects
from tests.execution_helpers import active_workflow, start, wait_until
from tests.test_readme import readme_workflow
from wfe.v1 import execution_pb2


async def test_readme_example_takes_the_found_branch_when_the_lookup_answers_an_id(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    document = readme_workflow()
    lookup = next(step for step in document["steps"] if step["id"] == "lookup")
    lookup["config"]["arguments"]["url"] = effects.url()
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, document)

    started = await start(channel, tenant, workflow_id, {"email": "ada@example.com"})
    done = await wait_until(channel, tenant, started.id)

    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    taken = [
        step.step_id for step in done.steps if step.status == execution_pb2.STEP_STATUS_COMPLETED
    ]
    assert taken == ["input", "lookup", "decision", "found"]
    customer = dict(done.result)["customer"]
    assert customer["id"].startswith("effect-")
    assert json_format.MessageToDict(done.steps[1].output)["status_code"] == 200
