"""Launch helpers that run inside engine pods of a multinode group.

They are deliberately standalone (stdlib, plus `ray` for the Ray helpers): the operator ships
their source in the per-DGD launch-scripts ConfigMap so they also run in engine images that
do not contain this project (e.g. NVIDIA's vllm-runtime), as `python3 /scripts/<key>`. The
operator never imports them: `builders/backends/scripts.py` reads them as source text.

* `wait_tcp`: block until host:port targets accept TCP (worker -> leader, leader -> workers).
* `ray_wait`: on the Ray leader, block until all N nodes joined with their GPUs.
* `placement`: reserve one bundle per node (STRICT_SPREAD) to prove the gang is placeable.
"""
