"""JSON Schemas of proto messages, as the gateway writes and reads them (proto3 JSON mapping).

OpenAPI 3.1 schemas are JSON Schema 2020-12. They describe what `gateway.transcode` does:
field names are the proto names (`input_schema`); 64-bit integers are strings (`"version":
"3"`); enums are their value names; `Timestamp` is an RFC 3339 `date-time`, `Duration`
seconds with an `s` ("1.5s"), `FieldMask` field names joined by commas; `Struct` is any
object, `ListValue` any list and `Value` any JSON value. Messages and enums are components
named by their full proto name (`wfe.v1.Workflow`); well-known types are written inline.

A oneof is documented (the members' descriptions name it, `x-oneofs` lists them) and checked:
at most one member is present, as json_format prints only the one that is set.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

Schema = dict[str, Any]
REF_PREFIX: Final = "#/components/schemas/"

INT64: Final[Schema] = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
UINT64: Final[Schema] = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
SCALARS: Final[Mapping[int, Schema]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
WELL_KNOWN: Final[Mapping[str, Schema]] = {
    "google.protobuf.Struct": {"type": "object", "description": "Any JSON object."},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}, "description": "Any JSON list."},
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "examples": ["2026-01-31T12:00:00Z"],
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
        "examples": ["1.5s"],
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Field names separated by commas.",
        "examples": ["name,steps"],
    },
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": INT64,
    "google.protobuf.UInt64Value": UINT64,
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "uint32", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}


def ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


class Schemas:
    """The component schemas of the messages and enums named so far, built on first use.

    Args:
        comments: Descriptions by full proto name (`gateway.comments`).
    """

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.components: dict[str, Schema] = {}
        self._comments = comments

    def of(self, message: Descriptor) -> Schema:
        """A reference to `message`'s schema (inline for a well-known type)."""
        if message.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[message.full_name])
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # a placeholder: messages may recurse
            self.components[message.full_name] = self.message(message)
        return ref(message.full_name)

    def enum(self, enum: EnumDescriptor) -> Schema:
        """A reference to `enum`'s schema: its value names, each described."""
        if enum.full_name not in self.components:
            values = "\n".join(
                f"- `{value.name}`: {self._comments[f'{enum.full_name}.{value.name}']}"
                for value in enum.values
                if f"{enum.full_name}.{value.name}" in self._comments
            )
            schema: Schema = {"type": "string", "enum": [value.name for value in enum.values]}
            parts = (self._comments.get(enum.full_name, ""), values)
            description = "\n\n".join(part for part in parts if part)
            if description:
                schema["description"] = description
            self.components[enum.full_name] = schema
        return ref(enum.full_name)

    def message(self, message: Descriptor, without: Collection[str] = ()) -> Schema:
        """`message` as an object schema, leaving out the fields named in `without`."""
        schema: Schema = {"type": "object"}
        if message.full_name in self._comments:
            schema["description"] = self._comments[message.full_name]
        oneofs = _real_oneofs(message)
        properties = {}
        for field in message.fields:
            if field.name in without:
                continue
            described = self.field(field)
            oneof = field.containing_oneof
            if oneof is not None and oneof.name in oneofs:
                note = f"Part of the oneof `{oneof.name}`: at most one of its fields is set."
                described["description"] = " ".join(
                    part for part in (described.get("description"), note) if part
                )
            properties[field.name] = described
        schema["properties"] = properties
        members = {
            name: [f.name for f in fields if f.name not in without]
            for name, fields in oneofs.items()
        }
        checks = [_at_most_one(names) for names in members.values() if len(names) > 1]
        if members:
            schema["x-oneofs"] = members
        if len(checks) == 1:
            schema.update(checks[0])
        elif checks:
            schema["allOf"] = checks
        return schema

    def field(self, field: FieldDescriptor) -> Schema:
        """The schema of one field's JSON value, with the field's description."""
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            schema: Schema = {
                "type": "object",
                "additionalProperties": self._single(entry.fields_by_name["value"]),
            }
        elif field.is_repeated:
            schema = {"type": "array", "items": self._single(field)}
        else:
            schema = self._single(field)
        description = self._comments.get(field.full_name)
        if description:
            schema["description"] = description
        return schema

    def _single(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None:
            return self.of(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(SCALARS[field.type])


def _real_oneofs(message: Descriptor) -> dict[str, list[FieldDescriptor]]:
    """The message's oneofs by name, without proto3 `optional`'s synthetic ones."""
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    synthetic = {field.oneof_index for field in proto.field if field.proto3_optional}
    return {
        oneof.name: list(oneof.fields) for oneof in message.oneofs if oneof.index not in synthetic
    }


def _at_most_one(names: list[str]) -> Schema:
    """Exactly one of: each member alone, or none of them."""
    present = [{"required": [name]} for name in names]
    return {"oneOf": [*present, {"not": {"anyOf": present}}]}
