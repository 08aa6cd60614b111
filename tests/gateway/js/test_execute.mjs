// Seed 004's testExecuteWorkflow, as a frontend pastes it: unchanged but for the base URL,
// which the test passes (`node test_execute.mjs BASE_URL WORKFLOW_ID INPUT_JSON TOKEN TENANT`).
// Prints the answer as JSON, or `{"thrown": message}` and exits 1 when the function throws.
const [baseUrl, workflowIdArg, inputJson, token, tenant] = process.argv.slice(2);

const testExecuteWorkflow = async (workflowId, inputData, authToken, tenantId) => {
  try {
    const response = await fetch(`${baseUrl}/api/workflows/${workflowId}/test-execute`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${authToken}`,
        'X-Tenant-ID': tenantId,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        input: inputData,
        debug_mode: true
      })
    });
    
    if (!response.ok) {
      const errorData = await response.json();
      throw new Error(errorData.error.message);
    }
    
    return await response.json();
  } catch (error) {
    console.error('Error executing workflow:', error);
    throw error;
  }
};

try {
  const answer = await testExecuteWorkflow(workflowIdArg, JSON.parse(inputJson), token, tenant);
  console.log(JSON.stringify(answer));
} catch (error) {
  console.log(JSON.stringify({ thrown: error.message }));
  process.exitCode = 1;
}
