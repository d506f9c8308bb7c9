#!/usr/bin/env python3
"""Turns KEDA's ScaledObject CRD into the JSON schema check-manifests.sh uses.

    python3 keda-schema-from-crd.py keda.sh_scaledobjects.yaml KEDA_VERSION > scaledobject-keda.sh-v1alpha1.json

The input is config/crd/bases/keda.sh_scaledobjects.yaml of kedacore/keda at
the release in use. The output is that CRD's openAPIV3Schema for v1alpha1,
plus what the API server adds: apiVersion and kind fixed, and unknown fields
refused (`additionalProperties: false` on every object that lists its
properties and does not preserve unknown fields), as `kubectl apply
--validate=strict` would. Only PyYAML is needed (yamllint brings it).
"""
import json
import sys

import yaml


def strict(node):
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)


def main():
    crd_path, keda_version = sys.argv[1], sys.argv[2]
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = version["schema"]["openAPIV3Schema"]
    strict(schema)
    schema["properties"]["apiVersion"] = {"type": "string", "const": "keda.sh/v1alpha1"}
    schema["properties"]["kind"] = {"type": "string", "const": "ScaledObject"}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    out = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"KEDA ScaledObject (keda.sh/v1alpha1), from the CRD of KEDA {keda_version}",
        **schema,
    }
    json.dump(out, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
