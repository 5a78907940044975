"""Domain logic: plain functions over ids and values, shared by the API, the UI, the CLI and workers."""
