"""HTTP edges: JSON API, HTML pages, auth, websockets."""
