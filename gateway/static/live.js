// The live page: sign in, list and start executions over REST, and follow one with seed 004's
// `monitorWorkflowExecution` (monitor.js), whose callbacks drive the progress bar and the
// colours of the workflow's diagram (flowchart.js).
//
// Events only tell what happens after the socket subscribed, so the page also reads the
// execution (GetExecution) when it opens it, once the socket says `subscribed`, and once
// the stream has sent its first message (then nothing can fall between the two). States only
// move forward, so the snapshot and the events agree whatever order they come in.
//
// `window.__wfe` records what the monitor did, for tests and for curious people: the
// callbacks called in order, the socket's messages, the diagram updates and the close code.

import { monitorWorkflowExecution } from "./monitor.js";
import { render, setState } from "./flowchart.js";

const TOKEN = "wfe.token";
const TENANT = "wfe.tenant";
const RANK = { pending: 0, running: 1, completed: 2, failed: 2, skipped: 2, cancelled: 2 };
const STEP_STATES = {
  STEP_STATUS_PENDING: "pending",
  STEP_STATUS_IN_PROGRESS: "running",
  STEP_STATUS_COMPLETED: "completed",
  STEP_STATUS_FAILED: "failed",
  STEP_STATUS_SKIPPED: "skipped",
  STEP_STATUS_CANCELLED: "cancelled",
};
const FINISHED = new Set([
  "EXECUTION_STATUS_COMPLETED",
  "EXECUTION_STATUS_FAILED",
  "EXECUTION_STATUS_CANCELLED",
]);

const $ = (id) => document.getElementById(id);
let view = null; // the execution on screen: { id, workflowId, nodes, states, chart, monitor, ... }
const workflowNames = new Map();

function newRecord(executionId) {
  return {
    executionId,
    callbacks: [],
    messages: [],
    diagram: [],
    subscribed: false,
    streaming: false,
    closeCode: null,
    progress: 0,
    completion: null,
  };
}
window.__wfe = newRecord(null);

function credentials() {
  return { token: sessionStorage.getItem(TOKEN), tenant: sessionStorage.getItem(TENANT) };
}

async function api(method, path, body) {
  const { token, tenant } = credentials();
  const headers = { Authorization: `Bearer ${token}`, "X-Tenant-ID": tenant };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const errorData = await response.json();
      message = errorData.error.message;
    } catch {
      // not seed 004's error body: keep the status line
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function requestId() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function words(status, prefix) {
  return (status ?? "").replace(prefix, "").toLowerCase().replaceAll("_", " ");
}

// Signing in and out

async function signIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  sessionStorage.setItem(TOKEN, $("token").value.trim());
  sessionStorage.setItem(TENANT, $("tenant").value.trim());
  try {
    await enter();
  } catch (error) {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(TENANT);
    $("sign-in-error").textContent = `Could not sign in: ${error.message}`;
  }
}

async function enter() {
  const tenant = await api("GET", "/api/tenant");
  $("who").textContent = `${tenant.name || tenant.id} · ${words(tenant.tier, "TIER_")}`;
  $("sign-in").hidden = true;
  $("identity").hidden = false;
  $("workspace").hidden = false;
  await Promise.all([loadWorkflows(), loadExecutions()]);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("execution");
  if (wanted) await open(wanted);
}

function signOut() {
  leave();
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(TENANT);
  history.replaceState(null, "", location.pathname);
  $("workspace").hidden = true;
  $("identity").hidden = true;
  $("sign-in").hidden = false;
  $("token").value = "";
  $("tenant").value = "";
  $("token").focus();
}

// Workflows and executions

async function loadWorkflows() {
  const select = $("workflow");
  const answer = await api("GET", "/api/workflows?status=WORKFLOW_STATUS_ACTIVE&page_size=200");
  select.replaceChildren();
  for (const workflow of answer.workflows) {
    workflowNames.set(workflow.id, workflow.name);
    select.append(new Option(`${workflow.name} (v${workflow.version})`, workflow.id));
  }
  $("start").disabled = answer.workflows.length === 0;
  if (!answer.workflows.length) select.append(new Option("No active workflow", ""));
}

async function loadExecutions() {
  const answer = await api("GET", "/api/executions?page_size=25");
  const rows = answer.executions.map((execution) => {
    const row = document.createElement("tr");
    row.dataset.executionId = execution.id;
    const open_ = document.createElement("button");
    open_.type = "button";
    open_.className = "link";
    open_.textContent = execution.id.slice(0, 8);
    open_.title = execution.id;
    open_.setAttribute("aria-label", `Open execution ${execution.id}`);
    open_.addEventListener("click", () => open(execution.id));
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = Math.round((execution.progress ?? 0) * 100);
    progress.textContent = `${progress.value}%`;
    progress.setAttribute("aria-label", `Progress of ${execution.id}`);
    const cells = [
      open_,
      workflowNames.get(execution.workflow_id) ?? execution.workflow_id,
      words(execution.status, "EXECUTION_STATUS_"),
      progress,
    ];
    for (const content of cells) {
      const cell = document.createElement("td");
      cell.append(content);
      row.append(cell);
    }
    return row;
  });
  $("executions").replaceChildren(...rows);
  $("executions-empty").hidden = rows.length > 0;
}

async function start(event) {
  event.preventDefault();
  $("start-error").textContent = "";
  let input;
  try {
    input = JSON.parse($("input").value || "{}");
  } catch (error) {
    $("start-error").textContent = `The input is not JSON: ${error.message}`;
    return;
  }
  try {
    const workflowId = $("workflow").value;
    const path = `/api/workflows/${encodeURIComponent(workflowId)}/executions`;
    const execution = await api("POST", path, { input, request_id: requestId() });
    await Promise.all([open(execution.id), loadExecutions()]);
  } catch (error) {
    $("start-error").textContent = `Could not start: ${error.message}`;
  }
}

// One execution, followed live

function leave() {
  if (view?.monitor) view.monitor.close();
  view = null;
}

async function open(executionId) {
  leave();
  const mine = {
    id: executionId,
    nodes: new Map(),
    states: new Map(),
    progress: 0,
    finished: false,
  };
  view = mine;
  const record = (window.__wfe = newRecord(executionId));
  history.replaceState(null, "", `#execution=${encodeURIComponent(executionId)}`);
  $("execution").hidden = false;
  $("execution-title").textContent = `Execution ${executionId}`;
  $("notifications").replaceChildren();
  $("completion").hidden = true;
  $("execution-status").textContent = "Loading…";
  updateProgressBar(0);
  try {
    const execution = await api("GET", `/api/executions/${encodeURIComponent(executionId)}`);
    if (view !== mine) return;
    mine.workflowId = execution.workflow_id;
    const name = workflowNames.get(execution.workflow_id) ?? execution.workflow_id;
    $("execution-workflow").textContent = `${name}, version ${execution.workflow_version}`;
    await drawDiagram(mine, execution);
    if (view !== mine) return;
    paint(mine, execution);
    if (!mine.finished) follow(mine, record);
  } catch (error) {
    if (view === mine) showErrorNotification(error.message);
  }
}

async function drawDiagram(mine, execution) {
  const base = `/api/workflows/${encodeURIComponent(execution.workflow_id)}/diagram`;
  let steps = execution.steps.map((step) => step);
  let mermaid;
  try {
    mermaid = (await api("GET", `${base}?version=${execution.workflow_version}`)).mermaid;
  } catch {
    // the version is gone from history (a plan without versioning): draw the current one
    mermaid = (await api("GET", base)).mermaid;
    const workflow = await api("GET", `/api/workflows/${encodeURIComponent(execution.workflow_id)}`);
    steps = workflow.steps.map((step) => ({ step_id: step.id, name: step.name }));
    showErrorNotification("The workflow changed since this execution: its current diagram is shown.");
  }
  $("mermaid").textContent = mermaid;
  // diagram.py names nodes s<index> by the step's position in the definition, which is the
  // order of the execution's steps
  steps.forEach((step, index) => mine.nodes.set(step.step_id, `s${index}`));
  try {
    mine.chart = render(mermaid, $("diagram"), { title: `Diagram of ${execution.workflow_id}` });
  } catch (error) {
    mine.chart = null;
    const fallback = document.createElement("pre");
    fallback.textContent = mermaid;
    $("diagram").replaceChildren(fallback);
    showErrorNotification(`The diagram could not be drawn: ${error.message}`);
  }
  const items = steps.map((step) => {
    const item = document.createElement("li");
    item.dataset.stepId = step.step_id;
    const label = document.createElement("span");
    label.textContent = step.name || step.step_id;
    const state = document.createElement("span");
    state.className = "state";
    item.append(label, " — ", state);
    return item;
  });
  $("steps").replaceChildren(...items);
  for (const step of steps) mark(mine, step.step_id, "pending");
}

function mark(mine, stepId, state) {
  const before = mine.states.get(stepId);
  if (before !== undefined && RANK[state] < RANK[before]) return false;
  mine.states.set(stepId, state);
  const node = mine.chart && mine.nodes.has(stepId) ? mine.chart.node(mine.nodes.get(stepId)) : null;
  if (node) {
    node.dataset.stepId = stepId;
    setState(node, state);
  }
  const item = [...$("steps").children].find((li) => li.dataset.stepId === stepId);
  if (item) {
    item.dataset.state = state;
    item.querySelector(".state").textContent = state;
  }
  return true;
}

function paint(mine, execution) {
  for (const step of execution.steps) {
    mark(mine, step.step_id, STEP_STATES[step.status] ?? "pending");
  }
  updateProgressBar(execution.progress ?? 0);
  $("execution-status").textContent = `Status: ${words(execution.status, "EXECUTION_STATUS_")}`;
  if (FINISHED.has(execution.status)) {
    showCompletionMessage(words(execution.status, "EXECUTION_STATUS_"), execution.result ?? null);
    if (mine.monitor) mine.monitor.close();
  }
}

async function refresh(mine) {
  try {
    const execution = await api("GET", `/api/executions/${encodeURIComponent(mine.id)}`);
    if (view === mine) paint(mine, execution);
  } catch (error) {
    if (view === mine) showErrorNotification(error.message);
  }
}

function follow(mine, record) {
  const { token, tenant } = credentials();
  const seen = (name, data) => record.callbacks.push({ callback: name, event: data.event, data });
  // Seed 004's usage example, with the page's functions it calls
  const monitor = monitorWorkflowExecution(mine.id, mine.workflowId, token, tenant, {
    onUpdate: (data) => {
      seen("onUpdate", data);
      console.log(`Progreso: ${data.progress * 100}% - Paso actual: ${data.current_step}`);
      updateProgressBar(data.progress);
      if (data.current_step) updateWorkflowDiagram(data.current_step, "running");
      $("execution-status").textContent = `Status: ${data.status}`;
    },
    onStepCompleted: (data) => {
      seen("onStepCompleted", data);
      console.log(`Paso completado: ${data.step_name}`);
      updateWorkflowDiagram(data.step_id, "completed");
    },
    onError: (data) => {
      seen("onError", data);
      console.error(`Error en paso ${data.error.step_name}: ${data.error.message}`);
      showErrorNotification(data.error.message);
      if (data.error.step_id) updateWorkflowDiagram(data.error.step_id, "failed");
    },
    onCompleted: (data) => {
      seen("onCompleted", data);
      console.log(`Workflow completado con estado: ${data.status}`);
      showCompletionMessage(data.status, data.output);
      monitor.close();
    },
    onConnectionError: () => {
      showErrorNotification("Error de conexión con el servidor de workflows");
    },
  });
  mine.monitor = monitor;
  monitor.socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    record.messages.push(data.event);
    if (data.event === "subscribed" && !record.subscribed) {
      record.subscribed = true;
      refresh(mine);
    } else if (record.subscribed && !record.streaming && data.event !== "error") {
      record.streaming = true; // the stream is open: nothing can fall between it and a read
      refresh(mine);
    }
  });
  monitor.socket.addEventListener("close", (event) => {
    record.closeCode = event.code;
  });
}

// The page functions seed 004's example calls

function updateProgressBar(progress) {
  const percent = Math.max(0, Math.min(100, Math.round(Number(progress) * 100)));
  const shown = view && percent < view.progress ? view.progress : percent;
  if (view) view.progress = shown;
  window.__wfe.progress = shown;
  $("progress").value = shown;
  $("progress").textContent = `${shown}%`;
  $("progress-text").textContent = `${shown}%`;
}

function updateWorkflowDiagram(stepId, state) {
  if (!view) return;
  window.__wfe.diagram.push([stepId, state]);
  mark(view, stepId, state);
}

function showErrorNotification(message) {
  const note = document.createElement("p");
  note.className = "error";
  note.textContent = message;
  $("notifications").append(note);
}

function showCompletionMessage(status, output) {
  if (!view || view.finished) return;
  view.finished = true;
  window.__wfe.completion = status;
  if (status === "completed") updateProgressBar(1);
  $("execution-status").textContent = `Execution ${status}.`;
  $("execution").dataset.status = status;
  $("result").textContent = JSON.stringify(output ?? null, null, 2);
  $("completion").hidden = false;
  loadExecutions().catch((error) => showErrorNotification(error.message));
}

// Wiring

$("sign-in-form").addEventListener("submit", signIn);
$("start-form").addEventListener("submit", start);
$("sign-out").addEventListener("click", signOut);
$("refresh").addEventListener("click", () =>
  loadExecutions().catch((error) => showErrorNotification(error.message)),
);
if (credentials().token && credentials().tenant) {
  enter().catch(() => signOut());
}
