"""Local development control plane: binaries, etcd + kube-apiserver + controller-manager + scheduler, simulated GPU nodes."""
