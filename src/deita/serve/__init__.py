"""`deita serve`: the scorers, the embedder and a finished selection behind HTTP, with a page to try them.

`config` (the service's options), `records` (request records → turns), `engine` (the loaded models, one
batch at a time), `batching` (concurrent requests merged into engine batches), `selection` (a finished
`deita select` run), `pool` (neighbours and percentiles against it), `guards` and `metrics` (what every
request passes through), `app` (the routes), `command` (the click command and the server's life).
"""
