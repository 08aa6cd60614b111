// Seed 004's createWorkflow, as a frontend pastes it: unchanged but for the base URL, which
// the test passes (`node create_workflow.mjs BASE_URL TOKEN TENANT WORKFLOW_JSON`). Prints the
// created workflow as JSON, or `{"thrown": message}` and exits 1 when the function throws.
const [baseUrl, token, tenant, workflowJson] = process.argv.slice(2);

const createWorkflow = async (workflowData, authToken, tenantId) => {
  try {
    const response = await fetch(`${baseUrl}/api/workflows`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${authToken}`,
        'X-Tenant-ID': tenantId,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify(workflowData)
    });
    
    if (!response.ok) {
      const errorData = await response.json();
      throw new Error(errorData.error.message);
    }
    
    return await response.json();
  } catch (error) {
    console.error('Error creating workflow:', error);
    throw error;
  }
};

try {
  console.log(JSON.stringify(await createWorkflow(JSON.parse(workflowJson), token, tenant)));
} catch (error) {
  console.log(JSON.stringify({ thrown: error.message }));
  process.exitCode = 1;
}
