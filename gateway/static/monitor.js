// Seed 004's `monitorWorkflowExecution` ("Monitorear Ejecución de Workflow con WebSocket"),
// verbatim but for the base URL: the page's own origin (ws:// or wss://, as the page was
// loaded) where the seed has `wss://api.domain.com`. live.js supplies the callbacks of the
// seed's usage example and the page functions they call.

const MONITOR_BASE_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;

const monitorWorkflowExecution = (executionId, workflowId, authToken, tenantId, callbacks) => {
  const ws = new WebSocket(`${MONITOR_BASE_URL}/api/workflows/ws`);
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
