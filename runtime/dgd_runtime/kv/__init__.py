"""KV cache facts shared by engines and the router: the chained block hash (:mod:`.hashing`)."""
