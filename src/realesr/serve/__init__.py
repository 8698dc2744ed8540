"""`realesr serve`: a local web page and HTTP API for upscaling (needs the ``web`` extra).

:func:`realesr.serve.app.create_app` builds the ASGI app; :class:`realesr.serve.jobs.JobQueue` runs the
upscaling in worker threads, one per device, through :mod:`realesr.infer.files`, so that a result is the very
file `realesr upscale` writes for the same input and options.
"""
