"""The Ray Serve backend: each engine pool as a Serve deployment (``voxserve serve --backend ray``).

- :mod:`.replica`: what one replica runs: the worker's own code (:func:`voxserve.runtime.worker.
  worker_main`) on a thread, over an in-process pipe (:class:`ThreadPipe`), so a replica synthesizes,
  encodes and transcribes exactly as a local worker process does.
- :mod:`.cluster`: joining a cluster (or starting a local one on 127.0.0.1), deploying the engines,
  and watching that the cluster is still there.
- :mod:`.pool`: :class:`RayPool`, the :class:`voxserve.runtime.pool.EnginePool` the routes see: the
  same admission, streams, cancellation and error codes, with one *slot* per replica in place of a
  worker process.

Nothing here imports ``ray`` at import time: the extra is optional (``pip install voxserve[ray]``).
"""
