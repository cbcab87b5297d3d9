#!/usr/bin/env bash
# Rebuilds tsoda/config/protos/pipeline.desc (a serialized FileDescriptorSet) from pipeline.proto.
# A descriptor set works with every protobuf runtime, unlike generated *_pb2.py modules,
# which pin the runtime version they were generated for. grpcio-tools is installed into a
# throw-away environment so the project's own protobuf stays as TensorFlow wants it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet grpcio-tools
"$tools/bin/python" -m grpc_tools.protoc --proto_path=tsoda/config/protos \
    --descriptor_set_out=tsoda/config/protos/pipeline.desc tsoda/config/protos/pipeline.proto
echo "wrote tsoda/config/protos/pipeline.desc"
