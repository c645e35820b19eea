"""Models named by their Hugging Face id: their configuration (hub or local cache) and the access token."""
