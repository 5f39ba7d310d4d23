"""A small controller-runtime on top of kopf, with no knowledge of any one API.

`kubeapi` (the `KubeAPI` Protocol, typed errors, kind registry), `kube` (the aiohttp client;
imported only by the kit and `dgd_operator.main`), `queue` (de-duplicating work queue),
`workers` (worker pool, backoff), `events` (Event posting), `indexes` (views over kopf's
indexes, expiring memory), `informer` (list+watch), `decoding` (watch events and LIST pages
decoded into only the fields a consumer names).
"""
