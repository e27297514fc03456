"""A client that knows nothing of annals but its address: it finds the API
through gRPC server reflection (v1alpha) alone, builds its messages from
the descriptors the server sends, and checks the article's answers.

    python article_client.py 127.0.0.1:50051
"""

import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "annals.v1.TimelineService"


def main(address):
    channel = grpc.insecure_channel(address)
    reflection = ProtoReflectionDescriptorDatabase(channel)
    services = list(reflection.get_services())
    assert SERVICE in services, f"reflection lists {services}"
    pool = descriptor_pool.DescriptorPool(reflection)
    service = pool.FindServiceByName(SERVICE)

    def call(name, **fields):
        method = service.FindMethodByName(name)
        request = message_factory.GetMessageClass(method.input_type)(**fields)
        reply = message_factory.GetMessageClass(method.output_type)
        invoke = channel.unary_unary(
            f"/{SERVICE}/{name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=reply.FromString,
        )
        return invoke(request, timeout=10)

    def kinds_between(a, b, at):
        reply = call("ListRelations", entity=a, counterpart=b, at=at)
        return sorted(relation.kind for relation in reply.relations)

    checks = [
        (kinds_between("china", "north-korea", "1949-10-05"), []),
        (kinds_between("china", "north-korea", "1951-06-01"),
         ["co_belligerent", "diplomatic_relations"]),
        (kinds_between("china", "north-korea", "1953-08-01"), ["diplomatic_relations"]),
        (kinds_between("china", "north-korea", "1962-01-01"),
         ["alliance", "diplomatic_relations"]),
    ]
    north_korea = call("GetEntity", id="DPRK", at="2012-06-01")
    leader = {attribute.key: attribute.value for attribute in north_korea.attributes}
    checks.append((north_korea.entity.id, "north-korea"))
    checks.append((leader.get("leader"), "kim-jong-un"))

    # A bad request: INVALID_ARGUMENT, and its google.rpc.BadRequest
    # details, read with descriptors reflection serves too (as grpcurl
    # reads them).
    try:
        call("ListRelations", entity="china", at="1950-13")
        checks.append(("no error", "INVALID_ARGUMENT"))
    except grpc.RpcError as error:
        checks.append((error.code(), grpc.StatusCode.INVALID_ARGUMENT))
        trailers = dict(error.trailing_metadata() or ())
        status_type = pool.FindMessageTypeByName("google.rpc.Status")
        status = message_factory.GetMessageClass(status_type).FromString(
            trailers.get("grpc-status-details-bin", b"")
        )
        violations = []
        for detail in status.details:
            detail_type = pool.FindMessageTypeByName(detail.type_url.split("/")[-1])
            message = message_factory.GetMessageClass(detail_type).FromString(detail.value)
            if detail_type.full_name == "google.rpc.BadRequest":
                violations += [violation.field for violation in message.field_violations]
        checks.append((violations, ["at"]))

    failed = [(got, wanted) for got, wanted in checks if got != wanted]
    for got, wanted in failed:
        print(f"wrong answer: {got!r}, wanted {wanted!r}", file=sys.stderr)
    print(f"{len(checks) - len(failed)} of {len(checks)} answers right, via {len(services)} services")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
