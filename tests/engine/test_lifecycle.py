from grpc import aio

from tests.conftest import NewTenant
from tests.execution_helpers import active_workflow, start, three_steps, wait_until
from wfe.v1 import execution_pb2


async def test_three_step_workflow_completes(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    started = await start(channel, tenant, workflow_id, {"name": "Ada"})
    assert started.status in (execution_pb2.EXECUTION_STATUS_PENDING,)
    done = await wait_until(channel, tenant, started.id)
    print(done)
    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert dict(done.result) == {"greeting": "Ada"}
