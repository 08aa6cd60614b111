// flowchart.js: draws, as SVG, the Mermaid flowchart subset that `GetWorkflowDiagram` emits
// (service/workflows/diagram.py), so the live page needs no Mermaid distribution and works
// offline. It renders exactly this subset, one statement per line:
//
//   flowchart TD            the first line (TB is the same): a top-down chart
//   s0(["label"])           a stadium (input and output steps)
//   s1["label"]             a rectangle (tools and other steps)
//   s2{"label"}             a rhombus (conditions)
//   s3[["label"]]           a subroutine (loops, parallel branches)
//   s0 --> s1               an edge
//   s2 -->|"label"| s4      an edge with a label
//   classDef name fill:#e8f1ff,stroke:#3b6fd8,color:#0b1f44    (fill, stroke, color,
//                                                               stroke-width)
//   class s0,s1 name
//
// Labels are double-quoted on one line, with Mermaid's entity codes (#quot; #35; #96; and
// the other numeric and named ones). An edge may name a node that was not declared: it is
// drawn as a rectangle labelled with its id, as Mermaid does. Blank lines and `%%` comments
// are skipped; any other line throws a FlowchartError naming it, so a page shows the Mermaid
// text rather than a wrong drawing.
//
// Layout, top-down by graph depth: the edges that close a cycle (found by a depth-first walk
// from the nodes nothing points to, in declaration order) are set aside; each node's row is
// the longest path to it over the other edges; each row is ordered by its nodes' parents'
// positions and centred. An edge runs from its node's bottom to the other's top; one that
// closes a cycle, or stays within its row, curves around the right-hand side.

const SVG = "http://www.w3.org/2000/svg";
const FONT = "14px system-ui, sans-serif";
const NODE_HEIGHT = 44;
const RHOMBUS_HEIGHT = 72;
const MIN_WIDTH = 96;
const PADDING = 18;
const ROW_GAP = 64;
const COLUMN_GAP = 40;
const MARGIN = 24;
const LOOP_ROOM = 48;
const MAX_LABEL = 48;
const BADGE_ROOM = 16; // the state's badge sits in the top right-hand corner
const MAX_EDGE_LABEL = 36;
const ID = "[A-Za-z_][A-Za-z0-9_-]*";
const SHAPES = [
  ["stadium", '(["', '"])'],
  ["subroutine", '[["', '"]]'],
  ["rectangle", '["', '"]'],
  ["rhombus", '{"', '"}'],
];
const STYLE_KEYS = new Set(["fill", "stroke", "color", "stroke-width"]);
const NAMED_ENTITIES = { quot: '"', amp: "&", lt: "<", gt: ">", apos: "'", nbsp: "\u00a0" };
const HEADER = /^flowchart\s+(TD|TB)$/;
const NODE_ID = new RegExp(`^${ID}`);
const EDGE = new RegExp(`^(${ID})\\s*-->(?:\\|"([^"]*)"\\|)?\\s*(${ID})$`);
const CLASS_DEF = /^classDef\s+([A-Za-z_][\w-]*)\s+(\S+)$/;
const CLASS = new RegExp(`^class\\s+(${ID}(?:\\s*,\\s*${ID})*)\\s+([A-Za-z_][\\w-]*)$`);

let charts = 0;

export class FlowchartError extends Error {
  constructor(message, line) {
    super(line ? `line ${line}: ${message}` : message);
    this.name = "FlowchartError";
    this.line = line;
  }
}

/** Mermaid's entity codes in a label, as the characters they stand for. */
export function decodeEntities(text) {
  return text.replace(/#(\d+|[a-z]+);/g, (whole, code) => {
    if (/^\d+$/.test(code)) return String.fromCodePoint(Number(code));
    return NAMED_ENTITIES[code] ?? whole;
  });
}

/** The chart's nodes (declaration order), edges and class definitions. */
export function parse(source) {
  const lines = source.split(/\r?\n/);
  const nodes = new Map();
  const edges = [];
  const classDefs = new Map();
  let header = false;
  lines.forEach((raw, index) => {
    const line = raw.trim();
    const number = index + 1;
    if (!line || line.startsWith("%%")) return;
    if (!header) {
      if (!HEADER.test(line)) throw new FlowchartError('expected "flowchart TD"', number);
      header = true;
      return;
    }
    const edge = EDGE.exec(line);
    if (edge) {
      const [, from, label, to] = edge;
      for (const id of [from, to]) {
        if (!nodes.has(id)) nodes.set(id, { id, label: id, shape: "rectangle", classes: [] });
      }
      edges.push({ from, to, label: label === undefined ? null : decodeEntities(label) });
      return;
    }
    const classDef = CLASS_DEF.exec(line);
    if (classDef) {
      classDefs.set(classDef[1], styles(classDef[2], number));
      return;
    }
    const classLine = CLASS.exec(line);
    if (classLine) {
      for (const id of classLine[1].split(",").map((part) => part.trim())) {
        nodes.get(id)?.classes.push(classLine[2]);
      }
      return;
    }
    const node = declaration(line);
    if (!node) throw new FlowchartError(`not in the supported subset: ${line}`, number);
    const known = nodes.get(node.id);
    if (known) Object.assign(known, { label: node.label, shape: node.shape });
    else nodes.set(node.id, { ...node, classes: [] });
  });
  if (!header) throw new FlowchartError('expected "flowchart TD"', 1);
  return { nodes: [...nodes.values()], edges, classDefs };
}

function declaration(line) {
  const id = NODE_ID.exec(line)?.[0];
  if (!id) return null;
  const rest = line.slice(id.length);
  for (const [shape, open, close] of SHAPES) {
    if (rest.startsWith(open) && rest.endsWith(close)) {
      const label = rest.slice(open.length, rest.length - close.length);
      if (!label.includes('"')) return { id, label: decodeEntities(label), shape };
    }
  }
  return null;
}

function styles(text, number) {
  const found = {};
  for (const part of text.split(",")) {
    const [key, value, extra] = part.split(":");
    if (!STYLE_KEYS.has(key) || !value || extra !== undefined) {
      throw new FlowchartError(`unsupported style ${part}`, number);
    }
    found[key] = value;
  }
  return found;
}

/** Text widths with the chart's font, from a canvas. */
export function canvasMeasure() {
  const context = document.createElement("canvas").getContext("2d");
  context.font = FONT;
  return (text) => context.measureText(text).width;
}

function shortened(text, limit) {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** Where every node and edge goes: rows by graph depth, top-down. */
export function layout(graph, measure) {
  const { nodes, edges } = graph;
  const position = new Map(nodes.map((node, index) => [node.id, index]));
  const outgoing = nodes.map(() => []);
  const pointedTo = nodes.map(() => false);
  edges.forEach((edge, number) => {
    outgoing[position.get(edge.from)].push(number);
    pointedTo[position.get(edge.to)] = true;
  });
  const closing = cycleEdges(nodes, edges, outgoing, position, pointedTo);
  const row = rows(nodes, edges, outgoing, position, closing);
  const byRow = [];
  nodes.forEach((_, index) => (byRow[row[index]] ??= []).push(index));
  orderRows(byRow, edges, position, closing);

  const boxes = nodes.map((node) => box(node, measure));
  const rowWidths = byRow.map(
    (members) =>
      members.reduce((sum, index) => sum + boxes[index].width, 0) +
      COLUMN_GAP * (members.length - 1),
  );
  const contentWidth = Math.max(MIN_WIDTH, ...rowWidths);
  let top = MARGIN;
  byRow.forEach((members, number) => {
    const height = Math.max(...members.map((index) => boxes[index].height));
    let left = MARGIN + (contentWidth - rowWidths[number]) / 2;
    for (const index of members) {
      const placed = boxes[index];
      placed.x = left + placed.width / 2;
      placed.y = top + height / 2;
      placed.row = number;
      left += placed.width + COLUMN_GAP;
    }
    top += height + ROW_GAP;
  });
  let width = MARGIN * 2 + contentWidth;
  const height = top - ROW_GAP + MARGIN;
  const routed = edges.map((edge, number) => {
    const from = boxes[position.get(edge.from)];
    const to = boxes[position.get(edge.to)];
    const around = closing.has(number) || from.row >= to.row;
    return { ...edge, around, ...(around ? aroundPath(from, to, number) : downPath(from, to)) };
  });
  spreadLabels(routed);
  for (const edge of routed) {
    const labelWidth = edge.label ? measure(shortened(edge.label, MAX_EDGE_LABEL)) + 12 : 0;
    edge.labelWidth = labelWidth;
    width = Math.max(width, edge.reach + MARGIN, edge.labelX + labelWidth / 2 + MARGIN);
  }
  return {
    width: Math.ceil(width),
    height: Math.ceil(height),
    nodes: nodes.map((node, index) => ({ ...node, ...boxes[index] })),
    edges: routed,
  };
}

function cycleEdges(nodes, edges, outgoing, position, pointedTo) {
  const state = nodes.map(() => 0); // 0 unseen, 1 on the walk, 2 done
  const closing = new Set();
  const starts = [
    ...nodes.map((_, index) => index).filter((index) => !pointedTo[index]),
    ...nodes.map((_, index) => index),
  ];
  for (const start of starts) {
    if (state[start]) continue;
    state[start] = 1;
    const walk = [[start, 0]];
    while (walk.length) {
      const step = walk[walk.length - 1];
      const [current, next] = step;
      if (next < outgoing[current].length) {
        step[1] += 1;
        const number = outgoing[current][next];
        const target = position.get(edges[number].to);
        if (state[target] === 1) closing.add(number);
        else if (state[target] === 0) {
          state[target] = 1;
          walk.push([target, 0]);
        }
      } else {
        state[current] = 2;
        walk.pop();
      }
    }
  }
  return closing;
}

function rows(nodes, edges, outgoing, position, closing) {
  const waiting = nodes.map(() => 0);
  edges.forEach((edge, number) => {
    if (!closing.has(number)) waiting[position.get(edge.to)] += 1;
  });
  const row = nodes.map(() => 0);
  const ready = nodes.map((_, index) => index).filter((index) => waiting[index] === 0);
  while (ready.length) {
    const current = ready.shift();
    for (const number of outgoing[current]) {
      if (closing.has(number)) continue;
      const target = position.get(edges[number].to);
      row[target] = Math.max(row[target], row[current] + 1);
      waiting[target] -= 1;
      if (waiting[target] === 0) ready.push(target);
    }
  }
  return row;
}

function orderRows(byRow, edges, position, closing) {
  const column = new Map();
  byRow.forEach((members, number) => {
    if (number > 0) {
      const key = new Map(
        members.map((index, order) => {
          const parents = edges
            .filter((edge, k) => !closing.has(k) && position.get(edge.to) === index)
            .map((edge) => column.get(position.get(edge.from)))
            .filter((value) => value !== undefined);
          const mean = parents.length
            ? parents.reduce((sum, value) => sum + value, 0) / parents.length
            : order / Math.max(1, members.length - 1);
          return [index, mean];
        }),
      );
      members.sort((a, b) => key.get(a) - key.get(b) || a - b);
    }
    members.forEach((index, order) =>
      column.set(index, members.length > 1 ? order / (members.length - 1) : 0.5),
    );
  });
}

function box(node, measure) {
  const text = shortened(node.label, MAX_LABEL);
  const textWidth = measure(text);
  if (node.shape === "rhombus") {
    return { text, width: Math.max(MIN_WIDTH, textWidth * 1.3 + 40), height: RHOMBUS_HEIGHT };
  }
  const rounding = node.shape === "stadium" ? NODE_HEIGHT / 2 : node.shape === "subroutine" ? 16 : 0;
  const extra = rounding + BADGE_ROOM;
  return { text, width: Math.max(MIN_WIDTH, textWidth + PADDING * 2 + extra), height: NODE_HEIGHT };
}

function downPath(from, to) {
  const [sx, sy, tx, ty] = [from.x, from.y + from.height / 2, to.x, to.y - to.height / 2];
  const bend = (ty - sy) / 2;
  return {
    path: `M ${sx} ${sy} C ${sx} ${sy + bend} ${tx} ${ty - bend} ${tx} ${ty}`,
    labelX: (sx + tx) / 2,
    labelY: (sy + ty) / 2,
    reach: Math.max(sx, tx),
  };
}

function aroundPath(from, to, number) {
  const [sx, sy, tx, ty] = [from.x + from.width / 2, from.y, to.x + to.width / 2, to.y];
  if (from === to) {
    const out = sx + LOOP_ROOM;
    return {
      path: `M ${sx} ${sy - 8} C ${out} ${sy - 36} ${out} ${sy + 36} ${tx} ${ty + 8}`,
      labelX: out,
      labelY: sy,
      reach: out + 8,
    };
  }
  const out = Math.max(sx, tx) + LOOP_ROOM + 8 * (number % 4);
  return {
    path: `M ${sx} ${sy} C ${out} ${sy} ${out} ${ty} ${tx} ${ty}`,
    labelX: 0.125 * (sx + tx) + 0.75 * out,
    labelY: (sy + ty) / 2,
    reach: out,
  };
}

function spreadLabels(edges) {
  const seen = new Map();
  for (const edge of edges) {
    if (!edge.label) continue;
    const key = `${Math.round(edge.labelX)}:${Math.round(edge.labelY)}`;
    const count = seen.get(key) ?? 0;
    seen.set(key, count + 1);
    edge.labelY += count * 22;
  }
}

function element(name, attributes = {}, text) {
  const created = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) created.setAttribute(key, String(value));
  if (text !== undefined) created.textContent = text;
  return created;
}

function shape(node) {
  const { x, y, width, height } = node;
  const [left, top] = [x - width / 2, y - height / 2];
  const common = { class: "node-shape" };
  if (node.shape === "rhombus") {
    const points = `${x},${top} ${left + width},${y} ${x},${top + height} ${left},${y}`;
    return [element("polygon", { ...common, points })];
  }
  const radius = node.shape === "stadium" ? height / 2 : 4;
  const outline = element("rect", { ...common, x: left, y: top, width, height, rx: radius });
  if (node.shape !== "subroutine") return [outline];
  return [
    outline,
    element("line", { class: "node-inner", x1: left + 8, y1: top, x2: left + 8, y2: top + height }),
    element("line", {
      class: "node-inner",
      x1: left + width - 8,
      y1: top,
      x2: left + width - 8,
      y2: top + height,
    }),
  ];
}

function badgeInset(node) {
  if (node.shape === "rhombus") return node.width / 4;
  return node.shape === "stadium" ? node.height / 2 : 14;
}

function applyStyles(group, node, classDefs) {
  const style = Object.assign({}, ...node.classes.map((name) => classDefs.get(name) ?? {}));
  for (const part of group.querySelectorAll(".node-shape")) {
    if (style.fill) part.setAttribute("fill", style.fill);
    if (style.stroke) part.setAttribute("stroke", style.stroke);
    if (style["stroke-width"]) part.setAttribute("stroke-width", style["stroke-width"]);
  }
  if (style.color) group.querySelector(".node-label").setAttribute("fill", style.color);
}

/**
 * Draws the chart `source` into `container` (replacing what it holds).
 * Returns the SVG element, the parsed graph and `node(id)`, a node's group element.
 */
export function render(source, container, { title = "Workflow diagram", measure } = {}) {
  const graph = parse(source);
  const placed = layout(graph, measure ?? canvasMeasure());
  const chart = (charts += 1);
  const svg = element("svg", {
    class: "flowchart",
    viewBox: `0 0 ${placed.width} ${placed.height}`,
    width: placed.width,
    height: placed.height,
    role: "img",
    "aria-labelledby": `flowchart-${chart}-title flowchart-${chart}-desc`,
  });
  svg.append(
    element("title", { id: `flowchart-${chart}-title` }, title),
    element(
      "desc",
      { id: `flowchart-${chart}-desc` },
      `${placed.nodes.length} steps and ${placed.edges.length} connections, top to bottom.`,
    ),
  );
  const marker = element("marker", {
    id: `flowchart-${chart}-arrow`,
    viewBox: "0 0 10 10",
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(element("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "edge-arrowhead" }));
  const defs = element("defs");
  defs.append(marker);
  const edgeLayer = element("g", { class: "edges" });
  for (const edge of placed.edges) {
    const group = element("g", { class: edge.around ? "edge edge-around" : "edge" });
    group.dataset.from = edge.from;
    group.dataset.to = edge.to;
    group.append(
      element("path", {
        class: "edge-line",
        d: edge.path,
        "marker-end": `url(#flowchart-${chart}-arrow)`,
      }),
    );
    if (edge.label) {
      const label = element("g", { class: "edge-label" });
      label.append(
        element("title", {}, edge.label),
        element("rect", {
          x: edge.labelX - edge.labelWidth / 2,
          y: edge.labelY - 11,
          width: edge.labelWidth,
          height: 22,
          rx: 4,
        }),
        element(
          "text",
          { x: edge.labelX, y: edge.labelY, "text-anchor": "middle", "dominant-baseline": "central" },
          shortened(edge.label, MAX_EDGE_LABEL),
        ),
      );
      group.append(label);
    }
    edgeLayer.append(group);
  }
  const nodeLayer = element("g", { class: "nodes" });
  for (const node of placed.nodes) {
    const group = element("g", { class: "node" });
    group.dataset.nodeId = node.id;
    group.dataset.shape = node.shape;
    group.dataset.label = node.label;
    if (node.classes.length) group.dataset.classes = node.classes.join(" ");
    group.append(element("title", {}, node.label), ...shape(node));
    group.append(
      element(
        "text",
        {
          class: "node-label",
          x: node.x,
          y: node.y,
          "text-anchor": "middle",
          "dominant-baseline": "central",
        },
        node.text,
      ),
      element("text", {
        class: "node-badge",
        x: node.x + node.width / 2 - badgeInset(node),
        y: node.y - node.height / 2 + (node.shape === "rhombus" ? node.height / 4 : 12),
        "text-anchor": "middle",
        "dominant-baseline": "central",
        "aria-hidden": "true",
      }),
    );
    applyStyles(group, node, graph.classDefs);
    nodeLayer.append(group);
  }
  svg.append(defs, edgeLayer, nodeLayer);
  container.replaceChildren(svg);
  return {
    svg,
    graph,
    node: (id) => nodeLayer.querySelector(`[data-node-id="${CSS.escape(id)}"]`),
  };
}

const BADGES = {
  pending: "",
  running: "▶",
  completed: "✓",
  failed: "✗",
  skipped: "–",
  cancelled: "■",
};

/** Marks a node with a state: `data-state`, a `state-<state>` class, a badge and its title. */
export function setState(group, state) {
  for (const name of [...group.classList]) {
    if (name.startsWith("state-")) group.classList.remove(name);
  }
  group.classList.add(`state-${state}`);
  group.dataset.state = state;
  group.querySelector(".node-badge").textContent = BADGES[state] ?? "";
  group.querySelector("title").textContent = `${group.dataset.label}: ${state}`;
}
