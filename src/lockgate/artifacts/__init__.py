"""The artifact store: content-addressed blobs and buckets on fsspec."""
