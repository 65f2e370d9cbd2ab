package api

const (
	// EtcdVersion is the etcd release Cairn reports as its server version (/version
	// "etcdserver", `cairn --version`). Clients such as kube-apiserver gate features on it.
	EtcdVersion = "3.6.16"
	// CairnVersion is Cairn's own version.
	CairnVersion = "0.1.0"
)
