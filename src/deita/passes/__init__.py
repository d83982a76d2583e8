"""`deita select` as one composed pass over the pool, with columns instead of copies.

* `keep`: the first read hashes the pool (dedup) and decides a keep mask over the good records' ordinals.
* `compute`: the second read runs every per-record stage (length or LLM scores, embeddings) on the kept
  records, from the same parsed records, in the same shards, through each stage's own executor and resume
  cache, into columns.
* `columns`: the columns keyed by row (a kept record): score arrays (flat values and offsets), response
  lengths, where each record lies, and the embeddings `.npy`; never a copy of a record.
* `fetch`: the selected records, fetched from the pool by byte offset (JSONL) or by one streaming read,
  with their score columns merged back as the staged path wrote them.
"""
