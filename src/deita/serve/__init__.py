"""`deita serve`: the scorers, the embedder and a finished selection behind HTTP, with a page to try them.

`config` (the service's options), `records` (request records → turns), `engine` (the loaded models, one
batch at a time, and the one record-score function), `batching` (concurrent requests merged into engine
batches), `selection` (a finished `deita select` run: the one module that knows its files), `pool`
(neighbours, percentiles, the near-duplicate verdict), `service` (what the routes share), `schemas` and
`answers` (request, response and error shapes), `guards` and `metrics` (what every request passes
through), `app` (the routes), `page.html` (the page), `command` (the click command and the server's life).
"""
