// The API docs page: renders /api/openapi.json (gateway/openapi.py) without any library:
// authentication, the error body, every operation (path, method, parameters, request body,
// responses) by service, then every schema. Descriptions are the protos' comments, written
// as a little Markdown: paragraphs, `- ` lists and `code`.

const METHODS = ["get", "put", "post", "delete", "patch"];
const REF = "#/components/schemas/";

function node(tag, attributes = {}, ...children) {
  const created = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "className") created.className = value;
    else created.setAttribute(key, value);
  }
  created.append(...children.filter((child) => child !== null && child !== undefined));
  return created;
}

function inline(text) {
  const parts = String(text).split("`");
  return parts.map((part, index) => (index % 2 ? node("code", {}, part) : part));
}

function markdown(text) {
  const holder = node("div", { className: "description" });
  for (const paragraph of String(text ?? "").split(/\n\s*\n/)) {
    const lines = paragraph.split("\n").filter((line) => line.trim());
    if (!lines.length) continue;
    if (lines.every((line) => line.trimStart().startsWith("- "))) {
      holder.append(
        node("ul", {}, ...lines.map((line) => node("li", {}, ...inline(line.trim().slice(2))))),
      );
    } else {
      holder.append(node("p", {}, ...inline(lines.join(" "))));
    }
  }
  return holder;
}

function schemaId(name) {
  return `schema-${name}`;
}

function shortName(name) {
  return name.split(".").pop();
}

function resolve(documentRoot, schema) {
  if (schema?.$ref?.startsWith(REF)) return documentRoot.components.schemas[schema.$ref.slice(REF.length)];
  return schema;
}

/** A schema's type as text and links: `string (int64)`, `array of Workflow`, ... */
function typeOf(schema) {
  if (!schema || Object.keys(schema).filter((key) => key !== "description").length === 0) {
    return [node("span", { className: "type" }, "any JSON")];
  }
  if (schema.$ref) {
    const name = schema.$ref.slice(REF.length);
    return [node("a", { href: `#${schemaId(name)}`, className: "type" }, shortName(name))];
  }
  if (schema.type === "array") return [node("span", { className: "type" }, "array of "), ...typeOf(schema.items)];
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return [node("span", { className: "type" }, "map of string to "), ...typeOf(schema.additionalProperties)];
  }
  if (schema.type === "object" && !schema.properties) {
    return [node("span", { className: "type" }, "object (any)")];
  }
  let text = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type ?? "any JSON";
  if (schema.format) text += ` (${schema.format})`;
  if (schema.enum) text += `: ${schema.enum.join(", ")}`;
  return [node("span", { className: "type" }, text)];
}

function propertiesTable(schema, caption) {
  const rows = Object.entries(schema.properties ?? {}).map(([name, property]) =>
    node(
      "tr",
      {},
      node("td", {}, name, (schema.required ?? []).includes(name) ? node("span", { className: "required" }, " required") : null),
      node("td", {}, ...typeOf(property)),
      node("td", {}, markdown(property.description ?? "")),
    ),
  );
  if (!rows.length) return node("p", { className: "muted" }, "No fields.");
  return node(
    "table",
    { className: "schema-table" },
    node("caption", { className: "visually-hidden" }, caption),
    node("thead", {}, node("tr", {}, ...["Field", "Type", "Description"].map((h) => node("th", { scope: "col" }, h)))),
    node("tbody", {}, ...rows),
  );
}

function oneofNote(schema) {
  const groups = Object.entries(schema["x-oneofs"] ?? {});
  if (!groups.length) return null;
  return node(
    "ul",
    {},
    ...groups.map(([name, members]) =>
      node("li", {}, "oneof ", node("code", {}, name), ": at most one of ", ...members.flatMap((member, index) => [index ? ", " : "", node("code", {}, member)])),
    ),
  );
}

function parameters(documentRoot, operation) {
  const resolved = (operation.parameters ?? []).map((parameter) => {
    if (!parameter.$ref) return parameter;
    return documentRoot.components.parameters[parameter.$ref.split("/").pop()];
  });
  if (!resolved.length) return null;
  const rows = resolved.map((parameter) =>
    node(
      "tr",
      {},
      node("td", {}, parameter.name, parameter.required ? node("span", { className: "required" }, " required") : null),
      node("td", {}, parameter.in),
      node("td", {}, ...typeOf(parameter.schema)),
      node("td", {}, markdown(parameter.description ?? "")),
    ),
  );
  return node(
    "section",
    {},
    node("h4", {}, "Parameters"),
    node(
      "table",
      { className: "schema-table" },
      node("thead", {}, node("tr", {}, ...["Name", "In", "Type", "Description"].map((h) => node("th", { scope: "col" }, h)))),
      node("tbody", {}, ...rows),
    ),
  );
}

function requestBody(operation) {
  const body = operation.requestBody;
  if (!body) return null;
  const [mediaType, content] = Object.entries(body.content)[0];
  const schema = content.schema;
  const parts = [
    node("h4", {}, "Request body"),
    node("p", {}, node("code", {}, mediaType), body.required ? " (required): " : ": ", ...typeOf(schema.$ref ? { $ref: schema.$ref } : schema)),
    markdown(body.description ?? ""),
  ];
  if (schema.description && schema.$ref) parts.push(markdown(schema.description));
  if (!schema.$ref && schema.properties) parts.push(propertiesTable(schema, "Request body fields"));
  return node("section", {}, ...parts);
}

function responses(documentRoot, operation) {
  const items = Object.entries(operation.responses).map(([status, response]) => {
    const named = response.$ref ? response.$ref.split("/").pop() : null;
    const resolved = named ? documentRoot.components.responses[named] : response;
    const [mediaType, content] = Object.entries(resolved.content ?? {})[0] ?? [];
    const schema = content?.["x-event-data"] ?? content?.schema;
    return node(
      "li",
      {},
      node("strong", {}, status),
      " ",
      mediaType ? node("code", {}, mediaType) : null,
      schema ? " " : null,
      ...(schema ? (content["x-event-data"] ? [node("span", {}, "events of "), ...typeOf(schema)] : typeOf(schema)) : []),
      named ? node("span", { className: "muted" }, ` (${named} body)`) : markdown(resolved.description),
    );
  });
  return node("section", {}, node("h4", {}, "Responses"), node("ul", {}, ...items));
}

function operationCard(documentRoot, path, method, operation) {
  const security = (operation.security ?? documentRoot.security ?? [])
    .map((requirement) => Object.keys(requirement).join(" + "))
    .join(" or ");
  return node(
    "article",
    { className: "operation card", id: `op-${operation.operationId}`, "aria-labelledby": `op-${operation.operationId}-title` },
    node("h3", { id: `op-${operation.operationId}-title` }, node("span", { className: `verb ${method}` }, method.toUpperCase()), path),
    node("p", {}, ...inline(operation.summary ?? "")),
    operation.description ? markdown(operation.description) : null,
    node(
      "p",
      { className: "muted" },
      "gRPC ",
      node("code", {}, operation["x-grpc-method"] ?? ""),
      security ? ` · credentials: ${security}` : "",
    ),
    parameters(documentRoot, operation),
    requestBody(operation),
    responses(documentRoot, operation),
  );
}

function schemaSection(name, schema) {
  return node(
    "section",
    { className: "schema card", id: schemaId(name), "aria-labelledby": `${schemaId(name)}-title` },
    node("h3", { id: `${schemaId(name)}-title` }, node("code", {}, name)),
    markdown(schema.description ?? ""),
    schema.enum ? node("p", {}, ...typeOf({ ...schema, description: undefined })) : null,
    oneofNote(schema),
    schema.properties ? propertiesTable(schema, `Fields of ${name}`) : null,
  );
}

function security(documentRoot) {
  const schemes = Object.entries(documentRoot.components.securitySchemes ?? {});
  return node(
    "section",
    { className: "card", id: "authentication", "aria-labelledby": "authentication-title" },
    node("h2", { id: "authentication-title" }, "Authentication"),
    node(
      "ul",
      {},
      ...schemes.map(([name, scheme]) =>
        node(
          "li",
          {},
          node("strong", {}, name),
          ": ",
          scheme.type === "http" ? node("code", {}, `Authorization: Bearer <${scheme.bearerFormat ?? "token"}>`) : node("code", {}, `${scheme.name}: <value>`),
          " — ",
          ...inline(scheme.description ?? ""),
        ),
      ),
    ),
  );
}

function errors(documentRoot) {
  const schema = documentRoot.components.schemas.Error;
  const inner = schema.properties.error;
  return node(
    "section",
    { className: "card", id: "errors", "aria-labelledby": "errors-title" },
    node("h2", { id: "errors-title" }, "Errors"),
    markdown(schema.description),
    node("pre", {}, JSON.stringify({ error: { code: "workflow_not_found", message: "…", details: {}, request_id: "…" } }, null, 2)),
    propertiesTable(inner, "Fields of the error object"),
  );
}

function render(documentRoot) {
  const { info, paths, tags = [] } = documentRoot;
  const byTag = new Map(tags.map((tag) => [tag.name, []]));
  for (const [path, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const tag = operation.tags?.[0] ?? "Other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, operation]);
    }
  }
  const main = document.getElementById("document");
  const toc = document.getElementById("toc");
  main.append(
    node("section", { className: "card", "aria-labelledby": "intro-title" }, node("h2", { id: "intro-title" }, `${info.title} ${info.version}`), markdown(info.description)),
    security(documentRoot),
    errors(documentRoot),
  );
  toc.append(node("h2", {}, "Contents"), node("ul", {}, node("li", {}, node("a", { href: "#authentication" }, "Authentication")), node("li", {}, node("a", { href: "#errors" }, "Errors"))));
  for (const [tag, operations] of byTag) {
    const description = tags.find((known) => known.name === tag)?.description;
    main.append(
      node("section", { id: `tag-${tag}`, "aria-labelledby": `tag-${tag}-title` },
        node("h2", { id: `tag-${tag}-title` }, tag),
        description ? markdown(description) : null,
        ...operations.map(([path, method, operation]) => operationCard(documentRoot, path, method, operation))),
    );
    toc.append(
      node("h3", {}, node("a", { href: `#tag-${tag}` }, tag)),
      node("ul", {}, ...operations.map(([path, method, operation]) => node("li", {}, node("a", { href: `#op-${operation.operationId}` }, `${method.toUpperCase()} ${path}`)))),
    );
  }
  const schemas = Object.entries(documentRoot.components.schemas);
  main.append(node("section", { id: "schemas", "aria-labelledby": "schemas-title" }, node("h2", { id: "schemas-title" }, "Schemas"), ...schemas.map(([name, schema]) => schemaSection(name, resolve(documentRoot, schema)))));
  toc.append(node("h3", {}, node("a", { href: "#schemas" }, "Schemas")), node("ul", {}, ...schemas.map(([name]) => node("li", {}, node("a", { href: `#${schemaId(name)}` }, shortName(name))))));
  document.getElementById("loading").remove();
  document.body.dataset.ready = "true";
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
}

fetch("/api/openapi.json")
  .then((response) => {
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    return response.json();
  })
  .then(render)
  .catch((error) => {
    document.getElementById("loading").textContent = `Could not load the OpenAPI document: ${error.message}`;
    document.body.dataset.ready = "error";
  });
