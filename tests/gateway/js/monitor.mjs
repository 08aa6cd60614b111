// Seed 004's `monitorWorkflowExecution` ("Monitorear Ejecución de Workflow con WebSocket"),
// verbatim but for the base URL: `${BASE_URL}` where the seed has `wss://api.domain.com`.
// Node 20 has a WebSocket global behind --experimental-websocket (22 has it by default).

const BASE_URL = process.env.MONITOR_BASE_URL ?? "ws://127.0.0.1:8080";

const monitorWorkflowExecution = (executionId, workflowId, authToken, tenantId, callbacks) => {
  const ws = new WebSocket(`${BASE_URL}/api/workflows/ws`);
  let reconnectAttempts = 0;
  const maxReconnectAttempts = 5;
  
  ws.onopen = () => {
    reconnectAttempts = 0;
    
    // Autenticar
    ws.send(JSON.stringify({
      action: "authenticate",
      token: authToken,
      tenant_id: tenantId
    }));
    
    // Suscribirse a actualizaciones específicas
    ws.send(JSON.stringify({
      action: "subscribe",
      topics: [`execution:${executionId}`, `workflow:${workflowId}`]
    }));
  };
  
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    
    switch(data.event) {
      case "workflow_execution_update":
        if (callbacks.onUpdate) {
          callbacks.onUpdate(data);
        }
        break;
        
      case "workflow_step_completed":
        if (callbacks.onStepCompleted) {
          callbacks.onStepCompleted(data);
        }
        break;
        
      case "workflow_execution_error":
        if (callbacks.onError) {
          callbacks.onError(data);
        }
        break;
        
      case "workflow_execution_completed":
        if (callbacks.onCompleted) {
          callbacks.onCompleted(data);
        }
        break;
    }
  };
  
  // Manejo de reconexión con backoff exponencial
  ws.onclose = (event) => {
    if (event.code !== 1000 && reconnectAttempts < maxReconnectAttempts) {
      reconnectAttempts++;
      const delay = Math.min(1000 * Math.pow(2, reconnectAttempts), 30000);
      
      console.log(`Intentando reconectar en ${delay/1000} segundos...`);
      setTimeout(() => {
        monitorWorkflowExecution(executionId, workflowId, authToken, tenantId, callbacks);
      }, delay);
    } else if (reconnectAttempts >= maxReconnectAttempts) {
      console.error('Máximo número de intentos de reconexión alcanzado');
      if (callbacks.onConnectionError) {
        callbacks.onConnectionError();
      }
    }
  };
  
  // Ping periódico para mantener conexión activa
  const pingInterval = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({
        action: "ping",
        timestamp: new Date().toISOString()
      }));
    }
  }, 30000);
  
  return {
    socket: ws,
    close: () => {
      clearInterval(pingInterval);
      ws.close(1000);
    }
  };
};

export { monitorWorkflowExecution };
