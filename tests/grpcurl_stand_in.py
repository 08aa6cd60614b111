"""What grpcurl does in the README, for machines without it: `list`, and unary calls.

It knows only what the server's reflection says, as grpcurl does, and takes the flags the
README uses (`-plaintext`, `-H "name: value"`, `-d JSON` or `-d @` for standard input); any
other flag is an error, so a README command it runs is one grpcurl runs too. Responses print
as grpcurl prints them: the protobuf JSON mapping with the .proto's field names, indented.

    python -m tests.grpcurl_stand_in -plaintext ADDRESS list
    python -m tests.grpcurl_stand_in -plaintext -H ... -d @ ADDRESS package.Service/Method
"""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

USAGE = 2
TIMEOUT_SECONDS = 30.0


def parse(argv: list[str]) -> tuple[list[tuple[str, str]], str | None, list[str]]:
    """Headers, the request body (None: none given) and the positional arguments."""
    headers: list[tuple[str, str]] = []
    body: str | None = None
    plaintext = False
    positional: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "-plaintext":
            plaintext = True
        elif argument == "-H":
            name, _, value = next(arguments).partition(":")
            headers.append((name.strip().lower(), value.strip()))
        elif argument == "-d":
            body = next(arguments)
        elif argument.startswith("-"):
            raise SystemExit(f"grpcurl stand-in: {argument} is not a flag the README uses")
        else:
            positional.append(argument)
    if not plaintext:
        raise SystemExit("grpcurl stand-in: the README's server speaks plaintext (-plaintext)")
    return headers, body, positional


def main(argv: list[str]) -> int:
    headers, body, positional = parse(argv)
    if len(positional) != 2:
        print("usage: grpcurl -plaintext [-H H]... [-d D] ADDRESS (list | METHOD)", file=sys.stderr)
        return USAGE
    address, target = positional
    try:
        return call(address, target, headers, body)
    except grpc.RpcError as error:
        code = error.code()
        print(f"ERROR:\n  Code: {code.name}\n  Message: {error.details()}", file=sys.stderr)
        return 64 + int(code.value[0])


def call(address: str, target: str, headers: list[tuple[str, str]], body: str | None) -> int:
    """`list` the services, or call `target` and print its response."""
    with grpc.insecure_channel(address) as channel:
        reflection = ProtoReflectionDescriptorDatabase(channel)
        if target == "list":
            print("\n".join(sorted(reflection.get_services())))
            return 0
        service_name, _, method_name = target.rpartition("/")
        pool = descriptor_pool.DescriptorPool(reflection)
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request = message_factory.GetMessageClass(method.input_type)()
        if body is not None:
            json_format.Parse(sys.stdin.read() if body == "@" else body, request)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = rpc(request, metadata=headers, timeout=TIMEOUT_SECONDS)
    fields = json_format.MessageToDict(response, preserving_proto_field_name=True)
    print(json.dumps(fields, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
