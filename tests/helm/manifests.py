#!/usr/bin/env python3
"""Reads the YAML documents `helm template` prints (stdin) and writes them as one JSON array
(stdout), empty documents left out, so that tests/helm-test.sh checks fields with jq rather than
grep. A document that is not YAML fails the test."""
import json
import sys

import yaml

documents = [document for document in yaml.safe_load_all(sys.stdin) if document is not None]
json.dump(documents, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
