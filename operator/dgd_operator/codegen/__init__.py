"""Generators of committed artifacts, run at development time (`make crds`), never by the operator.

* `crds`: the CustomResourceDefinitions from the API models;
* `chartvalues`: the Helm chart's `values.yaml` and `values.schema.json` from `ChartValues`.

The repository paths they write come from their command line (the Makefile passes them); no
product module imports this package (import-linter contract `dev-not-in-product`).
"""
