// Runs seed 004's monitor against a live gateway as the seed's "Ejemplo de uso" does, and
// prints what happened as JSON lines on stdout (the example's console lines go to stderr):
//   {"ready": true}             the socket's stream is open (its first heartbeat came)
//   {"callback": name, "data"}  a callback of the example, with its message
//   {"ui": name, "args"}        a page function the example calls
//   {"closed": code}            the socket closed
// Usage: MONITOR_BASE_URL=ws://host:port \
//   node --experimental-websocket monitor_runner.mjs <execution_id> <workflow_id> <token> <tenant_id>
import { monitorWorkflowExecution } from "./monitor.mjs";

const [executionId, workflowId, authToken, tenantId] = process.argv.slice(2);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
console.log = console.error;

// The page's functions the example calls.
const updateProgressBar = (...args) => emit({ ui: "updateProgressBar", args });
const updateWorkflowDiagram = (...args) => emit({ ui: "updateWorkflowDiagram", args });
const showErrorNotification = (...args) => emit({ ui: "showErrorNotification", args });
const showCompletionMessage = (...args) => emit({ ui: "showCompletionMessage", args });
const seen = (name, callback) => (data) => {
  emit({ callback: name, data });
  callback(data);
};

const monitor = monitorWorkflowExecution(executionId, workflowId, authToken, tenantId, {
  onUpdate: seen("onUpdate", (data) => {
    console.log(`Progreso: ${data.progress * 100}% - Paso actual: ${data.current_step}`);
    updateProgressBar(data.progress);
  }),
  onStepCompleted: seen("onStepCompleted", (data) => {
    console.log(`Paso completado: ${data.step_name}`);
    updateWorkflowDiagram(data.step_id, "completed");
  }),
  onError: seen("onError", (data) => {
    console.error(`Error en paso ${data.error.step_name}: ${data.error.message}`);
    showErrorNotification(data.error.message);
  }),
  onCompleted: seen("onCompleted", (data) => {
    console.log(`Workflow completado con estado: ${data.status}`);
    showCompletionMessage(data.status, data.output);
    monitor.close();
  }),
  onConnectionError: () => {
    showErrorNotification("Error de conexión con el servidor de workflows");
  },
});

let ready = false;
monitor.socket.addEventListener("message", (event) => {
  if (!ready && JSON.parse(event.data).event === "heartbeat") {
    ready = true;
    emit({ ready: true });
  }
});
monitor.socket.addEventListener("close", (event) => emit({ closed: event.code }));
