"""Pure builders: a validated DGD in, the Kubernetes objects the operator owns out. No client here."""
