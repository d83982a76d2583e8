"""EVOL: grow scorer training data with any OpenAI-compatible chat server (Deita paper §2).

`deita evol complexity|quality` evolves seed instructions or responses step by step (`evolve`),
`deita rank` scores each seed's variants jointly (`rank`), both resumable (`jobs`) through one async
client (`client`); `scorer_data` turns the ranked file into (scoring prompt → digit) training examples.
"""
