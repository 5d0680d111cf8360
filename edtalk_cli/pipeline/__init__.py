"""From a job to its frames (see docs/architecture.md).

Importing the pipeline keeps numpy's BLAS (OpenBLAS) on one thread in this process. Every ffmpeg
child is started with a ``preexec_fn``, so by ``fork()``, and OpenBLAS stops its own threads before
a fork: a threaded BLAS call running meanwhile in another thread (the runner's preparing thread
computing a mel while the rendering thread starts an encoder) then waits forever. One BLAS thread
also keeps numpy's results the same on every machine. The pipeline's numpy products are small
(the mel filter bank is the largest); torch keeps its own threads.
"""

from threadpoolctl import threadpool_limits

threadpool_limits(limits=1, user_api="blas")
