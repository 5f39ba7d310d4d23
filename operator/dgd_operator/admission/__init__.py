"""The operator's webhooks for DynamoGraphDeployments and their scaling adapters.

One HTTPS server (`server`) answers three kinds of call from the API server:

* conversion (`/convert`): DGDs and DGDSAs between `nvidia.com/v1alpha1` and `v1beta1`;
* validation (`/validate-dgd`, `/validate-dgdsa`): a bad graph is refused at `kubectl apply`
  time with every problem listed as `path: message`, instead of failing inside the operator;
* defaulting (`/mutate`): Dynamo's defaults (origin version, `replicas: 1`).

`review` decides (pure), `messages` words the answer, `webhooks` turns review documents into
responses (pure), `certificates` issues, keeps and advertises the serving certificate, and
`service.Admission` puts them together inside the operator. `python -m dgd_operator.admission`
runs the server alone.
"""

from __future__ import annotations

from dgd_operator.admission.service import Admission

__all__ = ["Admission"]
